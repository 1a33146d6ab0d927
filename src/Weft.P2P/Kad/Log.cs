using Microsoft.Extensions.Logging;

namespace Weft.P2P.Kad;

/// <summary>Event ids 4420–4459.</summary>
internal static partial class Log
{
    [LoggerMessage(4420, LogLevel.Information, "Kad: {Protocol} in {Mode} mode")]
    public static partial void Started(ILogger logger, string protocol, string mode);

    [LoggerMessage(4421, LogLevel.Debug, "Kad: {Peer} added to bucket {Bucket} ({Size} peers)")]
    public static partial void PeerAdded(ILogger logger, string peer, int bucket, int size);

    [LoggerMessage(4422, LogLevel.Debug, "Kad: {Peer} not added: {Reason}")]
    public static partial void PeerRejected(ILogger logger, string peer, string reason);

    [LoggerMessage(4423, LogLevel.Debug, "Kad: {Peer} removed: {Reason}")]
    public static partial void PeerRemoved(ILogger logger, string peer, string reason);

    [LoggerMessage(4424, LogLevel.Debug, "Kad: request {Type} to {Peer} failed: {Error}")]
    public static partial void RequestFailed(ILogger logger, string type, string peer, string error);

    [LoggerMessage(4425, LogLevel.Debug, "Kad: bad request from {Peer} dropped: {Error}")]
    public static partial void BadRequest(ILogger logger, string peer, string error);

    [LoggerMessage(4426, LogLevel.Debug, "Kad: {Peer} refused: {Reason}")]
    public static partial void Refused(ILogger logger, string peer, string reason);

    [LoggerMessage(4427, LogLevel.Information, "Kad: bootstrap peer {Address} unreachable: {Error}")]
    public static partial void BootstrapFailed(ILogger logger, string address, string error);

    [LoggerMessage(4428, LogLevel.Debug, "Kad: refresh done, {Size} peers in the table")]
    public static partial void Refreshed(ILogger logger, int size);

    [LoggerMessage(4429, LogLevel.Warning, "Kad: maintenance failed: {Error}")]
    public static partial void MaintenanceFailed(ILogger logger, string error);
}
