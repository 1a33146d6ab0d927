using System.Security.Cryptography;
using Microsoft.Extensions.Logging;

namespace Weft.Mesh.Config;

/// <summary>
/// Watches the agent's config file, including the way Kubernetes updates a mounted ConfigMap (the file is a symlink
/// through <c>..data</c>, which is swapped atomically): a file-system watcher on the directory wakes it at once, and
/// the file's content is compared every <see cref="PollInterval"/> anyway, so a missed or odd event cannot leave a
/// change unseen. A change that reads and validates is handed to <c>apply</c>; one that does not is reported and
/// the running configuration stays.
/// </summary>
public sealed class ConfigWatcher : IAsyncDisposable
{
    /// <summary>How often the file's content is compared even without a file-system event.</summary>
    public static readonly TimeSpan PollInterval = TimeSpan.FromSeconds(1);

    private readonly string _path;
    private readonly Func<AgentConfig, Task> _apply;
    private readonly Action<string> _rejected;
    private readonly ILogger _log;
    private readonly Func<string, string?> _environment;
    private readonly CancellationTokenSource _stop = new();
    private readonly SemaphoreSlim _wake = new(0, 1);
    private readonly FileSystemWatcher? _fsw;
    private readonly Task _loop;
    private byte[] _hash;

    public ConfigWatcher(string path, Func<AgentConfig, Task> apply, Action<string> rejected, ILogger log, Func<string, string?>? environment = null)
    {
        _path = Path.GetFullPath(path);
        _apply = apply;
        _rejected = rejected;
        _log = log;
        _environment = environment ?? Environment.GetEnvironmentVariable;
        _hash = Hash() ?? [];
        try
        {
            _fsw = new FileSystemWatcher(Path.GetDirectoryName(_path)!)
            {
                NotifyFilter = NotifyFilters.FileName | NotifyFilters.DirectoryName | NotifyFilters.LastWrite | NotifyFilters.Size | NotifyFilters.CreationTime,
                IncludeSubdirectories = false,
            };
            _fsw.Changed += (_, _) => Wake();
            _fsw.Created += (_, _) => Wake();
            _fsw.Deleted += (_, _) => Wake();
            _fsw.Renamed += (_, _) => Wake();
            _fsw.EnableRaisingEvents = true;
        }
        catch (Exception ex) when (ex is IOException or ArgumentException or PlatformNotSupportedException)
        {
            Log.WatchUnavailable(_log, _path, ex.Message);
            _fsw?.Dispose();
            _fsw = null;
        }
        _loop = Task.Run(() => LoopAsync(_stop.Token));
    }

    /// <summary>Raised after each comparison (for tests waiting on a reload).</summary>
    public event Action<bool>? Checked;

    private void Wake()
    {
        try { if (_wake.CurrentCount == 0) _wake.Release(); } catch (SemaphoreFullException) { /* already awake */ } catch (ObjectDisposedException) { /* stopping */ }
    }

    private byte[]? Hash()
    {
        try
        {
            var info = new FileInfo(_path);
            if (!info.Exists || info.Length > AgentConfigLoader.MaxConfigBytes) return null;
            return SHA256.HashData(File.ReadAllBytes(_path)); // follows the ConfigMap's symlinks
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    private async Task LoopAsync(CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            try
            {
                await _wake.WaitAsync(PollInterval, ct).ConfigureAwait(false);
                // Writers (and the ConfigMap swap) may take a moment: settle briefly before reading.
                await Task.Delay(TimeSpan.FromMilliseconds(50), ct).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            var hash = Hash();
            var changed = hash is not null && !hash.AsSpan().SequenceEqual(_hash);
            if (changed)
            {
                _hash = hash!;
                try
                {
                    var config = AgentConfigLoader.Load(_path, _environment);
                    Log.Reloading(_log, _path);
                    await _apply(config).ConfigureAwait(false);
                }
                catch (ConfigException ex)
                {
                    var problems = string.Join("\n", ex.Problems);
                    Log.Rejected(_log, _path, problems);
                    _rejected(problems);
                }
                catch (Exception ex) when (!ct.IsCancellationRequested)
                {
                    Log.Rejected(_log, _path, ex.Message);
                    _rejected(ex.Message);
                }
            }
            try { Checked?.Invoke(changed); } catch (Exception) { /* a test's handler */ }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        _fsw?.Dispose();
        try { await _loop.ConfigureAwait(false); } catch (Exception) { /* stopping */ }
        _stop.Dispose();
        _wake.Dispose();
    }
}
