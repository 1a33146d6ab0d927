using Microsoft.Extensions.Logging;

namespace Weft.P2P.AutoNat;

internal static partial class Log
{
    [LoggerMessage(900, LogLevel.Debug, "AutoNAT server: request from {Peer} answered {Status} ({Reason})")]
    public static partial void Answered(ILogger logger, string peer, string status, string reason);

    [LoggerMessage(901, LogLevel.Debug, "AutoNAT server: dial-back to {Peer} at {Address} failed: {Error}")]
    public static partial void DialBackFailed(ILogger logger, string peer, string address, string error);

    [LoggerMessage(902, LogLevel.Debug, "AutoNAT server: stream from {Peer} failed: {Error}")]
    public static partial void StreamFailed(ILogger logger, string peer, string error);

    [LoggerMessage(903, LogLevel.Information, "AutoNAT: reachability {Old} -> {New} (confidence {Confidence}, public addresses: {Addresses})")]
    public static partial void ReachabilityChanged(ILogger logger, string old, string @new, int confidence, string addresses);

    [LoggerMessage(904, LogLevel.Debug, "AutoNAT: {Server} answered {Status} ({Text}) for {Address}")]
    public static partial void ServerAnswered(ILogger logger, string server, string status, string text, string address);

    [LoggerMessage(905, LogLevel.Debug, "AutoNAT: asking {Server} failed: {Error}")]
    public static partial void AskFailed(ILogger logger, string server, string error);

    [LoggerMessage(906, LogLevel.Debug, "AutoNAT: probe skipped: {Reason}")]
    public static partial void ProbeSkipped(ILogger logger, string reason);

    [LoggerMessage(907, LogLevel.Debug, "AutoNAT: probe done: {Reachability}, confidence {Confidence}; next in {Seconds:0.#} s")]
    public static partial void ProbeDone(ILogger logger, string reachability, int confidence, double seconds);

    [LoggerMessage(908, LogLevel.Warning, "AutoNAT: probe loop error: {Error}")]
    public static partial void LoopFailed(ILogger logger, string error);
}
