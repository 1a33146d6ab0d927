using System.Buffers;
using Weft.Wire.Multiformats;
using Weft.Wire.Tunnel;
using static Weft.Wire.Tests.Multiformats.TestBytes;

namespace Weft.Wire.Tests.Tunnel;

/// <summary>Vectors from EdgeMesh's proxy.proto as its Go agent writes them (reference/edgemesh.md §6.3).</summary>
public class ProxyMessageTests
{
    // tcp -> ke-edge1 10.244.1.5:8080, with its length prefix (0x20 = 32 bytes).
    private const string ConnectHex = "20 08 00 12 03 74 63 70 1a 08 6b 65 2d 65 64 67 65 31 22 0a 31 30 2e 32 34 34 2e 31 2e 35 28 90 3f";

    private static readonly ProxyMessage Connect = new()
    {
        Type = ProxyMessageType.Connect, Protocol = "tcp", NodeName = "ke-edge1", Ip = "10.244.1.5", Port = 8080,
    };

    [Fact]
    public void Constants()
    {
        Assert.Equal("/libp2p/tunnel-proxy/1.0.0", ProxyMessage.ProtocolId);
        Assert.Equal(4096, ProxyMessage.MaxMessageLength);
    }

    [Fact]
    public void EdgeMeshConnectVectorBothWays()
    {
        Assert.Equal(Hex(ConnectHex), Connect.ToLengthPrefixedArray());
        var seq = new ReadOnlySequence<byte>(Hex(ConnectHex));
        Assert.True(ProxyMessage.TryRead(ref seq, out var decoded));
        Assert.Equal(Connect, decoded);
        Assert.True(seq.IsEmpty);
    }

    [Fact]
    public void SuccessEchoesTheRequestAndFailedIsClearedAsGoWritesIt()
    {
        byte[] success = Hex(ConnectHex);
        success[2] = 0x01;
        Assert.Equal(success, (Connect with { Type = ProxyMessageType.Success }).ToLengthPrefixedArray());
        Assert.Equal(Hex("02 08 02"), new ProxyMessage { Type = ProxyMessageType.Failed }.ToLengthPrefixedArray());
        var failed = ProxyMessage.FromProtobuf(Hex("08 02"));
        Assert.Equal(ProxyMessageType.Failed, failed.Type);
        Assert.Null(failed.NodeName);
        Assert.Null(failed.Port);
    }

    [Fact]
    public void MissingTypeIsConnectAndUnknownFieldsAreSkipped()
    {
        var m = ProxyMessage.FromProtobuf(Hex("78 05 12 03 75 64 70 32 01 ff 28 35"));
        Assert.Equal(ProxyMessageType.Connect, m.Type);
        Assert.Equal("udp", m.Protocol);
        Assert.Equal(53, m.Port);
    }

    [Theory]
    [InlineData("08")]
    [InlineData("12 05 74")]
    [InlineData("0b")]
    [InlineData("28 ffffffffffffffffff7f")]
    public void MalformedIsATunnelProxyViolation(string hex)
    {
        Assert.Equal("tunnel-proxy", Assert.Throws<ProtocolViolationException>(() => ProxyMessage.FromProtobuf(Hex(hex))).Protocol);
    }

    [Fact]
    public void SizeLimitIsCheckedBeforeTheBodyArrives()
    {
        var header = new ReadOnlySequence<byte>(Varint.Encode(ProxyMessage.MaxMessageLength + 1));
        Assert.Throws<ProtocolViolationException>(() => ProxyMessage.TryRead(ref header, out _));
        Assert.Throws<ProtocolViolationException>(() => ProxyMessage.FromProtobuf(new byte[ProxyMessage.MaxMessageLength + 1]));
    }

    [Fact]
    public void RoundTripAtEverySplitThenRawBytesFollow()
    {
        byte[] stream = [.. Hex(ConnectHex), .. "raw"u8];
        for (int cut = 0; cut <= stream.Length; cut++)
        {
            var seq = TestSequences.Split(stream, cut);
            Assert.True(ProxyMessage.TryRead(ref seq, out var m));
            Assert.Equal(Connect, m);
            Assert.Equal("raw"u8.ToArray(), seq.ToArray());
        }

        for (int n = 0; n < 33; n++)
        {
            var partial = TestSequences.ByteByByte(stream[..n]);
            var before = partial;
            Assert.False(ProxyMessage.TryRead(ref partial, out _));
            Assert.Equal(before, partial);
        }
    }

    [Fact]
    public void RandomTruncatedAndMutatedInputsParseOrViolate()
    {
        foreach (byte[] buffer in Random(3000, 64, seed: 91))
        {
            ParsesOrViolates(() => ProxyMessage.FromProtobuf(buffer));
        }

        byte[] full = Connect.ToProtobuf();
        var rng = new Random(92);
        for (int i = 0; i < 2000; i++)
        {
            byte[] mutated = (byte[])full.Clone();
            mutated[rng.Next(mutated.Length)] = (byte)rng.Next(256);
            ParsesOrViolates(() => ProxyMessage.FromProtobuf(mutated));
            byte[] prefix = full[..rng.Next(full.Length + 1)];
            ParsesOrViolates(() => ProxyMessage.FromProtobuf(prefix));
        }
    }
}
