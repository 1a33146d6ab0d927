using Microsoft.Extensions.Logging;

namespace Weft.P2P.Discovery;

/// <summary>Event ids 4460–4469.</summary>
internal static partial class Log
{
    [LoggerMessage(4460, LogLevel.Debug, "Rendezvous: provided {Rendezvous} ({Cid}) to {Stored} of {Tried} peers")]
    public static partial void Provided(ILogger logger, string rendezvous, string cid, int stored, int tried);

    [LoggerMessage(4461, LogLevel.Debug, "Rendezvous: discovered {Peer} at {Addresses}")]
    public static partial void Discovered(ILogger logger, string peer, string addresses);

    [LoggerMessage(4462, LogLevel.Information, "Rendezvous: round failed: {Error}")]
    public static partial void RoundFailed(ILogger logger, string error);

    [LoggerMessage(4463, LogLevel.Warning, "Rendezvous: a Discovered handler failed: {Error}")]
    public static partial void HandlerFailed(ILogger logger, string error);
}
