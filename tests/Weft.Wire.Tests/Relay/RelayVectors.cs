using Weft.Wire.Identity;
using Weft.Wire.Multiformats;
using static Weft.Wire.Tests.Multiformats.TestBytes;

namespace Weft.Wire.Tests.Relay;

/// <summary>
/// Byte vectors derived by hand from the circuit-v2.md protobuf definition (field number &lt;&lt; 3 | wire type tags,
/// varints, length-delimited nested messages); they are not captured from another implementation.
/// </summary>
internal static class RelayVectors
{
    public static readonly Ed25519PrivateKey RelayKey = Ed25519PrivateKey.FromSeed(Enumerable.Range(0, 32).Select(i => (byte)i).ToArray());

    public static readonly Ed25519PrivateKey PeerKey = Ed25519PrivateKey.FromSeed(Enumerable.Range(100, 32).Select(i => (byte)i).ToArray());

    /// <summary>/ip4/1.2.3.4/tcp/4001 = 04 01020304 06 0fa1.</summary>
    public static readonly Multiaddr Addr = Multiaddr.Parse("/ip4/1.2.3.4/tcp/4001");

    public static readonly byte[] AddrBytes = Hex("04 01020304 06 0fa1");

    /// <summary>An Ed25519 identity peer ID: 00 24 08 01 12 20 + 32-byte key (38 bytes).</summary>
    public static byte[] PeerIdBytes => PeerKey.PeerId.Bytes.ToArray();

    /// <summary>Peer { id = 1 } = 0a 26 &lt;38 id bytes&gt; (40 bytes).</summary>
    public static byte[] PeerMessage => [0x0a, 0x26, .. PeerIdBytes];

    public static byte[] Concat(params byte[][] parts) => parts.SelectMany(p => p).ToArray();
}
