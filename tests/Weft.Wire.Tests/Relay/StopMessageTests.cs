using System.Buffers;
using Weft.Wire.Relay;
using static Weft.Wire.Tests.Multiformats.TestBytes;
using static Weft.Wire.Tests.Relay.RelayVectors;

namespace Weft.Wire.Tests.Relay;

public class StopMessageTests
{
    [Fact]
    public void ConnectWithPeerAndLimitVector()
    {
        // type = 1 CONNECT (0, written explicitly), peer = 2 { id }, limit = 3 { duration = 120, data = 131072 }.
        byte[] expected = Concat(Hex("08 00 12 28"), PeerMessage, Hex("1a 06 08 78 10 808008"));
        var connect = new StopMessage
        {
            Type = StopMessageType.Connect,
            Peer = new RelayPeer(PeerKey.PeerId),
            Limit = new RelayLimit { Duration = 120, Data = 131072 },
        };
        Assert.Equal(expected, connect.ToProtobuf());
        StopMessage decoded = StopMessage.FromProtobuf(expected);
        Assert.Equal(StopMessageType.Connect, decoded.Type);
        Assert.Equal(PeerKey.PeerId, decoded.Peer!.Id);
        Assert.Equal(120U, decoded.Limit!.Duration);
        Assert.Equal(131072UL, decoded.Limit.Data);
        Assert.Null(decoded.Status);
    }

    [Fact]
    public void BareConnectIs0800()
    {
        Assert.Equal(Hex("08 00"), new StopMessage { Type = StopMessageType.Connect }.ToProtobuf());
        Assert.Equal(StopMessageType.Connect, StopMessage.FromProtobuf(Hex("08 00")).Type);
    }

    [Fact]
    public void StatusVectors()
    {
        // type = 1 STATUS (1), status = 4: OK = 100 (64), CONNECTION_FAILED = 203 (cb 01).
        Assert.Equal(Hex("08 01 20 64"), new StopMessage { Type = StopMessageType.Status, Status = RelayStatus.Ok }.ToProtobuf());
        Assert.Equal(Hex("08 01 20 cb01"), new StopMessage { Type = StopMessageType.Status, Status = RelayStatus.ConnectionFailed }.ToProtobuf());
        Assert.Equal(RelayStatus.Ok, StopMessage.FromProtobuf(Hex("08 01 20 64")).Status);
        Assert.Equal(RelayStatus.ConnectionFailed, StopMessage.FromProtobuf(Hex("08 01 20 cb01")).Status);
        Assert.Equal(Hex("04 08 01 20 64"), new StopMessage { Type = StopMessageType.Status, Status = RelayStatus.Ok }.ToLengthPrefixedArray());
    }

    [Fact]
    public void HopOnlyFieldsAreUnknownInStop()
    {
        // Field 5 (hop's status) is unknown in stop and skipped; field 3 here is the limit, not a reservation.
        StopMessage decoded = StopMessage.FromProtobuf(Hex("08 01 28 64 1a 02 08 05"));
        Assert.Null(decoded.Status);
        Assert.Equal(5U, decoded.Limit!.Duration);
    }

    [Theory]
    [InlineData("")]
    [InlineData("20 64")]
    [InlineData("12 00")]
    [InlineData("08 01 20")]
    public void MalformedIsARelayViolation(string hex)
    {
        Assert.Equal("relay", Assert.Throws<ProtocolViolationException>(() => StopMessage.FromProtobuf(Hex(hex))).Protocol);
    }

    [Fact]
    public void SizeLimit()
    {
        byte[] over = Concat(Hex("08 00 8201"), Weft.Wire.Multiformats.Varint.Encode(RelayProtocol.MaxMessageLength), new byte[RelayProtocol.MaxMessageLength]);
        Assert.Throws<ProtocolViolationException>(() => StopMessage.FromProtobuf(over));
        var framed = new ReadOnlySequence<byte>(Weft.Wire.Multiformats.Varint.Encode(5000));
        Assert.Throws<ProtocolViolationException>(() => StopMessage.TryRead(ref framed, out _));
    }

    [Fact]
    public void RoundTripAndEverySplit()
    {
        var message = new StopMessage
        {
            Type = StopMessageType.Connect,
            Peer = new RelayPeer(RelayKey.PeerId, [Addr]),
            Limit = new RelayLimit { Data = 42 },
            Status = RelayStatus.Ok,
        };
        byte[] framed = message.ToLengthPrefixedArray();
        for (int cut = 0; cut <= framed.Length; cut++)
        {
            AssertDecoded(TestSequences.Split(framed, cut), message);
        }

        AssertDecoded(TestSequences.ByteByByte(framed), message);
        for (int n = 0; n < framed.Length; n++)
        {
            var partial = new ReadOnlySequence<byte>(framed[..n]);
            Assert.False(StopMessage.TryRead(ref partial, out _));
            Assert.Equal(n, partial.Length);
        }
    }

    [Fact]
    public void TruncatedAndMutatedInputsParseOrViolate()
    {
        byte[] full = new StopMessage { Type = StopMessageType.Connect, Peer = new RelayPeer(PeerKey.PeerId, [Addr]), Limit = new RelayLimit { Duration = 1 } }.ToProtobuf();
        for (int n = 0; n <= full.Length; n++)
        {
            byte[] prefix = full[..n];
            ParsesOrViolates(() => StopMessage.FromProtobuf(prefix));
        }

        var rng = new Random(73);
        for (int i = 0; i < 2000; i++)
        {
            byte[] mutated = (byte[])full.Clone();
            mutated[rng.Next(mutated.Length)] = (byte)rng.Next(256);
            ParsesOrViolates(() => StopMessage.FromProtobuf(mutated));
        }
    }

    private static void AssertDecoded(ReadOnlySequence<byte> seq, StopMessage expected)
    {
        Assert.True(StopMessage.TryRead(ref seq, out StopMessage? decoded));
        Assert.Equal(0, seq.Length);
        Assert.Equal(expected.ToProtobuf(), decoded!.ToProtobuf());
        Assert.Equal(expected.Peer!.Addrs, decoded.Peer!.Addrs);
    }
}
