using Microsoft.Extensions.Logging;

namespace Weft.Mesh.Agent;

internal static partial class Log
{
    [LoggerMessage(2300, LogLevel.Information, "Agent {Node} started as {Peer}, listening on {Listen}; relay: {Relay}")]
    public static partial void Started(ILogger logger, string node, string peer, string listen, bool relay);

    [LoggerMessage(2301, LogLevel.Warning, "Config: {Warning}")]
    public static partial void ConfigWarning(ILogger logger, string warning);

    [LoggerMessage(2302, LogLevel.Warning, "No PSK: this node is not in a private network")]
    public static partial void NoPsk(ILogger logger);

    [LoggerMessage(2303, LogLevel.Warning, "Config: a change of {Key} takes effect only after a restart")]
    public static partial void RestartNeeded(ILogger logger, string key);

    [LoggerMessage(2304, LogLevel.Information, "Config applied: {Relays} relay node(s), this node is a relay: {IsRelay}")]
    public static partial void ConfigApplied(ILogger logger, int relays, bool isRelay);

    [LoggerMessage(2305, LogLevel.Information, "Relay service on (no limits) at {Addresses}")]
    public static partial void RelayServing(ILogger logger, string addresses);

    [LoggerMessage(2306, LogLevel.Information, "Relay service off: this node is no longer in relayNodes")]
    public static partial void RelayStopped(ILogger logger);

    [LoggerMessage(2307, LogLevel.Warning, "configured as relay but unreachable at {Address}: {Why}")]
    public static partial void RelayUnreachable(ILogger logger, string address, string why);

    [LoggerMessage(2308, LogLevel.Information, "Relay address {Address} reachable from outside")]
    public static partial void RelayReachable(ILogger logger, string address);

    [LoggerMessage(2309, LogLevel.Debug, "Relay self-check failed: {Error}")]
    public static partial void RelayCheckFailed(ILogger logger, string error);

    [LoggerMessage(2310, LogLevel.Warning, "Relay {Relay} died; new streams go through {Next}")]
    public static partial void RelayFailover(ILogger logger, string relay, string next);

    [LoggerMessage(2311, LogLevel.Warning, "Agent: {Handler} handler failed: {Error}")]
    public static partial void HandlerFailed(ILogger logger, string handler, string error);

    [LoggerMessage(2313, LogLevel.Information, "Offering this node as a relay (AutoNAT: public at {Addresses})")]
    public static partial void RelayOffered(ILogger logger, string addresses);

    [LoggerMessage(2314, LogLevel.Information, "Relay finder: {Relay} ({Peer}) offers relaying at {Addresses}")]
    public static partial void RelayDiscovered(ILogger logger, string relay, string peer, string addresses);

    [LoggerMessage(2315, LogLevel.Debug, "Bootstrap peer {Address} unreachable: {Error}")]
    public static partial void BootstrapFailed(ILogger logger, string address, string error);

    [LoggerMessage(2312, LogLevel.Error, "Config change rejected, keeping the running configuration:\n{Problems}")]
    public static partial void ConfigRejected(ILogger logger, string problems);
}
