using Microsoft.Extensions.Logging;

namespace Weft.P2P.Noise;

internal static partial class Log
{
    [LoggerMessage(1201, LogLevel.Debug, "Noise handshake as {Role} with {Peer} done in {Milliseconds} ms (early muxer: {Muxer})")]
    public static partial void HandshakeCompleted(ILogger logger, string role, string peer, long milliseconds, string muxer);

    [LoggerMessage(1202, LogLevel.Debug, "Noise connection with {Peer} closed: {Error}")]
    public static partial void ConnectionFailed(ILogger logger, string peer, string error);
}
