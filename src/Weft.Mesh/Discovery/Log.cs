using Microsoft.Extensions.Logging;

namespace Weft.Mesh.Discovery;

/// <summary>Event ids 4470–4479.</summary>
internal static partial class Log
{
    [LoggerMessage(4470, LogLevel.Information, "Discovery: node {NodeName} is {Peer} ({How})")]
    public static partial void Learned(ILogger logger, string nodeName, string peer, string how);

    [LoggerMessage(4471, LogLevel.Debug, "Discovery: exchange with {Peer} failed: {Error}")]
    public static partial void ExchangeFailed(ILogger logger, string peer, string error);

    [LoggerMessage(4472, LogLevel.Debug, "Discovery: bad request from {Peer}: {Error}")]
    public static partial void BadRequest(ILogger logger, string peer, string error);
}
