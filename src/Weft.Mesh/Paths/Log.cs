using Microsoft.Extensions.Logging;

namespace Weft.Mesh.Paths;

internal static partial class Log
{
    [LoggerMessage(2100, LogLevel.Debug, "No path to {Peer}: {Direct} direct addresses, {Relays} live relays")]
    public static partial void NoPath(ILogger logger, string peer, int direct, int relays);
}
