using Microsoft.Extensions.Logging;

namespace Weft.Mesh.Resume;

internal static partial class Log
{
    [LoggerMessage(2500, LogLevel.Information, "Resumable connection {Session} to {Node}: path lost ({Why}); resuming")]
    public static partial void PathLost(ILogger logger, string session, string node, string why);

    [LoggerMessage(2501, LogLevel.Information, "Resumable connection {Session} to {Node} resumed on a {Path} path")]
    public static partial void Resumed(ILogger logger, string session, string node, string path);

    [LoggerMessage(2502, LogLevel.Information, "Resumable connection {Session} to {Node} moved to a {Path} path")]
    public static partial void Moved(ILogger logger, string session, string node, string path);

    [LoggerMessage(2503, LogLevel.Warning, "Resumable connection {Session} to {Node} reset: {Reason}")]
    public static partial void SessionReset(ILogger logger, string session, string node, string reason);

    [LoggerMessage(2504, LogLevel.Information, "Resumable tunnel: bad hello from {Peer}: {Problem}")]
    public static partial void BadHello(ILogger logger, string peer, string problem);

    [LoggerMessage(2505, LogLevel.Debug, "Resumable connection {Session}: move to a better path failed: {Error}")]
    public static partial void MoveFailed(ILogger logger, string session, string error);
}
