namespace Weft.Wire;

/// <summary>
/// A peer sent bytes that break a protocol's rules. Codecs throw it; the connection that carried the
/// bytes is closed with it, everything else keeps serving. <see cref="Protocol"/> names the codec
/// ("varint", "multiaddr", "noise", "yamux", ...) so logs and metrics can tell the causes apart.
/// </summary>
public sealed class ProtocolViolationException : Exception
{
    public ProtocolViolationException(string protocol, string message)
        : base($"{protocol}: {message}")
    {
        Protocol = protocol;
        Detail = message;
    }

    public ProtocolViolationException(string protocol, string message, Exception inner)
        : base($"{protocol}: {message}", inner)
    {
        Protocol = protocol;
        Detail = message;
    }

    /// <summary>The protocol or codec whose rule was broken.</summary>
    public string Protocol { get; }

    /// <summary>What was wrong, without the protocol prefix.</summary>
    public string Detail { get; }
}
