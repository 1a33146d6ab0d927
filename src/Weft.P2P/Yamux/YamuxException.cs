namespace Weft.P2P.Yamux;

/// <summary>A yamux session or stream cannot do what was asked (closed, limits reached, keep-alive timed out).</summary>
public class YamuxException : IOException
{
    public YamuxException(string message) : base(message) { }

    public YamuxException(string message, Exception? inner) : base(message, inner) { }
}

/// <summary>The stream was reset (RST), by the peer or locally; its data in both directions is discarded.</summary>
public sealed class YamuxStreamResetException : YamuxException
{
    public YamuxStreamResetException(uint streamId, bool byPeer)
        : base(byPeer ? $"yamux stream {streamId} was reset by the peer" : $"yamux stream {streamId} was reset")
    {
        StreamId = streamId;
        ByPeer = byPeer;
    }

    /// <summary>The id of the stream that was reset.</summary>
    public uint StreamId { get; }

    /// <summary>True when the peer sent the RST, false when this side reset the stream.</summary>
    public bool ByPeer { get; }
}
