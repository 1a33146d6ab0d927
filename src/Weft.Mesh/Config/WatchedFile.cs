using System.Security.Cryptography;
using Microsoft.Extensions.Logging;

namespace Weft.Mesh.Config;

/// <summary>
/// Calls <c>changed</c> whenever the content of a file changes, including a ConfigMap-style symlink swap: a
/// file-system watcher on its folder wakes it at once, and the content's hash is compared every
/// <see cref="PollInterval"/> anyway. A file that is missing or unreadable counts as unchanged (the last content stays).
/// </summary>
internal sealed class WatchedFile : IAsyncDisposable
{
    /// <summary>How often the content is compared without a file-system event.</summary>
    public static readonly TimeSpan PollInterval = TimeSpan.FromSeconds(1);

    /// <summary>Wait after an event before reading, so a writer (or the swap) can finish.</summary>
    public static readonly TimeSpan Settle = TimeSpan.FromMilliseconds(50);

    private readonly string _path;
    private readonly long _maxBytes;
    private readonly Func<Task> _changed;
    private readonly CancellationTokenSource _stop = new();
    private readonly SemaphoreSlim _wake = new(0, 1);
    private readonly FileSystemWatcher? _fsw;
    private readonly Task _loop;
    private byte[]? _hash;

    public WatchedFile(string path, long maxBytes, Func<Task> changed, ILogger log)
    {
        _path = path;
        _maxBytes = maxBytes;
        _changed = changed;
        _hash = HashNow();
        try
        {
            _fsw = new FileSystemWatcher(System.IO.Path.GetDirectoryName(path)!) { IncludeSubdirectories = false };
            FileSystemEventHandler wake = (_, _) => Wake();
            _fsw.Changed += wake;
            _fsw.Created += wake;
            _fsw.Deleted += wake;
            _fsw.Renamed += (_, _) => Wake();
            _fsw.EnableRaisingEvents = true;
        }
        catch (Exception ex) when (ex is IOException or ArgumentException or PlatformNotSupportedException)
        {
            Log.WatchUnavailable(log, path, ex.Message);
            _fsw?.Dispose();
            _fsw = null;
        }
        _loop = Task.Run(LoopAsync);
    }

    /// <summary>Raised after each comparison, with whether the content changed (tests wait on it).</summary>
    public event Action<bool>? Checked;

    private void Wake()
    {
        try { if (_wake.CurrentCount == 0) _wake.Release(); }
        catch (Exception ex) when (ex is SemaphoreFullException or ObjectDisposedException) { /* already awake, or stopping */ }
    }

    private byte[]? HashNow()
    {
        try
        {
            var info = new FileInfo(_path);
            return info.Exists && info.Length <= _maxBytes ? SHA256.HashData(File.ReadAllBytes(_path)) : null;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    private async Task LoopAsync()
    {
        var ct = _stop.Token;
        while (!ct.IsCancellationRequested)
        {
            try
            {
                if (await _wake.WaitAsync(PollInterval, ct).ConfigureAwait(false)) await Task.Delay(Settle, ct).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            var hash = HashNow();
            var changed = hash is not null && (_hash is null || !hash.AsSpan().SequenceEqual(_hash));
            if (changed)
            {
                _hash = hash;
                try { await _changed().ConfigureAwait(false); }
                catch (Exception) when (!ct.IsCancellationRequested) { /* the callback reports its own failures */ }
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
