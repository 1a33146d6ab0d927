using System.Buffers;
using Weft.Wire.Multiformats;
using static Weft.Wire.Tests.Multiformats.TestBytes;

namespace Weft.Wire.Tests.Multiformats;

public class VarintTests
{
    public static TheoryData<ulong, string> Vectors => new()
    {
        { 0UL, "00" },
        { 1UL, "01" },
        { 127UL, "7f" },
        { 128UL, "8001" },
        { 255UL, "ff01" },
        { 300UL, "ac02" },
        { 16384UL, "808001" },
        { 0x0301UL, "8106" },
        { (1UL << 63) - 1, "ffffffffffffffff7f" },
        { ulong.MaxValue, "ffffffffffffffffff01" },
    };

    [Theory]
    [MemberData(nameof(Vectors))]
    public void EncodesAndDecodesSpecVectors(ulong value, string hex)
    {
        byte[] expected = Hex(hex);
        Span<byte> buffer = stackalloc byte[Varint.MaxLength];
        int written = Varint.Write(buffer, value);
        Assert.Equal(hex, ToHex(buffer[..written]));
        Assert.Equal(expected.Length, Varint.SizeOf(value));
        Assert.Equal(expected, Varint.Encode(value));

        Assert.True(Varint.TryRead(expected, out ulong decoded, out int consumed));
        Assert.Equal(value, decoded);
        Assert.Equal(expected.Length, consumed);
    }

    [Theory]
    [MemberData(nameof(Vectors))]
    public void SequenceReadWorksAtEverySplitAndByteByByte(ulong value, string hex)
    {
        byte[] data = [.. Hex(hex), 0xAA, 0xBB];
        for (int at = 0; at <= data.Length; at++)
        {
            ReadOnlySequence<byte> seq = Split(data, at);
            Assert.True(Varint.TryRead(ref seq, out ulong decoded));
            Assert.Equal(value, decoded);
            Assert.Equal(2, seq.Length);
            Assert.Equal(0xAA, seq.FirstSpan[0]);
        }

        ReadOnlySequence<byte> bytes = ByteByByte(data);
        Assert.True(Varint.TryRead(ref bytes, out ulong v2));
        Assert.Equal(value, v2);
        Assert.Equal(2, bytes.Length);
    }

    [Theory]
    [MemberData(nameof(Vectors))]
    public void IncompleteInputReturnsFalseAndLeavesInputUntouched(ulong value, string hex)
    {
        _ = value;
        byte[] data = Hex(hex);
        for (int length = 0; length < data.Length; length++)
        {
            byte[] prefix = data[..length];
            Assert.False(Varint.TryRead(prefix, out _, out int consumed));
            Assert.Equal(0, consumed);
            for (int at = 0; at <= prefix.Length; at++)
            {
                ReadOnlySequence<byte> seq = Split(prefix, at);
                Assert.False(Varint.TryRead(ref seq, out _));
                Assert.Equal(prefix.Length, seq.Length);
            }

            ReadOnlySequence<byte> bytes = ByteByByte(prefix);
            Assert.False(Varint.TryRead(ref bytes, out _));
            Assert.Equal(prefix.Length, bytes.Length);
        }
    }

    [Theory]
    [InlineData("8000")]
    [InlineData("ff00")]
    [InlineData("808000")]
    [InlineData("ffffffffffffffffff00")]
    public void NonMinimalEncodingIsRejected(string hex)
    {
        byte[] data = Hex(hex);
        var e = Assert.Throws<ProtocolViolationException>(() => Varint.TryRead(data, out _, out _));
        Assert.Equal("varint", e.Protocol);
        ReadOnlySequence<byte> seq = ByteByByte(data);
        Assert.Throws<ProtocolViolationException>(() => Varint.TryRead(ref seq, out _));
    }

    [Theory]
    [InlineData("ffffffffffffffffff02")]
    [InlineData("ffffffffffffffffff7f")]
    [InlineData("ffffffffffffffffff8001")]
    [InlineData("8080808080808080808001")]
    public void OverflowingOrOverlongEncodingIsRejected(string hex)
    {
        byte[] data = Hex(hex);
        Assert.Throws<ProtocolViolationException>(() => Varint.TryRead(data, out _, out _));
        for (int at = 0; at <= data.Length; at++)
        {
            ReadOnlySequence<byte> seq = Split(data, at);
            Assert.Throws<ProtocolViolationException>(() => Varint.TryRead(ref seq, out _));
        }
    }

    [Fact]
    public void RoundTripsEverySevenBitBoundary()
    {
        Span<byte> buffer = stackalloc byte[Varint.MaxLength];
        for (int bits = 0; bits <= 64; bits++)
        {
            ulong top = bits == 64 ? ulong.MaxValue : (1UL << bits) - 1;
            foreach (ulong value in new[] { top, top + 1, top == 0 ? 0 : top - 1 })
            {
                int written = Varint.Write(buffer, value);
                Assert.Equal(written, Varint.SizeOf(value));
                Assert.True(Varint.TryRead(buffer[..written], out ulong decoded, out int consumed));
                Assert.Equal(value, decoded);
                Assert.Equal(written, consumed);
            }
        }
    }

    [Fact]
    public void WritesToBufferWriter()
    {
        var writer = new ArrayBufferWriter<byte>();
        Varint.Write(writer, 300);
        Varint.Write(writer, 1);
        Assert.Equal("ac0201", ToHex(writer.WrittenSpan));
    }

    [Fact]
    public void RandomBytesParseOrThrowProtocolViolation()
    {
        foreach (byte[] data in TestBytes.Random(2000, 12, seed: 1))
        {
            ParsesOrViolates(() => Varint.TryRead(data, out _, out _));
            ReadOnlySequence<byte> seq = ByteByByte(data);
            ParsesOrViolates(() =>
            {
                bool ok = Varint.TryRead(ref seq, out ulong value);
                if (ok)
                {
                    Assert.True(Varint.TryRead(data, out ulong again, out int consumed));
                    Assert.Equal(again, value);
                    Assert.Equal(data.Length - consumed, seq.Length);
                }
            });
        }
    }
}
