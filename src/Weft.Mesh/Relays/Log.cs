using Microsoft.Extensions.Logging;

namespace Weft.Mesh.Relays;

internal static partial class Log
{
    [LoggerMessage(2000, LogLevel.Information, "Relay {Relay} up: {Peer} at {Address}")]
    public static partial void RelayUp(ILogger logger, string relay, string peer, string address);

    [LoggerMessage(2001, LogLevel.Warning, "Relay {Relay} down: {Reason}")]
    public static partial void RelayDead(ILogger logger, string relay, string reason);

    [LoggerMessage(2002, LogLevel.Debug, "Relay {Relay} unreachable: {Reason}; retrying in {Ms:0} ms")]
    public static partial void RelayUnreachable(ILogger logger, string relay, string reason, double ms);

    [LoggerMessage(2003, LogLevel.Information, "Reserved on relay {Relay} until {Expire}")]
    public static partial void Reserved(ILogger logger, string relay, DateTimeOffset expire);

    [LoggerMessage(2004, LogLevel.Information, "Reservation on relay {Relay} lost")]
    public static partial void ReservationLost(ILogger logger, string relay);

    [LoggerMessage(2005, LogLevel.Information, "Preferred relay: {Before} -> {After}")]
    public static partial void PreferredChanged(ILogger logger, string before, string after);

    [LoggerMessage(2006, LogLevel.Information, "Relay {Relay} removed from the configuration")]
    public static partial void RelayRemoved(ILogger logger, string relay);

    [LoggerMessage(2007, LogLevel.Warning, "Relay manager: {Handler} handler failed: {Error}")]
    public static partial void HandlerFailed(ILogger logger, string handler, string error);
}
