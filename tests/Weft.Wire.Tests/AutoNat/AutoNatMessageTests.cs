using System.Buffers;
using Weft.Wire.AutoNat;
using Weft.Wire.Identity;
using Weft.Wire.Multiformats;
using Weft.Wire.Protobuf;
using static Weft.Wire.Tests.Multiformats.TestBytes;

namespace Weft.Wire.Tests.AutoNat;

/// <summary>
/// Vectors derived by hand from the autonat-v1.md protobuf (Message: type = 1 varint, dial = 2, dialResponse = 3;
/// Dial: peer = 1; PeerInfo: id = 1, addrs = 2; DialResponse: status = 1, statusText = 2, addr = 3).
/// </summary>
public class AutoNatMessageTests
{
    private static readonly Ed25519PrivateKey Key = Ed25519PrivateKey.FromSeed(Enumerable.Range(7, 32).Select(i => (byte)i).ToArray());

    /// <summary>/ip4/1.2.3.4/tcp/4001 = 04 01020304 06 0fa1.</summary>
    private static readonly Multiaddr Addr = Multiaddr.Parse("/ip4/1.2.3.4/tcp/4001");

    private static readonly byte[] AddrBytes = Hex("04 01020304 06 0fa1");

    /// <summary>An Ed25519 identity peer ID: 00 24 08 01 12 20 + 32-byte key (38 bytes).</summary>
    private static byte[] IdBytes => Key.PeerId.Bytes.ToArray();

    /// <summary>
    /// DIAL: 08 00 | 12 34 (dial, 52 bytes) { 0a 32 (peer, 50 bytes) { 0a 26 &lt;id&gt; 12 08 &lt;addr&gt; } }.
    /// </summary>
    private static byte[] DialVector => [.. Hex("08 00 12 34 0a 32 0a 26"), .. IdBytes, .. Hex("12 08"), .. AddrBytes];

    private static byte[] Concat(params byte[][] parts) => parts.SelectMany(p => p).ToArray();

    [Fact]
    public void Constants()
    {
        Assert.Equal("/libp2p/autonat/1.0.0", AutoNatMessage.ProtocolId);
        Assert.Equal(4096, AutoNatMessage.MaxMessageLength);
        Assert.Equal("autonat", AutoNatMessage.Codec);
        Assert.Equal(0, (int)AutoNatResponseStatus.Ok);
        Assert.Equal(100, (int)AutoNatResponseStatus.DialError);
        Assert.Equal(101, (int)AutoNatResponseStatus.DialRefused);
        Assert.Equal(200, (int)AutoNatResponseStatus.BadRequest);
        Assert.Equal(300, (int)AutoNatResponseStatus.InternalError);
    }

    [Fact]
    public void DialVectorEncodesAndDecodes()
    {
        byte[] expected = DialVector;
        Assert.Equal(56, expected.Length);
        var dial = AutoNatMessage.DialRequest(Key.PeerId, [Addr]);
        Assert.Equal(expected, dial.ToProtobuf());
        Assert.Equal(Concat([0x38], expected), dial.ToLengthPrefixedArray());

        AutoNatMessage decoded = AutoNatMessage.FromProtobuf(expected);
        Assert.Equal(AutoNatMessageType.Dial, decoded.Type);
        Assert.Null(decoded.DialResponse);
        Assert.Equal(Key.PeerId, decoded.Dial!.Peer!.Id);
        Assert.Equal([Addr], decoded.Dial.Peer.Addrs);
    }

    [Fact]
    public void OkResponseVector()
    {
        // type = 1 (DIAL_RESPONSE), dialResponse = 3 { status = OK (08 00, written although 0), addr = 1a 08 <addr> }.
        byte[] expected = Concat(Hex("08 01 1a 0c 08 00 1a 08"), AddrBytes);
        var ok = AutoNatMessage.Response(AutoNatResponseStatus.Ok, addr: Addr);
        Assert.Equal(expected, ok.ToProtobuf());
        AutoNatMessage decoded = AutoNatMessage.FromProtobuf(expected);
        Assert.Equal(AutoNatMessageType.DialResponse, decoded.Type);
        Assert.Null(decoded.Dial);
        Assert.Equal(AutoNatResponseStatus.Ok, decoded.DialResponse!.Status);
        Assert.Null(decoded.DialResponse.StatusText);
        Assert.Equal(Addr, decoded.DialResponse.Addr);
    }

    [Fact]
    public void ErrorResponseWithTextVector()
    {
        // E_DIAL_ERROR = 100 (64), statusText = "dial failed" (11 bytes).
        byte[] expected = Hex("08 01 1a 0f 08 64 12 0b 6469616c206661696c6564");
        Assert.Equal(expected, AutoNatMessage.Response(AutoNatResponseStatus.DialError, "dial failed").ToProtobuf());
        AutoNatDialResponse r = AutoNatMessage.FromProtobuf(expected).DialResponse!;
        Assert.Equal(AutoNatResponseStatus.DialError, r.Status);
        Assert.Equal("dial failed", r.StatusText);
        Assert.Null(r.Addr);
    }

    [Theory]
    [InlineData(AutoNatResponseStatus.DialRefused, "08 01 1a 02 08 65")]
    [InlineData(AutoNatResponseStatus.BadRequest, "08 01 1a 03 08 c801")]
    [InlineData(AutoNatResponseStatus.InternalError, "08 01 1a 03 08 ac02")]
    public void StatusCodeVectors(AutoNatResponseStatus status, string hex)
    {
        Assert.Equal(Hex(hex), AutoNatMessage.Response(status).ToProtobuf());
        Assert.Equal(status, AutoNatMessage.FromProtobuf(Hex(hex)).DialResponse!.Status);
    }

    [Fact]
    public void ExplicitPresenceOfEmptyNestedMessages()
    {
        byte[] bytes = Hex("08 00 12 02 0a 00 1a 00");
        AutoNatMessage decoded = AutoNatMessage.FromProtobuf(bytes);
        Assert.NotNull(decoded.Dial!.Peer);
        Assert.Null(decoded.Dial.Peer!.Id);
        Assert.Empty(decoded.Dial.Peer.Addrs);
        Assert.NotNull(decoded.DialResponse);
        Assert.Null(decoded.DialResponse!.Status);
        Assert.Equal(bytes, decoded.ToProtobuf());

        Assert.Equal(Hex("08 00"), new AutoNatMessage { Type = AutoNatMessageType.Dial }.ToProtobuf());
        Assert.Equal(Hex("08 00 12 00"), new AutoNatMessage { Type = AutoNatMessageType.Dial, Dial = new AutoNatDial() }.ToProtobuf());
    }

    [Fact]
    public void MissingTypeIsTheProto2DefaultDial()
    {
        Assert.Equal(AutoNatMessageType.Dial, AutoNatMessage.FromProtobuf([]).Type);
        Assert.Equal(AutoNatMessageType.Dial, AutoNatMessage.FromProtobuf(DialVector[2..]).Type);
        Assert.Equal(Key.PeerId, AutoNatMessage.FromProtobuf(DialVector[2..]).Dial!.Peer!.Id);
    }

    [Fact]
    public void UnknownFieldsAreSkippedAtEveryLevel()
    {
        // Top: field 15 varint, field 16 bytes, field 6 fixed32, field 7 fixed64; dial: field 9 varint;
        // peer: field 3 bytes; response: field 4 varint. Also a known field with the wrong wire type (type as bytes).
        byte[] peer = Concat(Hex("1a 01 ff 0a 26"), IdBytes, Hex("12 08"), AddrBytes);
        byte[] dial = Concat(Hex("48 01 0a"), [(byte)peer.Length], peer);
        byte[] bytes = Concat(
            Hex("78 05 8201 02 aabb 35 01020304 39 0102030405060708 0a 01 00"),
            Hex("08 00 12"), [(byte)dial.Length], dial,
            Hex("1a 04 20 07 08 65"));
        AutoNatMessage decoded = AutoNatMessage.FromProtobuf(bytes);
        Assert.Equal(AutoNatMessageType.Dial, decoded.Type);
        Assert.Equal(Key.PeerId, decoded.Dial!.Peer!.Id);
        Assert.Equal([Addr], decoded.Dial.Peer.Addrs);
        Assert.Equal(AutoNatResponseStatus.DialRefused, decoded.DialResponse!.Status);
    }

    [Fact]
    public void UndefinedNumbersAreCarried()
    {
        AutoNatMessage decoded = AutoNatMessage.FromProtobuf(Hex("08 07 1a 03 08 e707"));
        Assert.Equal((AutoNatMessageType)7, decoded.Type);
        Assert.Equal((AutoNatResponseStatus)999, decoded.DialResponse!.Status);
        Assert.Equal(Hex("08 07 1a 03 08 e707"), decoded.ToProtobuf());
    }

    [Fact]
    public void UnparseableAddressesAreDropped()
    {
        // addrs = [ff ff (unknown protocol), good, 04 01 (truncated ip4), empty]; response addr unparseable -> null.
        byte[] peer = Concat(Hex("12 02 ffff 12 08"), AddrBytes, Hex("12 02 0401 12 00"));
        byte[] dial = Concat(Hex("0a"), [(byte)peer.Length], peer);
        byte[] bytes = Concat(Hex("08 00 12"), [(byte)dial.Length], dial);
        AutoNatPeerInfo info = AutoNatMessage.FromProtobuf(bytes).Dial!.Peer!;
        Assert.Null(info.Id);
        Assert.Equal([Addr], info.Addrs);

        Assert.Null(AutoNatMessage.FromProtobuf(Hex("08 01 1a 06 08 00 1a 02 ffff")).DialResponse!.Addr);
        Assert.Null(AutoNatMessage.FromProtobuf(Hex("08 01 1a 04 08 00 1a 00")).DialResponse!.Addr);
    }

    [Fact]
    public void AddressListIsBounded()
    {
        using var peer = new ProtoWriter();
        for (int i = 0; i < AutoNatMessage.MaxAddresses + 20; i++)
        {
            peer.WriteBytes(2, AddrBytes);
        }

        using var dial = new ProtoWriter();
        dial.WriteMessage(1, peer);
        using var w = new ProtoWriter();
        w.WriteVarint(1, 0);
        w.WriteMessage(2, dial);
        Assert.True(w.Length <= AutoNatMessage.MaxMessageLength);
        Assert.Equal(AutoNatMessage.MaxAddresses, AutoNatMessage.FromProtobuf(w.WrittenSpan).Dial!.Peer!.Addrs.Count);
    }

    [Theory]
    [InlineData("08")] // truncated type
    [InlineData("0b 00")] // group wire type
    [InlineData("08 00 12 05 0a")] // nested length past the end
    [InlineData("08 00 12 03 0a 01 ff")] // peer id that is not a multihash
    [InlineData("08 00 12 04 0a 02 0a 05")] // truncated peer id
    [InlineData("08 01 1a 03 12 01 ff")] // status text that is not UTF-8
    [InlineData("08 01 1a 02 08 ff")] // truncated status varint
    [InlineData("08 ffffffffffffffffff7f")] // overlong varint
    [InlineData("08 8080808010")] // type above int32
    public void MalformedIsAnAutoNatViolation(string hex)
    {
        var e = Assert.Throws<ProtocolViolationException>(() => AutoNatMessage.FromProtobuf(Hex(hex)));
        Assert.Equal("autonat", e.Protocol);
    }

    [Fact]
    public void SizeLimitIsEnforced()
    {
        // 08 00 | 82 01 <2-byte length> <padding>: an unknown field 16 padding to exactly the limit is accepted.
        int padding = AutoNatMessage.MaxMessageLength - 6;
        byte[] atLimit = Concat(Hex("08 00 8201"), Varint.Encode((ulong)padding), new byte[padding]);
        Assert.Equal(AutoNatMessage.MaxMessageLength, atLimit.Length);
        Assert.Equal(AutoNatMessageType.Dial, AutoNatMessage.FromProtobuf(atLimit).Type);
        var framed = new ReadOnlySequence<byte>(Concat(Varint.Encode((ulong)atLimit.Length), atLimit));
        Assert.True(AutoNatMessage.TryRead(ref framed, out _));

        byte[] over = Concat(atLimit, [0x00]);
        Assert.Equal("autonat", Assert.Throws<ProtocolViolationException>(() => AutoNatMessage.FromProtobuf(over)).Protocol);

        // A frame announcing more than the limit is refused before its body arrives.
        var header = new ReadOnlySequence<byte>(Varint.Encode(AutoNatMessage.MaxMessageLength + 1));
        Assert.Equal("autonat", Assert.Throws<ProtocolViolationException>(() => AutoNatMessage.TryRead(ref header, out _)).Protocol);
    }

    [Fact]
    public void FullRoundTrip()
    {
        var dial = AutoNatMessage.DialRequest(Key.PeerId, [Addr, Multiaddr.Parse("/ip6/2001:db8::1/tcp/4001"), Multiaddr.Parse("/dns4/example.com/tcp/443/wss")]);
        byte[] bytes = dial.ToProtobuf();
        AutoNatMessage decoded = AutoNatMessage.FromProtobuf(bytes);
        Assert.Equal(bytes, decoded.ToProtobuf());
        Assert.Equal(dial.Dial!.Peer!.Addrs, decoded.Dial!.Peer!.Addrs);

        var response = AutoNatMessage.Response(AutoNatResponseStatus.Ok, "dialled: ünïcödé", Multiaddr.Parse("/ip6/2001:db8::1/tcp/4001"));
        bytes = response.ToProtobuf();
        decoded = AutoNatMessage.FromProtobuf(bytes);
        Assert.Equal(bytes, decoded.ToProtobuf());
        Assert.Equal(response.DialResponse, decoded.DialResponse);

        var writer = new ArrayBufferWriter<byte>();
        response.WriteLengthPrefixedTo(writer);
        Assert.Equal(response.ToLengthPrefixedArray(), writer.WrittenSpan.ToArray());
    }

    [Fact]
    public void FramedReadAtEverySplit()
    {
        byte[] dial = AutoNatMessage.DialRequest(Key.PeerId, [Addr]).ToLengthPrefixedArray();
        byte[] stream = Concat(dial, Hex("02 08 00"), Concat([0x0d], Hex("08 01 1a 09 08 64 12 05 6572726f72")));
        for (int cut = 0; cut <= stream.Length; cut++)
        {
            AssertThree(Split(stream, cut));
        }

        AssertThree(ByteByByte(stream));
    }

    [Fact]
    public void FramedReadNeedsWholeMessage()
    {
        byte[] framed = AutoNatMessage.DialRequest(Key.PeerId, [Addr, Addr]).ToLengthPrefixedArray();
        for (int n = 0; n < framed.Length; n++)
        {
            var partial = ByteByByte(framed[..n]);
            ReadOnlySequence<byte> before = partial;
            Assert.False(AutoNatMessage.TryRead(ref partial, out AutoNatMessage? value));
            Assert.Null(value);
            Assert.Equal(before, partial);
        }
    }

    [Fact]
    public void RandomTruncatedAndMutatedInputsParseOrViolate()
    {
        foreach (byte[] buffer in Random(3000, 96, seed: 91))
        {
            ParsesOrViolates(() => AutoNatMessage.FromProtobuf(buffer));
            ParsesOrViolates(() =>
            {
                var seq = new ReadOnlySequence<byte>(buffer);
                while (AutoNatMessage.TryRead(ref seq, out _))
                {
                }
            });
        }

        byte[][] fulls =
        [
            AutoNatMessage.DialRequest(Key.PeerId, [Addr, Multiaddr.Parse("/ip6/::1/tcp/1")]).ToProtobuf(),
            AutoNatMessage.Response(AutoNatResponseStatus.Ok, "ok", Addr).ToProtobuf(),
        ];
        var rng = new Random(92);
        foreach (byte[] full in fulls)
        {
            for (int n = 0; n <= full.Length; n++)
            {
                byte[] prefix = full[..n];
                ParsesOrViolates(() => AutoNatMessage.FromProtobuf(prefix));
                ParsesOrViolates(() =>
                {
                    var seq = ByteByByte(Concat(Varint.Encode((ulong)full.Length), prefix));
                    AutoNatMessage.TryRead(ref seq, out _);
                });
            }

            for (int i = 0; i < 3000; i++)
            {
                byte[] mutated = (byte[])full.Clone();
                for (int k = rng.Next(1, 4); k > 0; k--)
                {
                    mutated[rng.Next(mutated.Length)] = (byte)rng.Next(256);
                }

                ParsesOrViolates(() => AutoNatMessage.FromProtobuf(mutated));
            }
        }
    }

    private static void AssertThree(ReadOnlySequence<byte> seq)
    {
        Assert.True(AutoNatMessage.TryRead(ref seq, out AutoNatMessage? first));
        Assert.Equal(AutoNatMessageType.Dial, first!.Type);
        Assert.Equal(Key.PeerId, first.Dial!.Peer!.Id);
        Assert.Equal([Addr], first.Dial.Peer.Addrs);
        Assert.True(AutoNatMessage.TryRead(ref seq, out AutoNatMessage? second));
        Assert.Equal(AutoNatMessageType.Dial, second!.Type);
        Assert.Null(second.Dial);
        Assert.True(AutoNatMessage.TryRead(ref seq, out AutoNatMessage? third));
        Assert.Equal(AutoNatMessageType.DialResponse, third!.Type);
        Assert.Equal(AutoNatResponseStatus.DialError, third.DialResponse!.Status);
        Assert.Equal("error", third.DialResponse.StatusText);
        Assert.False(AutoNatMessage.TryRead(ref seq, out _));
        Assert.Equal(0, seq.Length);
    }
}
