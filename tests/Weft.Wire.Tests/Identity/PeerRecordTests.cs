using Weft.Wire.Identity;
using Weft.Wire.Multiformats;
using Weft.Wire.Protobuf;
using Weft.Wire.Tests.Multiformats;

namespace Weft.Wire.Tests.Identity;

public class PeerRecordTests
{
    private static readonly Ed25519PrivateKey Key = Ed25519PrivateKey.FromSeed(Enumerable.Range(0, 32).Select(i => (byte)i).ToArray());

    private static readonly Multiaddr[] Addresses =
    [
        Multiaddr.Parse("/ip4/1.2.3.4/tcp/4001"),
        Multiaddr.Parse("/ip6/::1/udp/4001/quic-v1"),
        Multiaddr.Parse("/dns4/example.com/tcp/443/wss"),
    ];

    [Fact]
    public void ProtobufRoundTrip()
    {
        var record = new PeerRecord(Key.PeerId, 1234567890123, Addresses);
        byte[] bytes = record.ToProtobuf();
        PeerRecord decoded = PeerRecord.FromProtobuf(bytes);
        Assert.Equal(Key.PeerId, decoded.PeerId);
        Assert.Equal(1234567890123UL, decoded.Seq);
        Assert.Equal(Addresses, decoded.Addresses);
        Assert.Equal(bytes, decoded.ToProtobuf());

        // Layout: peer_id = 1, seq = 2, addresses = 3 { multiaddr = 1 }.
        var reader = new ProtoReader(bytes);
        Assert.True(reader.TryReadTag(out int field, out WireType type));
        Assert.Equal((1, WireType.LengthDelimited), (field, type));
        Assert.Equal(Key.PeerId.Bytes.ToArray(), reader.ReadBytes().ToArray());
        Assert.True(reader.TryReadTag(out field, out type));
        Assert.Equal((2, WireType.Varint), (field, type));
        Assert.Equal(1234567890123UL, reader.ReadVarint());
        Assert.True(reader.TryReadTag(out field, out _));
        Assert.Equal(3, field);
        var inner = new ProtoReader(reader.ReadBytes());
        Assert.True(inner.TryReadTag(out field, out _));
        Assert.Equal(1, field);
        Assert.Equal(Addresses[0].ToBytes(), inner.ReadBytes().ToArray());
    }

    [Fact]
    public void SealAndOpenSignedRecord()
    {
        var record = new PeerRecord(Key.PeerId, 7, Addresses);
        SignedEnvelope env = record.Seal(Key);
        Assert.Equal([0x03, 0x01], env.PayloadType.ToArray());
        byte[] wire = env.ToProtobuf();

        PeerRecord opened = PeerRecord.FromEnvelope(SignedEnvelope.Open(wire, PeerRecord.Domain));
        Assert.Equal(Key.PeerId, opened.PeerId);
        Assert.Equal(7UL, opened.Seq);
        Assert.Equal(Addresses, opened.Addresses);
        Assert.Equal(Addresses, PeerRecord.OpenSigned(wire).Addresses);

        Assert.Throws<ProtocolViolationException>(() => SignedEnvelope.Open(wire, "libp2p-routing-state"));
    }

    [Fact]
    public void RecordForAnotherPeerIsRejected()
    {
        Ed25519PrivateKey other = Ed25519PrivateKey.Generate();
        var record = new PeerRecord(other.PeerId, 1, Addresses);
        Assert.Throws<ArgumentException>(() => record.Seal(Key));

        SignedEnvelope forged = SignedEnvelope.Seal(Key, PeerRecord.Domain, PeerRecord.PayloadType, record.ToProtobuf());
        var e = Assert.Throws<ProtocolViolationException>(() => PeerRecord.FromEnvelope(forged));
        Assert.Equal("peer-record", e.Protocol);
        Assert.Throws<ProtocolViolationException>(() => PeerRecord.OpenSigned(forged.ToProtobuf()));
    }

    [Fact]
    public void WrongPayloadTypeIsRejected()
    {
        var record = new PeerRecord(Key.PeerId, 1, Addresses);
        SignedEnvelope env = SignedEnvelope.Seal(Key, PeerRecord.Domain, [0x03, 0x02], record.ToProtobuf());
        Assert.Throws<ProtocolViolationException>(() => PeerRecord.FromEnvelope(env));
    }

    [Fact]
    public void MalformedRecordsAreRejected()
    {
        using var noPeer = new ProtoWriter();
        noPeer.WriteVarint(2, 1);
        Assert.Throws<ProtocolViolationException>(() => PeerRecord.FromProtobuf(noPeer.WrittenSpan));

        using var badAddr = new ProtoWriter();
        badAddr.WriteBytes(1, Key.PeerId.Bytes.Span);
        badAddr.WriteBytes(3, [0x0a, 0x02, 0x07, 0x00]);
        Assert.Throws<ProtocolViolationException>(() => PeerRecord.FromProtobuf(badAddr.WrittenSpan));

        using var emptyInfo = new ProtoWriter();
        emptyInfo.WriteBytes(1, Key.PeerId.Bytes.Span);
        emptyInfo.WriteBytes(3, []);
        Assert.Throws<ProtocolViolationException>(() => PeerRecord.FromProtobuf(emptyInfo.WrittenSpan));

        using var tooMany = new ProtoWriter();
        tooMany.WriteBytes(1, Key.PeerId.Bytes.Span);
        using var info = new ProtoWriter();
        info.WriteBytes(1, Addresses[0].Bytes.Span);
        for (int i = 0; i <= PeerRecord.MaxAddresses; i++)
        {
            tooMany.WriteMessage(3, info);
        }

        Assert.Throws<ProtocolViolationException>(() => PeerRecord.FromProtobuf(tooMany.WrittenSpan));
    }

    [Fact]
    public void RandomAndTruncatedRecordsParseOrViolate()
    {
        byte[] bytes = new PeerRecord(Key.PeerId, 99, Addresses).ToProtobuf();
        for (int length = 0; length < bytes.Length; length++)
        {
            byte[] prefix = bytes[..length];
            TestBytes.ParsesOrViolates(() => PeerRecord.FromProtobuf(prefix));
        }

        for (int i = 0; i < bytes.Length; i++)
        {
            byte[] flipped = (byte[])bytes.Clone();
            flipped[i] ^= 0x21;
            TestBytes.ParsesOrViolates(() => PeerRecord.FromProtobuf(flipped));
        }

        foreach (byte[] data in TestBytes.Random(2000, 120, seed: 12))
        {
            TestBytes.ParsesOrViolates(() => PeerRecord.FromProtobuf(data));
            TestBytes.ParsesOrViolates(() => PeerRecord.OpenSigned(data));
        }
    }
}
