using System.Buffers;
using Weft.Wire.Multiformats;
using Weft.Wire.Tunnel;
using static Weft.Wire.Tests.Multiformats.TestBytes;

namespace Weft.Wire.Tests.Tunnel;

/// <summary>Byte vectors from reference/edgemesh.md §6.3 (produced with EdgeMesh's generated Go code).</summary>
public class DiscoveryMessageTests
{
    /// <summary>Discovery{type=CONNECT, protocol="MDNS", node_name="ke-edge2"} with its length prefix.</summary>
    private static readonly byte[] ConnectMdnsKeEdge2 = Hex("12 08 00 12 04 4d 44 4e 53 1a 08 6b 65 2d 65 64 67 65 32");

    [Fact]
    public void Connect_vector_is_byte_for_byte_edgemesh()
    {
        var m = new DiscoveryMessage { Type = DiscoveryType.Connect, Protocol = DiscoveryMessage.Mdns, NodeName = "ke-edge2" };
        Assert.Equal(ConnectMdnsKeEdge2, m.ToLengthPrefixedArray());
        var seq = new ReadOnlySequence<byte>(ConnectMdnsKeEdge2);
        Assert.True(DiscoveryMessage.TryRead(ref seq, out var back));
        Assert.Equal(m, back);
        Assert.Equal("/libp2p/tunnel-discovery/1.0.0", DiscoveryMessage.ProtocolId);
    }

    [Fact]
    public void Success_and_failed_and_defaults()
    {
        var success = new DiscoveryMessage { Type = DiscoveryType.Success, Protocol = DiscoveryMessage.Dht, NodeName = "ke-edge1" };
        Assert.Equal(Hex("1108 01 1203 444854 1a08 6b652d6564676531"), success.ToLengthPrefixedArray());
        // Go's FAILED after msg.Reset(): only the type.
        Assert.Equal(Hex("02 08 02"), new DiscoveryMessage { Type = DiscoveryType.Failed }.ToLengthPrefixedArray());
        var empty = DiscoveryMessage.FromProtobuf([]);
        Assert.Equal(DiscoveryType.Connect, empty.Type);
        Assert.Null(empty.NodeName);
        Assert.Null(empty.Protocol);
    }

    [Fact]
    public void Every_split_and_limits()
    {
        byte[] two = [.. ConnectMdnsKeEdge2, .. ConnectMdnsKeEdge2];
        for (var cut = 0; cut <= two.Length; cut++)
        {
            var seq = Split(two, cut);
            Assert.True(DiscoveryMessage.TryRead(ref seq, out var a));
            Assert.True(DiscoveryMessage.TryRead(ref seq, out var b));
            Assert.Equal("ke-edge2", a.NodeName);
            Assert.Equal(a, b);
        }
        var bytes = ByteByByte(ConnectMdnsKeEdge2);
        Assert.True(DiscoveryMessage.TryRead(ref bytes, out _));
        for (var n = 0; n < ConnectMdnsKeEdge2.Length; n++)
        {
            var partial = new ReadOnlySequence<byte>(ConnectMdnsKeEdge2, 0, n);
            Assert.False(DiscoveryMessage.TryRead(ref partial, out _));
        }
        var header = new ReadOnlySequence<byte>(Varint.Encode(DiscoveryMessage.MaxMessageLength + 1));
        Assert.Equal("tunnel-discovery", Assert.Throws<ProtocolViolationException>(() => DiscoveryMessage.TryRead(ref header, out _)).Protocol);
        Assert.Equal("tunnel-discovery", Assert.Throws<ProtocolViolationException>(() => DiscoveryMessage.FromProtobuf(Hex("1a 05 ff"))).Protocol);
        Assert.Throws<ProtocolViolationException>(() => DiscoveryMessage.FromProtobuf(Hex("1a 01 ff"))); // not UTF-8
        foreach (var buffer in Random(3000, 40, seed: 4420)) ParsesOrViolates(() => DiscoveryMessage.FromProtobuf(buffer));
    }
}
