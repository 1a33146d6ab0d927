using System.Buffers;
using Weft.Wire.Protobuf;
using static Weft.Wire.Tests.Multiformats.TestBytes;

namespace Weft.Wire.Tests.Protobuf;

public class ProtoWriterTests
{
    [Fact]
    public void WritesTheProtobufDocumentationExamples()
    {
        using var w = new ProtoWriter();
        w.WriteVarint(1, 150);
        Assert.Equal("089601", ToHex(w.WrittenSpan));
        w.Clear();
        w.WriteString(2, "testing");
        Assert.Equal("120774657374696e67", ToHex(w.ToArray()));
        Assert.Equal(9, w.Length);
    }

    [Fact]
    public void NegativeInt32IsTenBytes()
    {
        using var w = new ProtoWriter();
        w.WriteInt32(1, -1);
        Assert.Equal("08ffffffffffffffffff01", ToHex(w.WrittenSpan));
    }

    [Fact]
    public void NestedMessagesAndFixedFields()
    {
        using var inner = new ProtoWriter();
        inner.WriteVarint(1, 150);
        using var outer = new ProtoWriter();
        outer.WriteMessage(3, inner);
        outer.WriteFixed32(4, 1);
        outer.WriteFixed64(5, 2);
        outer.WriteBool(6, false);
        Assert.Equal("1a03089601" + "2501000000" + "290200000000000000" + "3000", ToHex(outer.WrittenSpan));
    }

    [Fact]
    public void GrowsBeyondItsInitialCapacity()
    {
        using var w = new ProtoWriter(1);
        var payload = new byte[100_000];
        new Random(14).NextBytes(payload);
        for (int i = 0; i < 5; i++)
        {
            w.WriteBytes(1, payload);
        }

        var r = new ProtoReader(w.WrittenSpan);
        int count = 0;
        while (r.TryReadTag(out _, out _))
        {
            Assert.True(r.ReadBytes().SequenceEqual(payload));
            count++;
        }

        Assert.Equal(5, count);
    }

    [Fact]
    public void LengthPrefixedOutput()
    {
        using var w = new ProtoWriter();
        w.WriteBytes(1, new byte[200]);
        byte[] prefixed = w.ToLengthPrefixedArray();
        Assert.Equal("cb01", ToHex(prefixed.AsSpan(0, 2)));
        Assert.Equal(w.Length + 2, prefixed.Length);

        var sink = new ArrayBufferWriter<byte>();
        w.WriteLengthPrefixedTo(sink);
        Assert.Equal(prefixed, sink.WrittenSpan.ToArray());
    }

    [Fact]
    public void WorksAsABufferWriterAndAfterDispose()
    {
        var w = new ProtoWriter();
        Span<byte> span = w.GetSpan(3);
        span[0] = 1;
        span[1] = 2;
        span[2] = 3;
        w.Advance(3);
        w.WriteRaw([4]);
        w.WriteRawVarint(300);
        Assert.Equal("01020304ac02", ToHex(w.WrittenSpan));
        w.Dispose();
        Assert.Equal(0, w.Length);
        w.WriteVarint(1, 1);
        Assert.Equal("0801", ToHex(w.WrittenSpan));
        w.Dispose();
        Assert.Throws<ArgumentOutOfRangeException>(() => w.Advance(-1));
    }

    [Fact]
    public void InvalidFieldNumbersAreRejected()
    {
        using var w = new ProtoWriter();
        Assert.Throws<ArgumentOutOfRangeException>(() => w.WriteVarint(0, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => w.WriteVarint(ProtoReader.MaxFieldNumber + 1, 1));
    }
}
