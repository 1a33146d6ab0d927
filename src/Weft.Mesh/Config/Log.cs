using Microsoft.Extensions.Logging;

namespace Weft.Mesh.Config;

internal static partial class Log
{
    [LoggerMessage(2400, LogLevel.Information, "Config {Path} changed: applying")]
    public static partial void Reloading(ILogger logger, string path);

    [LoggerMessage(2401, LogLevel.Error, "Config {Path} changed but was rejected; the running configuration stays:\n{Problems}")]
    public static partial void Rejected(ILogger logger, string path, string problems);

    [LoggerMessage(2402, LogLevel.Warning, "{Path}: no file-system watcher ({Error}); checking every second only")]
    public static partial void WatchUnavailable(ILogger logger, string path, string error);
}
