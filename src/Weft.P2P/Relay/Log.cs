using Microsoft.Extensions.Logging;

namespace Weft.P2P.Relay;

internal static partial class Log
{
    [LoggerMessage(700, LogLevel.Debug, "Relay: reservation for {Peer} from {Ip} granted until {Expire}")]
    public static partial void ReservationGranted(ILogger logger, string peer, string ip, ulong expire);

    [LoggerMessage(701, LogLevel.Debug, "Relay: request from {Peer} refused: {Status} ({Reason})")]
    public static partial void Refused(ILogger logger, string peer, string status, string reason);

    [LoggerMessage(702, LogLevel.Debug, "Relay: circuit {Source} -> {Target} opened")]
    public static partial void CircuitOpened(ILogger logger, string source, string target);

    [LoggerMessage(703, LogLevel.Debug, "Relay: circuit {Source} -> {Target} closed after {Bytes} bytes: {Reason}")]
    public static partial void CircuitClosed(ILogger logger, string source, string target, long bytes, string reason);

    [LoggerMessage(704, LogLevel.Debug, "Relay: hop stream from {Peer} failed: {Error}")]
    public static partial void HopFailed(ILogger logger, string peer, string error);

    [LoggerMessage(705, LogLevel.Debug, "Relay client: relayed connection from {Source} via {Relay} accepted")]
    public static partial void StopAccepted(ILogger logger, string source, string relay);

    [LoggerMessage(706, LogLevel.Debug, "Relay client: stop stream from {Relay} failed: {Error}")]
    public static partial void StopFailed(ILogger logger, string relay, string error);

    [LoggerMessage(707, LogLevel.Debug, "Relay client: reserved on {Relay} until {Expire}")]
    public static partial void Reserved(ILogger logger, string relay, DateTimeOffset expire);

    [LoggerMessage(708, LogLevel.Information, "Relay client: reserving on {Relay} failed: {Error}; retrying in {Seconds:0.##} s")]
    public static partial void ReserveFailed(ILogger logger, string relay, string error, double seconds);

    [LoggerMessage(709, LogLevel.Information, "Relay client: reservation on {Relay} lost: {Reason}")]
    public static partial void ReservationLost(ILogger logger, string relay, string reason);
}
