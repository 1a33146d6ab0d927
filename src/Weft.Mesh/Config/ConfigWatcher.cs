using Microsoft.Extensions.Logging;

namespace Weft.Mesh.Config;

/// <summary>
/// Watches the agent's config file (<see cref="WatchedFile"/>: a file-system watcher plus a comparison of the content
/// every second, so a mounted ConfigMap's symlink swap is seen). A change that reads and validates is handed to
/// <c>apply</c>; one that does not is reported and the running configuration stays.
/// </summary>
public sealed class ConfigWatcher : IAsyncDisposable
{
    private readonly string _path;
    private readonly Func<AgentConfig, Task> _apply;
    private readonly Action<string> _rejected;
    private readonly ILogger _log;
    private readonly Func<string, string?> _environment;
    private readonly WatchedFile _file;

    public ConfigWatcher(string path, Func<AgentConfig, Task> apply, Action<string> rejected, ILogger log, Func<string, string?>? environment = null)
    {
        _path = Path.GetFullPath(path);
        _apply = apply;
        _rejected = rejected;
        _log = log;
        _environment = environment ?? Environment.GetEnvironmentVariable;
        _file = new WatchedFile(_path, AgentConfigLoader.MaxConfigBytes, ReloadAsync, log);
        _file.Checked += changed => Checked?.Invoke(changed);
    }

    /// <summary>Raised after each comparison (for tests waiting on a reload).</summary>
    public event Action<bool>? Checked;

    private async Task ReloadAsync()
    {
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
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or InvalidOperationException)
        {
            Log.Rejected(_log, _path, ex.Message);
            _rejected(ex.Message);
        }
    }

    public ValueTask DisposeAsync() => _file.DisposeAsync();
}
