using Microsoft.Extensions.Logging;

namespace Weft.Mesh.Tunnel;

internal static partial class Log
{
    [LoggerMessage(2200, LogLevel.Warning, "Tunnel: stream from {Peer} refused: {Reason} (limit {Limit})")]
    public static partial void Refused(ILogger logger, string peer, string reason, int limit);

    [LoggerMessage(2201, LogLevel.Information, "Tunnel: bad request from {Peer}: {Problem}")]
    public static partial void BadRequest(ILogger logger, string peer, string problem);

    [LoggerMessage(2202, LogLevel.Information, "Tunnel: cannot reach endpoint {Target}: {Error}")]
    public static partial void DialFailed(ILogger logger, string target, string error);

    [LoggerMessage(2203, LogLevel.Debug, "Tunnel: serving {Peer} {Protocol} to {Target} over a {Path} path")]
    public static partial void Serving(ILogger logger, string peer, string protocol, string target, string path);

    [LoggerMessage(2204, LogLevel.Information, "Tunnel: stream from {Peer} to {Target} broke: {Error}")]
    public static partial void StreamBroken(ILogger logger, string peer, string target, string error);
}
