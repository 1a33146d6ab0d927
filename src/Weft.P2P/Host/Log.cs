using Microsoft.Extensions.Logging;

namespace Weft.P2P.Host;

internal static partial class Log
{
    [LoggerMessage(1, LogLevel.Information, "Listening on {Address}")]
    public static partial void Listening(ILogger logger, string address);

    [LoggerMessage(2, LogLevel.Debug, "Connection {Direction} {Peer} at {Remote} established (security {Security}, muxer {Muxer})")]
    public static partial void ConnectionEstablished(ILogger logger, string direction, string peer, string remote, string security, string muxer);

    [LoggerMessage(3, LogLevel.Warning, "Inbound connection from {Remote} rejected: {Protocol} protocol violation: {Detail}")]
    public static partial void InboundViolation(ILogger logger, string remote, string protocol, string detail);

    [LoggerMessage(4, LogLevel.Warning, "Inbound connection from {Remote} failed its handshake ({ErrorType}): {Error}")]
    public static partial void InboundFailed(ILogger logger, string remote, string errorType, string error);

    [LoggerMessage(5, LogLevel.Warning, "Inbound connection from {Remote} refused: {Limit} reached ({Value})")]
    public static partial void LimitReached(ILogger logger, string remote, string limit, int value);

    [LoggerMessage(6, LogLevel.Debug, "Connection to {Peer} closed: {Reason}")]
    public static partial void ConnectionClosed(ILogger logger, string peer, string reason);

    [LoggerMessage(7, LogLevel.Debug, "Inbound stream from {Peer} failed negotiation: {Error}")]
    public static partial void StreamNegotiationFailed(ILogger logger, string peer, string error);

    [LoggerMessage(8, LogLevel.Debug, "Handler for {Protocol} from {Peer} failed: {Error}")]
    public static partial void HandlerFailed(ILogger logger, string protocol, string peer, string error);

    [LoggerMessage(9, LogLevel.Debug, "Dial {Address} failed: {Error}")]
    public static partial void DialFailed(ILogger logger, string address, string error);

    [LoggerMessage(10, LogLevel.Warning, "Connection to {Peer} failed: {Protocol} protocol violation: {Detail}")]
    public static partial void ConnectionViolation(ILogger logger, string peer, string protocol, string detail);

    [LoggerMessage(11, LogLevel.Debug, "Identify of {Peer} failed: {Error}")]
    public static partial void IdentifyFailed(ILogger logger, string peer, string error);

    [LoggerMessage(12, LogLevel.Error, "Accept loop on {Address} stopped: {Error}")]
    public static partial void AcceptLoopFailed(ILogger logger, string address, string error);
}
