using System.Buffers;
using Weft.Wire.Identity;
using Weft.Wire.Kad;
using Weft.Wire.Multiformats;
using static Weft.Wire.Tests.Multiformats.TestBytes;

namespace Weft.Wire.Tests.Kad;

/// <summary>Vectors encoded by hand from the message in kad-dht/README.md (type 1, key 2, record 3, closerPeers 8, providerPeers 9, clusterLevelRaw 10).</summary>
public class KadMessageTests
{
    private static readonly PeerId Peer = PeerId.Parse("12D3KooWBDUxGKAkwWmieaV6qsR3aH3jpCfD9tjUc5yGNuhRMWZh");
    private static readonly Multiaddr Addr = Multiaddr.Parse("/ip4/1.2.3.4/tcp/4001");
    private static string PeerHex => ToHex(Peer.Bytes.Span);

    [Fact]
    public void Constants()
    {
        Assert.Equal("/ipfs/kad/1.0.0", KadMessage.ProtocolId);
        Assert.Equal("/ipfs/lan/kad/1.0.0", KadMessage.LanProtocolId);
    }

    [Fact]
    public void Find_node_request_and_response_vectors()
    {
        var request = new KadMessage { Type = KadMessageType.FindNode, Key = Peer.Bytes.ToArray() };
        var expected = Hex("0804 1226" + PeerHex);
        Assert.Equal(expected, request.ToProtobuf());
        var decoded = KadMessage.FromProtobuf(expected);
        Assert.Equal(KadMessageType.FindNode, decoded.Type);
        Assert.Equal(Peer.Bytes.ToArray(), decoded.Key);

        // closerPeers[0] = { id, addrs = [/ip4/1.2.3.4/tcp/4001], connection = CONNECTED }: 0a 26 <id> 12 08 <addr> 18 01 = 52 bytes.
        var response = new KadMessage { Type = KadMessageType.FindNode, CloserPeers = [new KadPeer(Peer, [Addr], KadConnectionType.Connected)] };
        var bytes = Hex("0804 4234 0a26" + PeerHex + "1208 0401020304060fa1 1801");
        Assert.Equal(bytes, response.ToProtobuf());
        var back = KadMessage.FromProtobuf(bytes);
        var p = Assert.Single(back.CloserPeers);
        Assert.Equal(Peer, p.Id);
        Assert.Equal([Addr], p.Addresses);
        Assert.Equal(KadConnectionType.Connected, p.Connection);
        Assert.Empty(back.ProviderPeers);
    }

    [Fact]
    public void Put_value_carries_a_record_and_providers_go_in_field_9()
    {
        var record = new KadRecord { Key = "/weft/a"u8.ToArray(), Value = "b"u8.ToArray(), TimeReceived = "2026-01-02T03:04:05.123456700Z" };
        var m = new KadMessage { Type = KadMessageType.PutValue, Key = record.Key, Record = record, ProviderPeers = [new KadPeer(Peer, [])], ClusterLevelRaw = 3 };
        var bytes = m.ToProtobuf();
        // type 0 is written explicitly (go does); js omits it, which must read the same.
        Assert.Equal(Hex("0800"), bytes[..2]);
        var back = KadMessage.FromProtobuf(bytes);
        Assert.Equal(KadMessageType.PutValue, back.Type);
        Assert.Equal(record, back.Record);
        Assert.Equal(3, back.ClusterLevelRaw);
        Assert.Equal(Peer, Assert.Single(back.ProviderPeers).Id);
        Assert.Equal(KadMessageType.PutValue, KadMessage.FromProtobuf(bytes[2..]).Type);
        // Record: key 1, value 2, timeReceived 5.
        Assert.Equal(Hex("0a07 2f776566742f61 1201 62 2a1e") , record.ToProtobuf()[..14]);
    }

    [Fact]
    public void Time_received_is_written_as_go_and_js_write_it()
    {
        var t = new DateTimeOffset(2026, 1, 2, 3, 4, 5, 123, TimeSpan.Zero).AddTicks(4567);
        Assert.Equal("2026-01-02T03:04:05.123456700Z", KadRecord.FormatTime(t));
        var r = new KadRecord { Key = [1], Value = [], TimeReceived = KadRecord.FormatTime(t) };
        Assert.Equal(t, r.ParseTimeReceived());
        Assert.Null((r with { TimeReceived = "not a time" }).ParseTimeReceived());
    }

    [Fact]
    public void Bad_peers_and_addresses_are_dropped_and_lists_are_capped()
    {
        // A peer with an unparseable id, a peer with a bad address next to a good one, then a good peer.
        var bytes = Hex("0804 4204 0a02ffff" + "4236 0a26" + PeerHex + "1202 ffff 1208 0401020304060fa1");
        var m = KadMessage.FromProtobuf(bytes);
        Assert.Equal([Addr], Assert.Single(m.CloserPeers).Addresses);

        var many = new KadMessage
        {
            Type = KadMessageType.GetProviders,
            ProviderPeers = Enumerable.Range(0, KadMessage.MaxPeersPerList + 10).Select(_ => new KadPeer(Peer, Enumerable.Repeat(Addr, KadMessage.MaxAddressesPerPeer + 5).ToList())).ToList(),
        };
        var capped = KadMessage.FromProtobuf(many.ToProtobuf());
        Assert.Equal(KadMessage.MaxPeersPerList, capped.ProviderPeers.Count);
        Assert.All(capped.ProviderPeers, p => Assert.Equal(KadMessage.MaxAddressesPerPeer, p.Addresses.Count));
    }

    [Fact]
    public void Length_prefixed_every_split_and_byte_by_byte()
    {
        var m = new KadMessage { Type = KadMessageType.GetValue, Key = "/pk/x"u8.ToArray(), CloserPeers = [new KadPeer(Peer, [Addr])] };
        var frame = m.ToLengthPrefixedArray();
        byte[] two = [.. frame, .. frame];
        for (var cut = 0; cut <= two.Length; cut++)
        {
            var seq = Split(two, cut);
            Assert.True(KadMessage.TryRead(ref seq, out var a));
            Assert.True(KadMessage.TryRead(ref seq, out var b));
            Assert.Equal(m.Key, a.Key);
            Assert.Equal(Peer, Assert.Single(b.CloserPeers).Id);
            Assert.Equal(0, seq.Length);
        }
        var bytes = ByteByByte(frame);
        Assert.True(KadMessage.TryRead(ref bytes, out _));
        for (var n = 0; n < frame.Length; n++)
        {
            var partial = new ReadOnlySequence<byte>(frame, 0, n);
            Assert.False(KadMessage.TryRead(ref partial, out _));
        }
    }

    [Theory]
    [InlineData("08")]
    [InlineData("12 05 01")]
    [InlineData("1a 02 0a 05")] // record whose key runs past its end
    [InlineData("1a 02 1201")] // record without a key
    [InlineData("0b")]
    public void Malformed_is_a_kad_violation(string hex) =>
        Assert.Equal("kad", Assert.Throws<ProtocolViolationException>(() => KadMessage.FromProtobuf(Hex(hex))).Protocol);

    [Fact]
    public void Size_limits()
    {
        var header = new ReadOnlySequence<byte>(Varint.Encode(KadMessage.MaxMessageLength + 1));
        Assert.Throws<ProtocolViolationException>(() => KadMessage.TryRead(ref header, out _));
        var longKey = new KadMessage { Type = KadMessageType.GetValue, Key = new byte[KadMessage.MaxKeyLength + 1] }.ToProtobuf();
        Assert.Contains("key of", Assert.Throws<ProtocolViolationException>(() => KadMessage.FromProtobuf(longKey)).Detail, StringComparison.Ordinal);
    }

    [Fact]
    public void Random_and_mutated_input_parses_or_violates()
    {
        foreach (var buffer in Random(4000, 120, seed: 4410))
        {
            ParsesOrViolates(() => KadMessage.FromProtobuf(buffer));
            ParsesOrViolates(() =>
            {
                var seq = new ReadOnlySequence<byte>(buffer);
                while (KadMessage.TryRead(ref seq, out _))
                {
                }
            });
        }
        var full = new KadMessage
        {
            Type = KadMessageType.GetValue,
            Key = "/weft/k"u8.ToArray(),
            Record = new KadRecord { Key = "/weft/k"u8.ToArray(), Value = [1, 2, 3], TimeReceived = "x" },
            CloserPeers = [new KadPeer(Peer, [Addr])],
        }.ToProtobuf();
        var rng = new Random(4411);
        for (var i = 0; i < 4000; i++)
        {
            var mutated = (byte[])full.Clone();
            for (var k = rng.Next(1, 4); k > 0; k--) mutated[rng.Next(mutated.Length)] = (byte)rng.Next(256);
            ParsesOrViolates(() => KadMessage.FromProtobuf(mutated));
        }
    }
}
