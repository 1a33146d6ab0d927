using System.Collections.Concurrent;
using System.Globalization;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;

namespace Weft.Cloud.Directory;

/// <summary>
/// The etcd backend, spoken through etcd's v3 JSON gateway (ADR 0006). Keys under the prefix:
/// <c>dir/owner/&lt;node&gt;</c> = {replica, address} attached to this replica's lease (so a dead replica's records
/// expire) with the key's mod revision as the epoch; <c>dir/node/&lt;node&gt;</c> = known-node marker;
/// <c>outbox/&lt;node&gt;/&lt;id&gt;</c> = a queued rest→eventbus message (no lease: it outlives replicas). A range read
/// then a watch from the next revision keep the cache; on any break the replica reports degraded, keeps
/// routing from the cache, and reconnects (another endpoint, backoff from 100 ms to 2 s), re-reading everything.
/// </summary>
public sealed class EtcdDirectory : IOwnershipDirectory
{
    private readonly IReadOnlyList<Uri> _endpoints;
    private readonly string _prefix;
    private readonly string _replica;
    private readonly Uri _address;
    private readonly TimeSpan _ttl;
    private readonly TimeSpan _timeout;
    private readonly TimeProvider _time;
    private readonly ILogger _log;
    private readonly HttpClient _http;
    private readonly HttpClient _watchHttp;
    private readonly OwnerCache _cache = new();
    private readonly ConcurrentDictionary<string, Claim> _mine = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource _stop = new();
    private readonly SemaphoreSlim _leaseGate = new(1, 1);
    private Task _watchLoop = Task.CompletedTask;
    private Task _leaseLoop = Task.CompletedTask;
    private long _lease;
    private int _endpoint;
    private volatile string? _watchProblem = "not started";
    private volatile string? _leaseProblem;
    private DateTimeOffset _since;

    public EtcdDirectory(IReadOnlyList<Uri> endpoints, string prefix, string replica, Uri address, TimeSpan leaseTtl, TimeSpan requestTimeout, TimeProvider time, ILogger log)
    {
        _endpoints = endpoints;
        _prefix = prefix;
        _replica = replica;
        _address = address;
        _ttl = leaseTtl;
        _timeout = requestTimeout;
        _time = time;
        _log = log;
        _since = time.GetUtcNow();
        _http = new HttpClient(new SocketsHttpHandler { ConnectTimeout = requestTimeout, PooledConnectionIdleTimeout = TimeSpan.FromSeconds(30) }) { Timeout = Timeout.InfiniteTimeSpan };
        _watchHttp = new HttpClient(new SocketsHttpHandler { ConnectTimeout = requestTimeout }) { Timeout = Timeout.InfiniteTimeSpan };
    }

    public string Backend => "etcd";

    public DirectoryHealth Health
    {
        get
        {
            var problem = _leaseProblem ?? _watchProblem;
            return problem is null ? new DirectoryHealth(true, null, _since) : new DirectoryHealth(false, "etcd: " + problem, _since);
        }
    }

    public event Action<OwnerRecord>? OwnerChanged
    {
        add => _cache.Changed += value;
        remove => _cache.Changed -= value;
    }

    private string OwnerKey(string node) => _prefix + "dir/owner/" + node;

    private string OutboxPrefix(string node) => _prefix + "outbox/" + node + "/";

    public async Task StartAsync(CancellationToken ct)
    {
        try
        {
            await EnsureLeaseAsync(ct).ConfigureAwait(false);
        }
        catch (DirectoryUnavailableException ex)
        {
            SetLeaseProblem(ex.Message);
        }
        var loaded = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _watchLoop = Task.Run(() => WatchLoopAsync(loaded), CancellationToken.None);
        _leaseLoop = Task.Run(LeaseLoopAsync, CancellationToken.None);
        // Wait briefly for the first full read so the first requests see the records; go on degraded otherwise.
        await Task.WhenAny(loaded.Task, Task.Delay(_timeout * 2, _time, ct)).ConfigureAwait(false);
    }

    public async Task<Claim> ClaimAsync(string node, CancellationToken ct)
    {
        var claim = new Claim(node, 0);
        _mine[node] = claim;
        await RecordAsync(claim, ct).ConfigureAwait(false);
        return claim;
    }

    public async Task RecordAsync(Claim claim, CancellationToken ct)
    {
        _mine[claim.Node] = claim;
        var lease = await EnsureLeaseAsync(ct).ConfigureAwait(false);
        var value = JsonSerializer.SerializeToUtf8Bytes(new Value(_replica, _address.ToString()));
        var txn = new JsonObject
        {
            ["success"] = new JsonArray(
                new JsonObject { ["request_put"] = new JsonObject { ["key"] = B64(OwnerKey(claim.Node)), ["value"] = Convert.ToBase64String(value), ["lease"] = lease.ToString(CultureInfo.InvariantCulture) } },
                new JsonObject { ["request_put"] = new JsonObject { ["key"] = B64(_prefix + "dir/node/" + claim.Node), ["value"] = "" } }),
        };
        var resp = await CallAsync("/v3/kv/txn", txn, ct).ConfigureAwait(false);
        var epoch = Long(resp["header"]?["revision"]);
        if (epoch <= 0) throw new DirectoryUnavailableException("etcd txn answer has no revision");
        claim.Epoch = epoch;
        _cache.Observe(new OwnerRecord(claim.Node, _replica, _address, epoch));
    }

    public async Task ReleaseAsync(Claim claim, CancellationToken ct)
    {
        _mine.TryRemove(new KeyValuePair<string, Claim>(claim.Node, claim));
        if (!claim.Recorded) return;
        var key = B64(OwnerKey(claim.Node));
        var txn = new JsonObject
        {
            ["compare"] = new JsonArray(new JsonObject { ["key"] = key, ["target"] = "MOD", ["result"] = "EQUAL", ["mod_revision"] = claim.Epoch.ToString(CultureInfo.InvariantCulture) }),
            ["success"] = new JsonArray(new JsonObject { ["request_delete_range"] = new JsonObject { ["key"] = key } }),
        };
        await CallAsync("/v3/kv/txn", txn, ct).ConfigureAwait(false);
    }

    public OwnerRecord? Lookup(string node) => _cache.Lookup(node);

    public bool IsKnown(string node) => _cache.IsKnown(node);

    public Task PutOutboxAsync(string node, string id, byte[] data, CancellationToken ct) =>
        CallAsync("/v3/kv/put", new JsonObject { ["key"] = B64(OutboxPrefix(node) + id), ["value"] = Convert.ToBase64String(data) }, ct);

    public Task DeleteOutboxAsync(string node, string id, CancellationToken ct) =>
        CallAsync("/v3/kv/deleterange", new JsonObject { ["key"] = B64(OutboxPrefix(node) + id) }, ct);

    public async Task<IReadOnlyList<KeyValuePair<string, byte[]>>> ListOutboxAsync(string node, CancellationToken ct)
    {
        var p = OutboxPrefix(node);
        var resp = await CallAsync("/v3/kv/range", new JsonObject { ["key"] = B64(p), ["range_end"] = B64(PrefixEnd(p)), ["limit"] = "100000" }, ct).ConfigureAwait(false);
        var list = new List<KeyValuePair<string, byte[]>>();
        foreach (var kv in resp["kvs"]?.AsArray() ?? [])
        {
            var key = FromB64(kv!["key"]);
            list.Add(new(key[p.Length..], Convert.FromBase64String(kv["value"]?.GetValue<string>() ?? "")));
        }
        return list;
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        try { await Task.WhenAll(_watchLoop, _leaseLoop).ConfigureAwait(false); } catch (OperationCanceledException) { }
        // Hand the records back at once rather than waiting for the lease to lapse.
        if (Interlocked.Read(ref _lease) is var lease and not 0)
        {
            using var cts = new CancellationTokenSource(_timeout);
            try { await CallAsync("/v3/lease/revoke", new JsonObject { ["ID"] = lease.ToString(CultureInfo.InvariantCulture) }, cts.Token).ConfigureAwait(false); }
            catch (DirectoryUnavailableException) { }
        }
        _http.Dispose();
        _watchHttp.Dispose();
        _stop.Dispose();
        _leaseGate.Dispose();
    }

    private void SetLeaseProblem(string? p)
    {
        if (p is not null && _leaseProblem is null && _watchProblem is null) _since = _time.GetUtcNow();
        _leaseProblem = p;
        if (p is null && _watchProblem is null) _since = _time.GetUtcNow();
    }

    private void SetWatchProblem(string? p)
    {
        if (p is not null && _leaseProblem is null && _watchProblem is null) _since = _time.GetUtcNow();
        _watchProblem = p;
        if (p is null && _leaseProblem is null) _since = _time.GetUtcNow();
    }

    private async Task<long> EnsureLeaseAsync(CancellationToken ct)
    {
        var lease = Interlocked.Read(ref _lease);
        if (lease != 0) return lease;
        await _leaseGate.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            lease = Interlocked.Read(ref _lease);
            if (lease != 0) return lease;
            var resp = await CallAsync("/v3/lease/grant", new JsonObject { ["TTL"] = ((long)Math.Ceiling(_ttl.TotalSeconds)).ToString(CultureInfo.InvariantCulture) }, ct).ConfigureAwait(false);
            lease = Long(resp["ID"]);
            if (lease == 0) throw new DirectoryUnavailableException("etcd granted no lease: " + resp.ToJsonString());
            Interlocked.Exchange(ref _lease, lease);
            return lease;
        }
        finally
        {
            _leaseGate.Release();
        }
    }

    private async Task LeaseLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(_leaseProblem is null ? _ttl / 3 : TimeSpan.FromMilliseconds(250), _time, _stop.Token).ConfigureAwait(false);
                var lease = await EnsureLeaseAsync(_stop.Token).ConfigureAwait(false);
                var resp = await CallAsync("/v3/lease/keepalive", new JsonObject { ["ID"] = lease.ToString(CultureInfo.InvariantCulture) }, _stop.Token).ConfigureAwait(false);
                if (Long((resp["result"] ?? resp)["TTL"]) <= 0)
                {
                    // The lease lapsed (etcd was away longer than the TTL): its records are gone; write ours again.
                    Interlocked.CompareExchange(ref _lease, 0, lease);
                    Log.LeaseLost(_log, _mine.Count);
                    foreach (var claim in _mine.Values)
                        await RecordAsync(claim, _stop.Token).ConfigureAwait(false);
                }
                else
                {
                    foreach (var claim in _mine.Values)
                        if (!claim.Recorded) await RecordAsync(claim, _stop.Token).ConfigureAwait(false);
                }
                SetLeaseProblem(null);
            }
            catch (OperationCanceledException) when (_stop.IsCancellationRequested)
            {
                break;
            }
            catch (DirectoryUnavailableException ex)
            {
                SetLeaseProblem(ex.Message);
            }
        }
    }

    private async Task WatchLoopAsync(TaskCompletionSource loaded)
    {
        var backoff = TimeSpan.FromMilliseconds(100);
        var dirPrefix = _prefix + "dir/";
        while (!_stop.IsCancellationRequested)
        {
            try
            {
                var resp = await CallAsync("/v3/kv/range", new JsonObject { ["key"] = B64(dirPrefix), ["range_end"] = B64(PrefixEnd(dirPrefix)) }, _stop.Token).ConfigureAwait(false);
                var revision = Long(resp["header"]?["revision"]);
                var present = new HashSet<string>(StringComparer.Ordinal);
                foreach (var kv in resp["kvs"]?.AsArray() ?? [])
                    if (Apply(kv!, deleted: false) is { } node) present.Add(node);
                foreach (var node in _cache.Nodes.ToArray())
                    if (!present.Contains(node)) _cache.Remove(node, _ => true);
                loaded.TrySetResult();
                await WatchAsync(dirPrefix, revision + 1).ConfigureAwait(false);
                backoff = TimeSpan.FromMilliseconds(100);
            }
            catch (OperationCanceledException) when (_stop.IsCancellationRequested)
            {
                break;
            }
            catch (Exception ex) when (ex is DirectoryUnavailableException or HttpRequestException or IOException or JsonException or OperationCanceledException or InvalidOperationException)
            {
                SetWatchProblem(ex.Message);
                Log.DirectoryError(_log, "etcd", ex.Message);
                try { await Task.Delay(backoff, _time, _stop.Token).ConfigureAwait(false); } catch (OperationCanceledException) { break; }
                backoff = TimeSpan.FromTicks(Math.Min(backoff.Ticks * 2, TimeSpan.FromSeconds(2).Ticks));
            }
        }
    }

    private async Task WatchAsync(string prefix, long fromRevision)
    {
        var body = new JsonObject
        {
            ["create_request"] = new JsonObject
            {
                ["key"] = B64(prefix), ["range_end"] = B64(PrefixEnd(prefix)), ["start_revision"] = fromRevision.ToString(CultureInfo.InvariantCulture),
                ["progress_notify"] = true,
            },
        };
        using var req = new HttpRequestMessage(HttpMethod.Post, new Uri(Endpoint(), "/v3/watch")) { Content = JsonContent.Create(body) };
        using var resp = await _watchHttp.SendAsync(req, HttpCompletionOption.ResponseHeadersRead, _stop.Token).ConfigureAwait(false);
        resp.EnsureSuccessStatusCode();
        using var reader = new StreamReader(await resp.Content.ReadAsStreamAsync(_stop.Token).ConfigureAwait(false), Encoding.UTF8);
        while (true)
        {
            // Each line is one watch response; etcd sends progress notifications every few minutes, and the
            // lease loop notices a dead etcd sooner, so a silent stream only matters when etcd is healthy.
            var line = await reader.ReadLineAsync(_stop.Token).ConfigureAwait(false) ?? throw new IOException("watch stream ended");
            if (line.Length == 0) continue;
            var msg = JsonNode.Parse(line);
            if (msg?["error"] is { } err) throw new IOException("watch: " + err.ToJsonString());
            var result = msg?["result"];
            if (result is null) continue;
            if (result["created"]?.GetValue<bool>() == true) SetWatchProblem(null);
            if (Long(result["compact_revision"]) > 0 || result["canceled"]?.GetValue<bool>() == true) throw new IOException("watch cancelled (compacted); reading again");
            foreach (var ev in result["events"]?.AsArray() ?? [])
                Apply(ev!["kv"]!, deleted: ev["type"]?.GetValue<string>() == "DELETE");
        }
    }

    /// <summary>Applies one key to the cache; returns the node name for an owner record.</summary>
    private string? Apply(JsonNode kv, bool deleted)
    {
        var key = FromB64(kv["key"]);
        var ownerPrefix = _prefix + "dir/owner/";
        var nodePrefix = _prefix + "dir/node/";
        if (key.StartsWith(nodePrefix, StringComparison.Ordinal))
        {
            if (!deleted) _cache.MarkKnown(key[nodePrefix.Length..]);
            return null;
        }
        if (!key.StartsWith(ownerPrefix, StringComparison.Ordinal)) return null;
        var node = key[ownerPrefix.Length..];
        var epoch = Long(kv["mod_revision"]);
        if (deleted)
        {
            _cache.Remove(node, cur => cur.Epoch < epoch);
            return null;
        }
        try
        {
            var v = JsonSerializer.Deserialize<Value>(Convert.FromBase64String(kv["value"]?.GetValue<string>() ?? ""));
            if (v is null || !Uri.TryCreate(v.Address, UriKind.Absolute, out var addr)) return null;
            _cache.Observe(new OwnerRecord(node, v.Replica, addr, epoch));
            return node;
        }
        catch (Exception ex) when (ex is JsonException or FormatException)
        {
            Log.DirectoryError(_log, "etcd", $"unreadable owner record for {node}: {ex.Message}");
            return null;
        }
    }

    private Uri Endpoint() => _endpoints[(int)((uint)Volatile.Read(ref _endpoint) % (uint)_endpoints.Count)];

    private async Task<JsonNode> CallAsync(string path, JsonObject body, CancellationToken ct)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        cts.CancelAfter(_timeout);
        var endpoint = Endpoint();
        try
        {
            using var resp = await _http.PostAsync(new Uri(endpoint, path), JsonContent.Create(body), cts.Token).ConfigureAwait(false);
            var text = await resp.Content.ReadAsStringAsync(cts.Token).ConfigureAwait(false);
            if (!resp.IsSuccessStatusCode) throw new DirectoryUnavailableException($"{path} answered {(int)resp.StatusCode}: {Trim(text)}");
            return JsonNode.Parse(text) ?? throw new DirectoryUnavailableException($"{path} answered null");
        }
        catch (Exception ex) when (!ct.IsCancellationRequested && ex is HttpRequestException or JsonException or OperationCanceledException or IOException)
        {
            Interlocked.Increment(ref _endpoint);
            throw new DirectoryUnavailableException($"{endpoint}: {(ex is OperationCanceledException ? $"no answer within {_timeout.TotalMilliseconds:0} ms" : ex.Message)}", ex);
        }
    }

    private static string Trim(string s) => s.Length > 200 ? s[..200] : s;

    private static string B64(string s) => Convert.ToBase64String(Encoding.UTF8.GetBytes(s));

    private static string FromB64(JsonNode? n) => Encoding.UTF8.GetString(Convert.FromBase64String(n?.GetValue<string>() ?? ""));

    private static string PrefixEnd(string prefix)
    {
        var b = Encoding.UTF8.GetBytes(prefix);
        b[^1]++;
        return Encoding.UTF8.GetString(b);
    }

    private static long Long(JsonNode? n) => n switch
    {
        null => 0,
        JsonValue v when v.TryGetValue<string>(out var s) => long.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out var l) ? l : 0,
        JsonValue v when v.TryGetValue<long>(out var l) => l,
        _ => 0,
    };

    private sealed record Value(
        [property: System.Text.Json.Serialization.JsonPropertyName("replica")] string Replica,
        [property: System.Text.Json.Serialization.JsonPropertyName("address")] string Address);
}
