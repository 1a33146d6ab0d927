using System.Buffers;
using Weft.Wire.Dcutr;
using Weft.Wire.Multiformats;
using static Weft.Wire.Tests.Multiformats.TestBytes;

namespace Weft.Wire.Tests.Dcutr;

/// <summary>Vectors derived by hand from the DCUtR.md protobuf (type = 1 varint, ObsAddrs = 2 bytes).</summary>
public class HolePunchMessageTests
{
    private static readonly Multiaddr Addr = Multiaddr.Parse("/ip4/1.2.3.4/tcp/4001");

    [Fact]
    public void Constants()
    {
        Assert.Equal("/libp2p/dcutr", HolePunchMessage.ProtocolId);
        Assert.Equal(4096, HolePunchMessage.MaxMessageLength);
    }

    [Fact]
    public void ConnectVector()
    {
        // CONNECT = 100 (64), ObsAddrs = [/ip4/1.2.3.4/tcp/4001 = 04 01020304 06 0fa1].
        byte[] expected = Hex("08 64 12 08 0401020304060fa1");
        var connect = new HolePunchMessage { Type = HolePunchType.Connect, ObsAddrs = [Addr] };
        Assert.Equal(expected, connect.ToProtobuf());
        Assert.Equal(Hex("0c 08 64 12 08 0401020304060fa1"), connect.ToLengthPrefixedArray());
        HolePunchMessage decoded = HolePunchMessage.FromProtobuf(expected);
        Assert.Equal(HolePunchType.Connect, decoded.Type);
        Assert.Equal([Addr], decoded.ObsAddrs);
    }

    [Fact]
    public void SyncVector()
    {
        // SYNC = 300 = ac 02.
        Assert.Equal(Hex("08 ac02"), new HolePunchMessage { Type = HolePunchType.Sync }.ToProtobuf());
        HolePunchMessage decoded = HolePunchMessage.FromProtobuf(Hex("08 ac02"));
        Assert.Equal(HolePunchType.Sync, decoded.Type);
        Assert.Empty(decoded.ObsAddrs);
    }

    [Fact]
    public void MissingTypeIsTheProto2DefaultConnect()
    {
        Assert.Equal(HolePunchType.Connect, HolePunchMessage.FromProtobuf([]).Type);
        Assert.Equal(HolePunchType.Connect, HolePunchMessage.FromProtobuf(Hex("12 08 0401020304060fa1")).Type);
    }

    [Fact]
    public void UnparseableAddressesDroppedAndUnknownFieldsSkipped()
    {
        byte[] bytes = Hex("12 02 ffff 78 01 08 64 12 08 0401020304060fa1 1a 00 12 00");
        HolePunchMessage decoded = HolePunchMessage.FromProtobuf(bytes);
        Assert.Equal(HolePunchType.Connect, decoded.Type);
        Assert.Equal([Addr], decoded.ObsAddrs);
    }

    [Theory]
    [InlineData("08")]
    [InlineData("12 05 04")]
    [InlineData("0b")]
    [InlineData("08 ffffffffffffffffff7f")]
    public void MalformedIsADcutrViolation(string hex)
    {
        Assert.Equal("dcutr", Assert.Throws<ProtocolViolationException>(() => HolePunchMessage.FromProtobuf(Hex(hex))).Protocol);
    }

    [Fact]
    public void SizeLimit()
    {
        int padding = HolePunchMessage.MaxMessageLength - 6;
        byte[] atLimit = [.. Hex("08 64 8201"), .. Varint.Encode((ulong)padding), .. new byte[padding]];
        Assert.Equal(HolePunchMessage.MaxMessageLength, atLimit.Length);
        Assert.Equal(HolePunchType.Connect, HolePunchMessage.FromProtobuf(atLimit).Type);
        byte[] over = [.. atLimit, 0x00];
        Assert.Throws<ProtocolViolationException>(() => HolePunchMessage.FromProtobuf(over));
        var header = new ReadOnlySequence<byte>(Varint.Encode(HolePunchMessage.MaxMessageLength + 1));
        Assert.Throws<ProtocolViolationException>(() => HolePunchMessage.TryRead(ref header, out _));
    }

    [Fact]
    public void RoundTripAtEverySplit()
    {
        var connect = new HolePunchMessage
        {
            Type = HolePunchType.Connect,
            ObsAddrs = [Addr, Multiaddr.Parse("/ip6/2001:db8::1/udp/4001/quic-v1"), Multiaddr.Parse("/ip4/9.9.9.9/tcp/1")],
        };
        var writer = new ArrayBufferWriter<byte>();
        connect.WriteLengthPrefixedTo(writer);
        int firstLength = writer.WrittenCount;
        new HolePunchMessage { Type = HolePunchType.Sync }.WriteLengthPrefixedTo(writer);
        byte[] stream = writer.WrittenSpan.ToArray();
        for (int cut = 0; cut <= stream.Length; cut++)
        {
            AssertBoth(TestSequences.Split(stream, cut), connect);
        }

        AssertBoth(TestSequences.ByteByByte(stream), connect);
        for (int n = 0; n < firstLength; n++)
        {
            var partial = TestSequences.ByteByByte(stream[..n]);
            ReadOnlySequence<byte> before = partial;
            Assert.False(HolePunchMessage.TryRead(ref partial, out _));
            Assert.Equal(before, partial);
        }
    }

    [Fact]
    public void RandomTruncatedAndMutatedInputsParseOrViolate()
    {
        foreach (byte[] buffer in Random(3000, 64, seed: 75))
        {
            ParsesOrViolates(() => HolePunchMessage.FromProtobuf(buffer));
            ParsesOrViolates(() =>
            {
                var seq = new ReadOnlySequence<byte>(buffer);
                while (HolePunchMessage.TryRead(ref seq, out _))
                {
                }
            });
        }

        byte[] full = new HolePunchMessage { Type = HolePunchType.Sync, ObsAddrs = [Addr, Addr] }.ToProtobuf();
        for (int n = 0; n <= full.Length; n++)
        {
            byte[] prefix = full[..n];
            ParsesOrViolates(() => HolePunchMessage.FromProtobuf(prefix));
        }

        var rng = new Random(76);
        for (int i = 0; i < 2000; i++)
        {
            byte[] mutated = (byte[])full.Clone();
            mutated[rng.Next(mutated.Length)] = (byte)rng.Next(256);
            ParsesOrViolates(() => HolePunchMessage.FromProtobuf(mutated));
        }
    }

    private static void AssertBoth(ReadOnlySequence<byte> seq, HolePunchMessage connect)
    {
        Assert.True(HolePunchMessage.TryRead(ref seq, out HolePunchMessage? first));
        Assert.Equal(HolePunchType.Connect, first!.Type);
        Assert.Equal(connect.ObsAddrs, first.ObsAddrs);
        Assert.True(HolePunchMessage.TryRead(ref seq, out HolePunchMessage? second));
        Assert.Equal(HolePunchType.Sync, second!.Type);
        Assert.False(HolePunchMessage.TryRead(ref seq, out _));
    }
}
