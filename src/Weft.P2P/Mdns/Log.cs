using Microsoft.Extensions.Logging;

namespace Weft.P2P.Mdns;

/// <summary>Event ids 4400–4419.</summary>
internal static partial class Log
{
    [LoggerMessage(4400, LogLevel.Information, "mDNS: {Service} as {Instance} on {Interfaces}")]
    public static partial void Started(ILogger logger, string service, string instance, string interfaces);

    [LoggerMessage(4401, LogLevel.Debug, "mDNS: discovered {Peer} at {Addresses}")]
    public static partial void Discovered(ILogger logger, string peer, string addresses);

    [LoggerMessage(4402, LogLevel.Debug, "mDNS: malformed packet from {Source} dropped: {Error}")]
    public static partial void Malformed(ILogger logger, string source, string error);

    [LoggerMessage(4403, LogLevel.Debug, "mDNS: sending on {Interface} failed: {Error}")]
    public static partial void SendFailed(ILogger logger, string @interface, string error);

    [LoggerMessage(4404, LogLevel.Information, "mDNS: interfaces now {Interfaces}")]
    public static partial void InterfacesChanged(ILogger logger, string interfaces);

    [LoggerMessage(4405, LogLevel.Information, "mDNS: nothing to announce (every address is loopback or relayed); peers can still be found")]
    public static partial void NothingToAnnounce(ILogger logger);

    [LoggerMessage(4406, LogLevel.Warning, "mDNS: receive loop ended: {Error}")]
    public static partial void ReceiveFailed(ILogger logger, string error);

    [LoggerMessage(4407, LogLevel.Debug, "mDNS: {Peer} said goodbye")]
    public static partial void Goodbye(ILogger logger, string peer);

    [LoggerMessage(4408, LogLevel.Debug, "mDNS: {Limit} reached ({Value}); {What} dropped")]
    public static partial void LimitReached(ILogger logger, string limit, int value, string what);

    [LoggerMessage(4410, LogLevel.Debug, "mDNS: query from {Source} on interface {Interface}: answering in {DelayMs:0} ms")]
    public static partial void Answering(ILogger logger, string source, int @interface, double delayMs);

    [LoggerMessage(4411, LogLevel.Trace, "mDNS: sent {Kind} on {Interface}")]
    public static partial void Sent(ILogger logger, string kind, string @interface);

    [LoggerMessage(4412, LogLevel.Warning, "mDNS: handling a packet from {Source} failed: {Type}: {Error}")]
    public static partial void HandlingFailed(ILogger logger, string source, string type, string error);

    [LoggerMessage(4409, LogLevel.Warning, "mDNS: a Discovered handler failed: {Error}")]
    public static partial void HandlerFailed(ILogger logger, string error);
}
