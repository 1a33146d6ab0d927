using System.Collections.Concurrent;
using System.Text.Json;
using Microsoft.Extensions.Logging;

namespace Weft.Cloud.Directory;

/// <summary>
/// The embedded backend. Without a folder the records live in this process (one replica). With a folder, the
/// replicas of one machine share it: one file per owner record carrying its expiry (renewed every third of the
/// lease TTL, so a killed replica's records lapse), a marker per known node, a file per queued message, and an
/// epoch counter; writers take an exclusive lock file, readers poll the folder every 200 ms into the cache.
/// </summary>
public sealed class EmbeddedDirectory : IOwnershipDirectory
{
    private static readonly TimeSpan PollInterval = TimeSpan.FromMilliseconds(200);
    private static readonly TimeSpan LockWait = TimeSpan.FromSeconds(2);

    private readonly string? _root;
    private readonly string _replica;
    private readonly Uri _address;
    private readonly TimeSpan _ttl;
    private readonly TimeProvider _time;
    private readonly ILogger _log;
    private readonly OwnerCache _cache = new();
    private readonly ConcurrentDictionary<string, Claim> _mine = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, ConcurrentDictionary<string, byte[]>> _outbox = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource _stop = new();
    private long _epoch;
    private Task _loop = Task.CompletedTask;
    private volatile DirectoryHealth _health;

    public EmbeddedDirectory(string? folder, string replica, Uri address, TimeSpan leaseTtl, TimeProvider time, ILogger log)
    {
        _root = folder;
        _replica = replica;
        _address = address;
        _ttl = leaseTtl;
        _time = time;
        _log = log;
        _health = DirectoryHealth.Ok(time);
    }

    public string Backend => "embedded";

    public DirectoryHealth Health => _health;

    public event Action<OwnerRecord>? OwnerChanged
    {
        add => _cache.Changed += value;
        remove => _cache.Changed -= value;
    }

    public Task StartAsync(CancellationToken ct)
    {
        if (_root is null) return Task.CompletedTask;
        foreach (var d in new[] { "owners", "nodes", "outbox" }) System.IO.Directory.CreateDirectory(Path.Combine(_root, d));
        Refresh();
        _loop = Task.Run(LoopAsync, CancellationToken.None);
        return Task.CompletedTask;
    }

    public async Task<Claim> ClaimAsync(string node, CancellationToken ct)
    {
        var claim = new Claim(node, 0);
        await RecordAsync(claim, ct).ConfigureAwait(false);
        return claim;
    }

    public Task RecordAsync(Claim claim, CancellationToken ct)
    {
        _mine[claim.Node] = claim;
        OwnerRecord rec;
        if (_root is null)
        {
            rec = new OwnerRecord(claim.Node, _replica, _address, Interlocked.Increment(ref _epoch));
        }
        else
        {
            using var l = Lock();
            var counter = Path.Combine(_root, "epoch");
            var epoch = (File.Exists(counter) && long.TryParse(File.ReadAllText(counter), out var e) ? e : 0) + 1;
            WriteAtomic(counter, epoch.ToString(System.Globalization.CultureInfo.InvariantCulture));
            rec = new OwnerRecord(claim.Node, _replica, _address, epoch);
            WriteRecord(rec);
            var marker = Path.Combine(_root, "nodes", claim.Node);
            if (!File.Exists(marker)) File.WriteAllBytes(marker, []);
        }
        claim.Epoch = rec.Epoch;
        _cache.Observe(rec);
        return Task.CompletedTask;
    }

    public Task ReleaseAsync(Claim claim, CancellationToken ct)
    {
        _mine.TryRemove(new KeyValuePair<string, Claim>(claim.Node, claim));
        if (_root is null)
        {
            _cache.Remove(claim.Node, cur => cur.Epoch == claim.Epoch);
            return Task.CompletedTask;
        }
        using var l = Lock();
        var file = OwnerFile(claim.Node);
        if (ReadRecord(file) is { } r && r.Record.Epoch == claim.Epoch) File.Delete(file);
        _cache.Remove(claim.Node, c => c.Epoch == claim.Epoch);
        return Task.CompletedTask;
    }

    public OwnerRecord? Lookup(string node) => _cache.Lookup(node);

    public bool IsKnown(string node) => _cache.IsKnown(node);

    public Task PutOutboxAsync(string node, string id, byte[] data, CancellationToken ct)
    {
        if (_root is null) _outbox.GetOrAdd(node, _ => new(StringComparer.Ordinal))[id] = data;
        else
        {
            var dir = Path.Combine(_root, "outbox", node);
            System.IO.Directory.CreateDirectory(dir);
            WriteAtomic(Path.Combine(dir, id), data);
        }
        return Task.CompletedTask;
    }

    public Task DeleteOutboxAsync(string node, string id, CancellationToken ct)
    {
        if (_root is null) { if (_outbox.TryGetValue(node, out var q)) q.TryRemove(id, out _); }
        else File.Delete(Path.Combine(_root, "outbox", node, id));
        return Task.CompletedTask;
    }

    public Task<IReadOnlyList<KeyValuePair<string, byte[]>>> ListOutboxAsync(string node, CancellationToken ct)
    {
        if (_root is null)
            return Task.FromResult<IReadOnlyList<KeyValuePair<string, byte[]>>>(_outbox.TryGetValue(node, out var q) ? q.ToArray() : []);
        var dir = Path.Combine(_root, "outbox", node);
        var list = new List<KeyValuePair<string, byte[]>>();
        if (System.IO.Directory.Exists(dir))
        {
            foreach (var f in System.IO.Directory.EnumerateFiles(dir))
            {
                if (f.EndsWith(".tmp", StringComparison.Ordinal)) continue;
                try { list.Add(new(Path.GetFileName(f), File.ReadAllBytes(f))); }
                catch (FileNotFoundException) { }
            }
        }
        return Task.FromResult<IReadOnlyList<KeyValuePair<string, byte[]>>>(list);
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        try { await _loop.ConfigureAwait(false); } catch (OperationCanceledException) { }
        _stop.Dispose();
    }

    private async Task LoopAsync()
    {
        var lastRenew = _time.GetTimestamp();
        while (!_stop.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(PollInterval, _time, _stop.Token).ConfigureAwait(false);
                if (_time.GetElapsedTime(lastRenew) >= _ttl / 3)
                {
                    Renew();
                    lastRenew = _time.GetTimestamp();
                }
                Refresh();
                if (!_health.Healthy) _health = DirectoryHealth.Ok(_time);
            }
            catch (OperationCanceledException) { break; }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or JsonException)
            {
                if (_health.Healthy) _health = new DirectoryHealth(false, "shared folder: " + ex.Message, _time.GetUtcNow());
                Log.DirectoryError(_log, "embedded", ex.Message);
            }
        }
    }

    /// <summary>Pushes the expiry of every record still ours.</summary>
    private void Renew()
    {
        using var l = Lock();
        foreach (var claim in _mine.Values)
        {
            var file = OwnerFile(claim.Node);
            if (ReadRecord(file) is { } r && r.Record.Epoch == claim.Epoch && r.Record.Replica == _replica) WriteRecord(r.Record);
        }
    }

    private void Refresh()
    {
        var now = _time.GetUtcNow().ToUnixTimeMilliseconds();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var f in System.IO.Directory.EnumerateFiles(Path.Combine(_root!, "owners"), "*.json"))
        {
            if (ReadRecord(f) is not { } r || r.Expires < now) continue;
            seen.Add(r.Record.Node);
            _cache.Observe(r.Record);
        }
        foreach (var node in _cache.Nodes.ToArray())
            if (!seen.Contains(node) && !_mine.ContainsKey(node)) _cache.Remove(node, _ => true);
        foreach (var f in System.IO.Directory.EnumerateFiles(Path.Combine(_root!, "nodes"))) _cache.MarkKnown(Path.GetFileName(f));
    }

    private string OwnerFile(string node) => Path.Combine(_root!, "owners", node + ".json");

    private void WriteRecord(OwnerRecord rec)
    {
        var dto = new FileRecord(rec.Node, rec.Replica, rec.Address.ToString(), rec.Epoch, _time.GetUtcNow().Add(_ttl).ToUnixTimeMilliseconds());
        WriteAtomic(OwnerFile(rec.Node), JsonSerializer.SerializeToUtf8Bytes(dto));
    }

    private static (OwnerRecord Record, long Expires)? ReadRecord(string file)
    {
        try
        {
            var dto = JsonSerializer.Deserialize<FileRecord>(File.ReadAllBytes(file));
            if (dto is null || !Uri.TryCreate(dto.Address, UriKind.Absolute, out var a)) return null;
            return (new OwnerRecord(dto.Node, dto.Replica, a, dto.Epoch), dto.Expires);
        }
        catch (Exception ex) when (ex is FileNotFoundException or JsonException or DirectoryNotFoundException)
        {
            return null;
        }
    }

    private static void WriteAtomic(string path, string text) => WriteAtomic(path, System.Text.Encoding.UTF8.GetBytes(text));

    private static void WriteAtomic(string path, byte[] data)
    {
        var tmp = path + "." + Environment.ProcessId + "." + Environment.CurrentManagedThreadId + ".tmp";
        File.WriteAllBytes(tmp, data);
        File.Move(tmp, path, overwrite: true);
    }

    private FileStream Lock()
    {
        var path = Path.Combine(_root!, "lock");
        var start = _time.GetTimestamp();
        while (true)
        {
            try
            {
                return new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
            }
            catch (IOException) when (_time.GetElapsedTime(start) < LockWait)
            {
                Thread.Sleep(1);
            }
            catch (IOException ex)
            {
                throw new DirectoryUnavailableException($"the shared folder {_root} stayed locked for {LockWait.TotalSeconds} s", ex);
            }
        }
    }

    private sealed record FileRecord(string Node, string Replica, string Address, long Epoch, long Expires);
}
