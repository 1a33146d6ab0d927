using Microsoft.Extensions.Logging;

namespace Weft.Cloud;

internal static partial class Log
{
    [LoggerMessage(5000, LogLevel.Warning, "Directory ({Backend}): {Error}")]
    public static partial void DirectoryError(ILogger logger, string backend, string error);

    [LoggerMessage(5001, LogLevel.Warning, "Directory (etcd): lease lapsed; writing {Count} records again")]
    public static partial void LeaseLost(ILogger logger, int count);

    [LoggerMessage(5010, LogLevel.Information, "Hub: session for {Node} open from {Remote}, epoch {Epoch}")]
    public static partial void SessionOpened(ILogger logger, string node, string remote, long epoch);

    [LoggerMessage(5011, LogLevel.Information, "Hub: session for {Node} closed: {Reason}")]
    public static partial void SessionClosed(ILogger logger, string node, string reason);

    [LoggerMessage(5012, LogLevel.Warning, "Hub: refused a connection from {Remote}: {Reason}")]
    public static partial void Refused(ILogger logger, string remote, string reason);

    [LoggerMessage(5013, LogLevel.Warning, "Hub: could not record ownership of {Node}: {Error}; serving it unrecorded and retrying")]
    public static partial void ClaimFailed(ILogger logger, string node, string error);

    [LoggerMessage(5014, LogLevel.Information, "Hub: node {Node} now belongs to {Replica} (epoch {Epoch}); closing the stale local session")]
    public static partial void Superseded(ILogger logger, string node, string replica, long epoch);

    [LoggerMessage(5015, LogLevel.Debug, "Hub: {Node} sent an unexpected message (source {Source}, operation {Operation})")]
    public static partial void Unexpected(ILogger logger, string node, string source, string operation);

    [LoggerMessage(5020, LogLevel.Debug, "Router: {Method} {Path} → {Status} ({Outcome})")]
    public static partial void Routed(ILogger logger, string method, string path, int status, string outcome);

    [LoggerMessage(5021, LogLevel.Warning, "Router: forwarding to {Owner} failed: {Error}")]
    public static partial void ForwardFailed(ILogger logger, string owner, string error);

    [LoggerMessage(5022, LogLevel.Warning, "EventBus: calling {Url} for {Node} failed: {Error}")]
    public static partial void TargetFailed(ILogger logger, string url, string node, string error);

    [LoggerMessage(5023, LogLevel.Warning, "EventBus: outbox for {Node} unavailable: {Error}")]
    public static partial void OutboxFailed(ILogger logger, string node, string error);
}
