using Microsoft.Extensions.Logging;

namespace Weft.P2P.Dcutr;

internal static partial class Log
{
    [LoggerMessage(800, LogLevel.Information, "DCUtR: direct connection to {Peer} at {Address} after {Attempts} attempt(s), {Ms:0.#} ms (relayed RTT {RttMs:0.###} ms)")]
    public static partial void Upgraded(ILogger logger, string peer, string address, int attempts, double ms, double rttMs);

    [LoggerMessage(801, LogLevel.Information, "DCUtR: no direct connection to {Peer} after {Attempts} attempt(s), staying relayed: {Reason}")]
    public static partial void GaveUp(ILogger logger, string peer, int attempts, string reason);

    [LoggerMessage(802, LogLevel.Debug, "DCUtR: attempt {Attempt} with {Peer} failed: {Reason}")]
    public static partial void AttemptFailed(ILogger logger, string peer, int attempt, string reason);

    [LoggerMessage(803, LogLevel.Debug, "DCUtR: dial to {Peer} at {Address} as {Role} failed: {Error}")]
    public static partial void DialFailed(ILogger logger, string peer, string address, string role, string error);

    [LoggerMessage(804, LogLevel.Debug, "DCUtR with {Peer}: {Error}")]
    public static partial void Failed(ILogger logger, string peer, string error);
}
