using Microsoft.Extensions.Logging;

namespace Weft.P2P.Yamux;

internal static partial class Log
{
    [LoggerMessage(3001, LogLevel.Debug, "yamux session ({Role}) closed: {Reason}")]
    public static partial void SessionClosed(ILogger logger, string role, string reason);

    [LoggerMessage(3002, LogLevel.Warning, "yamux peer broke the protocol: {Detail}")]
    public static partial void ProtocolViolation(ILogger logger, string detail);

    [LoggerMessage(3003, LogLevel.Warning, "yamux keep-alive ping unanswered after {Timeout}; closing the session")]
    public static partial void KeepAliveTimeout(ILogger logger, TimeSpan timeout);

    [LoggerMessage(3004, LogLevel.Debug, "yamux peer sent GoAway ({Code})")]
    public static partial void GoAwayReceived(ILogger logger, string code);

    [LoggerMessage(3005, LogLevel.Debug, "yamux inbound stream {StreamId} refused: {Reason}")]
    public static partial void StreamRefused(ILogger logger, uint streamId, string reason);

    [LoggerMessage(3006, LogLevel.Debug, "yamux stream {StreamId} reset ({Reason})")]
    public static partial void StreamReset(ILogger logger, uint streamId, string reason);
}
