using System.Buffers;
using Weft.Wire.Identity;
using Weft.Wire.Multiformats;
using Weft.Wire.Relay;
using static Weft.Wire.Tests.Multiformats.TestBytes;
using static Weft.Wire.Tests.Relay.RelayVectors;

namespace Weft.Wire.Tests.Relay;

public class HopMessageTests
{
    // type = 2 (STATUS), reservation = 3 { expire = 300 (ac 02), addrs = /ip4/1.2.3.4/tcp/4001 },
    // limit = 4 { duration = 120 (78), data = 131072 (80 80 08) }, status = 5 OK (100 = 64).
    private static readonly byte[] ReservationOk =
        Hex("08 02 1a 0d 08 ac02 12 08 04010203040 60fa1 22 06 08 78 10 808008 28 64");

    [Fact]
    public void ProtocolConstants()
    {
        Assert.Equal("/libp2p/circuit/relay/0.2.0/hop", RelayProtocol.HopProtocolId);
        Assert.Equal("/libp2p/circuit/relay/0.2.0/stop", RelayProtocol.StopProtocolId);
        Assert.Equal(4096, RelayProtocol.MaxMessageLength);
    }

    [Fact]
    public void ReserveEncodesTypeZeroExplicitly()
    {
        var reserve = new HopMessage { Type = HopMessageType.Reserve };
        Assert.Equal(Hex("08 00"), reserve.ToProtobuf());
        Assert.Equal(Hex("02 08 00"), reserve.ToLengthPrefixedArray());
        HopMessage decoded = HopMessage.FromProtobuf(Hex("08 00"));
        Assert.Equal(HopMessageType.Reserve, decoded.Type);
        Assert.Null(decoded.Peer);
        Assert.Null(decoded.Reservation);
        Assert.Null(decoded.Limit);
        Assert.Null(decoded.Status);
    }

    [Fact]
    public void StatusOkVector()
    {
        byte[] expected = Hex("08 02 28 64");
        Assert.Equal(expected, new HopMessage { Type = HopMessageType.Status, Status = RelayStatus.Ok }.ToProtobuf());
        HopMessage decoded = HopMessage.FromProtobuf(expected);
        Assert.Equal(HopMessageType.Status, decoded.Type);
        Assert.Equal(RelayStatus.Ok, decoded.Status);
    }

    [Theory]
    [InlineData(RelayStatus.ReservationRefused, "08 02 28 c801")]
    [InlineData(RelayStatus.NoReservation, "08 02 28 cc01")]
    [InlineData(RelayStatus.MalformedMessage, "08 02 28 9003")]
    [InlineData(RelayStatus.UnexpectedMessage, "08 02 28 9103")]
    public void StatusCodeVectors(RelayStatus status, string hex)
    {
        Assert.Equal(Hex(hex), new HopMessage { Type = HopMessageType.Status, Status = status }.ToProtobuf());
        Assert.Equal(status, HopMessage.FromProtobuf(Hex(hex)).Status);
    }

    [Fact]
    public void ConnectWithPeerVector()
    {
        // type = 1 (CONNECT), peer = 2 { id }: 08 01 12 28 (40) 0a 26 <id>.
        byte[] expected = Concat(Hex("08 01 12 28"), PeerMessage);
        var connect = new HopMessage { Type = HopMessageType.Connect, Peer = new RelayPeer(PeerKey.PeerId) };
        Assert.Equal(expected, connect.ToProtobuf());
        HopMessage decoded = HopMessage.FromProtobuf(expected);
        Assert.Equal(HopMessageType.Connect, decoded.Type);
        Assert.Equal(PeerKey.PeerId, decoded.Peer!.Id);
        Assert.Empty(decoded.Peer.Addrs);
    }

    [Fact]
    public void ReservationOkVector()
    {
        var message = new HopMessage
        {
            Type = HopMessageType.Status,
            Reservation = new RelayReservation { Expire = 300, Addrs = [Addr] },
            Limit = new RelayLimit { Duration = 120, Data = 131072 },
            Status = RelayStatus.Ok,
        };
        Assert.Equal(ReservationOk, message.ToProtobuf());
        HopMessage decoded = HopMessage.FromProtobuf(ReservationOk);
        Assert.Equal(300UL, decoded.Reservation!.Expire);
        Assert.Equal([Addr], decoded.Reservation.Addrs);
        Assert.Null(decoded.Reservation.Voucher);
        Assert.Equal(120U, decoded.Limit!.Duration);
        Assert.Equal(131072UL, decoded.Limit.Data);
        Assert.Equal(RelayStatus.Ok, decoded.Status);
    }

    [Fact]
    public void JsMillisecondDurationIsCarriedAsIs()
    {
        // js relays send their 2-minute default as 120000 (c0 a9 07) in Limit.duration.
        byte[] bytes = Hex("08 02 22 04 08 c0a907 28 64");
        HopMessage decoded = HopMessage.FromProtobuf(bytes);
        Assert.Equal(120000U, decoded.Limit!.Duration);
        Assert.Null(decoded.Limit.Data);
        Assert.Equal(bytes, decoded.ToProtobuf());
    }

    [Fact]
    public void EmptyNestedMessagesKeepPresence()
    {
        byte[] bytes = Hex("08 02 1a 00 22 00");
        HopMessage decoded = HopMessage.FromProtobuf(bytes);
        Assert.NotNull(decoded.Reservation);
        Assert.Null(decoded.Reservation!.Expire);
        Assert.NotNull(decoded.Limit);
        Assert.Null(decoded.Limit!.Duration);
        Assert.Equal(bytes, decoded.ToProtobuf());
    }

    [Fact]
    public void FullRoundTrip()
    {
        byte[] voucher = new ReservationVoucher(RelayKey.PeerId, PeerKey.PeerId, 1_800_000_000).SealToBytes(RelayKey);
        var message = new HopMessage
        {
            Type = HopMessageType.Status,
            Peer = new RelayPeer(PeerKey.PeerId, [Addr, Multiaddr.Parse("/ip6/::1/udp/4001/quic-v1")]),
            Reservation = new RelayReservation
            {
                Expire = ulong.MaxValue,
                Addrs = [Multiaddr.Parse("/ip4/5.6.7.8/tcp/4001").WithPeerId(RelayKey.PeerId)],
                Voucher = voucher,
            },
            Limit = new RelayLimit { Duration = uint.MaxValue, Data = ulong.MaxValue },
            Status = RelayStatus.ResourceLimitExceeded,
        };
        byte[] bytes = message.ToProtobuf();
        HopMessage decoded = HopMessage.FromProtobuf(bytes);
        Assert.Equal(bytes, decoded.ToProtobuf());
        Assert.Equal(message.Peer.Addrs, decoded.Peer!.Addrs);
        Assert.Equal(message.Reservation.Addrs, decoded.Reservation!.Addrs);
        Assert.Equal(voucher, decoded.Reservation.Voucher);
        Assert.Equal(ulong.MaxValue, decoded.Reservation.Expire);
        Assert.Equal(uint.MaxValue, decoded.Limit!.Duration);
        Assert.Equal(RelayStatus.ResourceLimitExceeded, decoded.Status);

        var writer = new ArrayBufferWriter<byte>();
        message.WriteLengthPrefixedTo(writer);
        Assert.Equal(message.ToLengthPrefixedArray(), writer.WrittenSpan.ToArray());
    }

    [Theory]
    [InlineData("")]
    [InlineData("28 64")]
    [InlineData("12 00")]
    [InlineData("0a 00")]
    public void MissingTypeIsAViolation(string hex)
    {
        var e = Assert.Throws<ProtocolViolationException>(() => HopMessage.FromProtobuf(Hex(hex)));
        Assert.Equal("relay", e.Protocol);
    }

    [Fact]
    public void UnknownFieldsAreSkipped()
    {
        // field 15 varint, field 16 length-delimited, field 6 fixed32, field 7 fixed64, then type and status.
        byte[] bytes = Hex("78 05 8201 02 aabb 35 01020304 39 0102030405060708 08 02 28 64");
        HopMessage decoded = HopMessage.FromProtobuf(bytes);
        Assert.Equal(HopMessageType.Status, decoded.Type);
        Assert.Equal(RelayStatus.Ok, decoded.Status);
        Assert.Equal(Hex("08 02 28 64"), decoded.ToProtobuf());
    }

    [Fact]
    public void UndefinedNumbersAreCarried()
    {
        HopMessage decoded = HopMessage.FromProtobuf(Hex("08 07 28 e707"));
        Assert.Equal((HopMessageType)7, decoded.Type);
        Assert.Equal((RelayStatus)999, decoded.Status);
    }

    [Fact]
    public void UnparseableAddressesAreDropped()
    {
        // reservation { addrs = [ff ff (unknown protocol), good, 04 01 (truncated ip4), empty] }.
        byte[] reservation = Concat(Hex("12 02 ffff 12 08"), AddrBytes, Hex("12 02 0401 12 00"));
        byte[] bytes = Concat(Hex("08 02 1a"), [(byte)reservation.Length], reservation);
        Assert.Equal([Addr], HopMessage.FromProtobuf(bytes).Reservation!.Addrs);

        byte[] peer = Concat(Hex("0a 26"), PeerIdBytes, Hex("12 02 ffff 12 08"), AddrBytes);
        bytes = Concat(Hex("08 01 12"), [(byte)peer.Length], peer);
        Assert.Equal([Addr], HopMessage.FromProtobuf(bytes).Peer!.Addrs);
    }

    [Fact]
    public void AddressListIsBounded()
    {
        var reservation = new List<byte>();
        for (int i = 0; i < RelayProtocol.MaxAddresses + 20; i++)
        {
            reservation.AddRange(Concat(Hex("12 08"), AddrBytes));
        }

        byte[] nested = reservation.ToArray();
        using var w = new Weft.Wire.Protobuf.ProtoWriter();
        w.WriteVarint(1, 2);
        w.WriteBytes(3, nested);
        Assert.Equal(RelayProtocol.MaxAddresses, HopMessage.FromProtobuf(w.ToArray()).Reservation!.Addrs.Count);
    }

    [Theory]
    [InlineData("08 01 12 00")] // peer without id
    [InlineData("08 01 12 03 0a 01 ff")] // peer id that is not a multihash
    [InlineData("08 01 12 02 0a 05")] // truncated nested id
    [InlineData("08 02 22 06 08 8080808010")] // duration above uint32
    [InlineData("08")] // truncated type
    [InlineData("08 02 1a 05 08")] // nested length past the end
    [InlineData("0b 00")] // group wire type
    public void MalformedIsARelayViolation(string hex)
    {
        var e = Assert.Throws<ProtocolViolationException>(() => HopMessage.FromProtobuf(Hex(hex)));
        Assert.Equal("relay", e.Protocol);
    }

    [Fact]
    public void SizeLimitIsEnforced()
    {
        // 08 00 then an unknown field 16 padding to exactly the limit: accepted.
        byte[] atLimit = Padded(RelayProtocol.MaxMessageLength);
        Assert.Equal(RelayProtocol.MaxMessageLength, atLimit.Length);
        Assert.Equal(HopMessageType.Reserve, HopMessage.FromProtobuf(atLimit).Type);
        var seq = new ReadOnlySequence<byte>(Concat(Weft.Wire.Multiformats.Varint.Encode((ulong)atLimit.Length), atLimit));
        Assert.True(HopMessage.TryRead(ref seq, out _));

        byte[] over = Padded(RelayProtocol.MaxMessageLength + 1);
        Assert.Equal("relay", Assert.Throws<ProtocolViolationException>(() => HopMessage.FromProtobuf(over)).Protocol);

        // A framed message announcing more than the limit is refused before its body arrives.
        var header = new ReadOnlySequence<byte>(Weft.Wire.Multiformats.Varint.Encode(RelayProtocol.MaxMessageLength + 1));
        Assert.Throws<ProtocolViolationException>(() => HopMessage.TryRead(ref header, out _));
    }

    [Fact]
    public void FramedReadAtEverySplit()
    {
        byte[] connect = new HopMessage { Type = HopMessageType.Connect, Peer = new RelayPeer(PeerKey.PeerId, [Addr]) }.ToLengthPrefixedArray();
        byte[] stream = Concat(connect, Hex("02 08 00"), Hex("04 08 02 28 64"));
        for (int cut = 0; cut <= stream.Length; cut++)
        {
            AssertThree(TestSequences.Split(stream, cut));
        }

        AssertThree(TestSequences.ByteByByte(stream));
    }

    [Fact]
    public void FramedReadNeedsWholeMessage()
    {
        byte[] framed = new HopMessage { Type = HopMessageType.Connect, Peer = new RelayPeer(PeerKey.PeerId) }.ToLengthPrefixedArray();
        for (int n = 0; n < framed.Length; n++)
        {
            var partial = TestSequences.ByteByByte(framed[..n]);
            ReadOnlySequence<byte> before = partial;
            Assert.False(HopMessage.TryRead(ref partial, out HopMessage? value));
            Assert.Null(value);
            Assert.Equal(before, partial);
        }
    }

    [Fact]
    public void RandomAndTruncatedInputsParseOrViolate()
    {
        foreach (byte[] buffer in Random(3000, 64, seed: 71))
        {
            ParsesOrViolates(() => HopMessage.FromProtobuf(buffer));
            ParsesOrViolates(() => StopMessage.FromProtobuf(buffer));
            ParsesOrViolates(() =>
            {
                var seq = new ReadOnlySequence<byte>(buffer);
                while (HopMessage.TryRead(ref seq, out _))
                {
                }
            });
        }

        byte[] full = new HopMessage
        {
            Type = HopMessageType.Status,
            Peer = new RelayPeer(PeerKey.PeerId, [Addr]),
            Reservation = new RelayReservation { Expire = 1_800_000_000, Addrs = [Addr], Voucher = [1, 2, 3] },
            Limit = new RelayLimit { Duration = 120, Data = 1 << 17 },
            Status = RelayStatus.Ok,
        }.ToProtobuf();
        for (int n = 0; n <= full.Length; n++)
        {
            byte[] prefix = full[..n];
            ParsesOrViolates(() => HopMessage.FromProtobuf(prefix));
        }

        var rng = new Random(72);
        for (int i = 0; i < 3000; i++)
        {
            byte[] mutated = (byte[])full.Clone();
            for (int k = rng.Next(1, 4); k > 0; k--)
            {
                mutated[rng.Next(mutated.Length)] = (byte)rng.Next(256);
            }

            ParsesOrViolates(() => HopMessage.FromProtobuf(mutated));
        }
    }

    private static void AssertThree(ReadOnlySequence<byte> seq)
    {
        Assert.True(HopMessage.TryRead(ref seq, out HopMessage? first));
        Assert.Equal(HopMessageType.Connect, first!.Type);
        Assert.Equal(PeerKey.PeerId, first.Peer!.Id);
        Assert.Equal([Addr], first.Peer.Addrs);
        Assert.True(HopMessage.TryRead(ref seq, out HopMessage? second));
        Assert.Equal(HopMessageType.Reserve, second!.Type);
        Assert.True(HopMessage.TryRead(ref seq, out HopMessage? third));
        Assert.Equal(RelayStatus.Ok, third!.Status);
        Assert.False(HopMessage.TryRead(ref seq, out _));
        Assert.Equal(0, seq.Length);
    }

    private static byte[] Padded(int total)
    {
        // 08 00 | 82 01 <len varint (2 bytes)> <padding>: 2 + 2 + 2 + padding.
        int padding = total - 6;
        return Concat(Hex("08 00 8201"), Weft.Wire.Multiformats.Varint.Encode((ulong)padding), new byte[padding]);
    }
}
