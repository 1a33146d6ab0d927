namespace Weft.P2P.Noise;

/// <summary>Settings for the libp2p Noise handshake.</summary>
public sealed record NoiseOptions
{
    /// <summary>The whole handshake (three messages) must finish within this time.</summary>
    public TimeSpan HandshakeTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// Muxers offered in the handshake's <c>stream_muxers</c> extension, in order of preference. Empty: send no
    /// extension, and the muxer is negotiated with multistream-select afterwards.
    /// </summary>
    public IReadOnlyList<string> Muxers { get; init; } = ["/yamux/1.0.0"];
}
