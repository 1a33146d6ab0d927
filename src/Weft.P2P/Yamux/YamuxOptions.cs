using Weft.Wire.Yamux;

namespace Weft.P2P.Yamux;

/// <summary>Limits and timers of a <see cref="YamuxSession"/>. The defaults suit a libp2p host.</summary>
public sealed class YamuxOptions
{
    /// <summary>Largest payload we put in one Data frame we send, so one stream cannot hog the connection.</summary>
    public const int MaxSendFrameLength = 256 * 1024;

    /// <summary>
    /// The receive window each stream starts with. The protocol fixes the implicit start at 256 KiB
    /// (<see cref="YamuxHeader.InitialStreamWindow"/>); a larger value is granted with the SYN/ACK.
    /// </summary>
    public uint InitialStreamWindow { get; init; } = YamuxHeader.InitialStreamWindow;

    /// <summary>The receive window auto-tuning may grow a stream's window to.</summary>
    public uint MaxStreamWindow { get; init; } = 16 * 1024 * 1024;

    /// <summary>Open inbound streams at most; a SYN beyond this is answered with RST.</summary>
    public int MaxInboundStreams { get; init; } = 1000;

    /// <summary>Open outbound streams at most; beyond this <see cref="YamuxSession.OpenStreamAsync"/> throws.</summary>
    public int MaxOutboundStreams { get; init; } = 1000;

    /// <summary>
    /// Largest Data frame payload accepted from the peer (besides the window check); more is a protocol
    /// error. js-libp2p sends frames as large as the whole window it was granted, so this matches the
    /// largest window we grant.
    /// </summary>
    public int MaxFrameDataLength { get; init; } = 16 * 1024 * 1024;

    /// <summary>Inbound streams waiting for <see cref="YamuxSession.AcceptStreamAsync"/>; a SYN beyond this is answered with RST.</summary>
    public int AcceptBacklog { get; init; } = 256;

    /// <summary>How often a keep-alive ping is sent. <see cref="TimeSpan.Zero"/> turns keep-alive off.</summary>
    public TimeSpan KeepAliveInterval { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>How long a keep-alive ping may go unanswered before the session fails.</summary>
    public TimeSpan KeepAliveTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// After a stream is disposed with its inbound direction still open, how long the peer has to send its FIN
    /// before the stream is reset.
    /// </summary>
    public TimeSpan StreamCloseTimeout { get; init; } = TimeSpan.FromMinutes(1);

    /// <summary>After a GoAway (sent or received), how long open streams may take to finish before they are reset.</summary>
    public TimeSpan GoAwayTimeout { get; init; } = TimeSpan.FromSeconds(30);

    internal void Validate()
    {
        if (InitialStreamWindow < YamuxHeader.InitialStreamWindow)
            throw new ArgumentOutOfRangeException(nameof(InitialStreamWindow), InitialStreamWindow, $"yamux windows start at {YamuxHeader.InitialStreamWindow} bytes and cannot be smaller");
        if (MaxStreamWindow < InitialStreamWindow)
            throw new ArgumentOutOfRangeException(nameof(MaxStreamWindow), MaxStreamWindow, "must be at least InitialStreamWindow");
        if (MaxInboundStreams < 0) throw new ArgumentOutOfRangeException(nameof(MaxInboundStreams));
        if (MaxOutboundStreams < 0) throw new ArgumentOutOfRangeException(nameof(MaxOutboundStreams));
        if (MaxFrameDataLength <= 0) throw new ArgumentOutOfRangeException(nameof(MaxFrameDataLength));
        if (AcceptBacklog < 0) throw new ArgumentOutOfRangeException(nameof(AcceptBacklog));
        if (KeepAliveInterval < TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(KeepAliveInterval));
        if (KeepAliveTimeout <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(KeepAliveTimeout));
        if (StreamCloseTimeout <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(StreamCloseTimeout));
        if (GoAwayTimeout <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(GoAwayTimeout));
    }
}
