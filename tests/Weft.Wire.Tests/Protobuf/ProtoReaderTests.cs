using Weft.Wire.Protobuf;
using Weft.Wire.Tests.Multiformats;
using static Weft.Wire.Tests.Multiformats.TestBytes;

namespace Weft.Wire.Tests.Protobuf;

public class ProtoReaderTests
{
    [Fact]
    public void ReadsTheProtobufDocumentationExamples()
    {
        // message Test1 { int32 a = 1; } with a = 150
        var reader = new ProtoReader(Hex("089601"));
        Assert.True(reader.TryReadTag(out int field, out WireType type));
        Assert.Equal((1, WireType.Varint), (field, type));
        Assert.Equal(150UL, reader.ReadVarint());
        Assert.False(reader.TryReadTag(out _, out _));
        Assert.True(reader.IsAtEnd);

        // message Test2 { string b = 2; } with b = "testing"
        reader = new ProtoReader(Hex("120774657374696e67"));
        Assert.True(reader.TryReadTag(out field, out type));
        Assert.Equal((2, WireType.LengthDelimited), (field, type));
        Assert.Equal("testing", reader.ReadString());
        Assert.Equal(9, reader.Position);
    }

    [Fact]
    public void ReadsEveryScalarKind()
    {
        using var w = new ProtoWriter(4);
        w.WriteVarint(1, ulong.MaxValue);
        w.WriteInt32(2, -5);
        w.WriteBool(3, true);
        w.WriteFixed32(4, 0xDEADBEEF);
        w.WriteFixed64(5, 0x0102030405060708);
        w.WriteString(6, "héllo");
        w.WriteBytes(7, [1, 2, 3]);
        w.WriteVarint(ProtoReader.MaxFieldNumber, 9);
        w.WriteBytes(8, []);

        var r = new ProtoReader(w.WrittenSpan);
        Assert.True(r.TryReadTag(out int f, out WireType t));
        Assert.Equal((1, WireType.Varint), (f, t));
        Assert.Equal(ulong.MaxValue, r.ReadVarint());
        Assert.True(r.TryReadTag(out f, out _));
        Assert.Equal(2, f);
        Assert.Equal(-5, r.ReadInt32());
        Assert.True(r.TryReadTag(out _, out _));
        Assert.True(r.ReadBool());
        Assert.True(r.TryReadTag(out f, out t));
        Assert.Equal((4, WireType.Fixed32), (f, t));
        Assert.Equal(0xDEADBEEF, r.ReadFixed32());
        Assert.True(r.TryReadTag(out f, out t));
        Assert.Equal((5, WireType.Fixed64), (f, t));
        Assert.Equal(0x0102030405060708UL, r.ReadFixed64());
        Assert.True(r.TryReadTag(out _, out _));
        Assert.Equal("héllo", r.ReadString());
        Assert.True(r.TryReadTag(out _, out _));
        Assert.Equal([1, 2, 3], r.ReadBytes().ToArray());
        Assert.True(r.TryReadTag(out f, out _));
        Assert.Equal(ProtoReader.MaxFieldNumber, f);
        Assert.Equal(9U, r.ReadUInt32());
        Assert.True(r.TryReadTag(out f, out _));
        Assert.Equal(8, f);
        Assert.True(r.ReadBytes().IsEmpty);
        Assert.False(r.TryReadTag(out _, out _));
    }

    [Fact]
    public void SkipsEveryWireType()
    {
        using var w = new ProtoWriter();
        w.WriteVarint(1, 300);
        w.WriteFixed64(2, 1);
        w.WriteBytes(3, new byte[200]);
        w.WriteFixed32(4, 1);
        w.WriteVarint(9, 42);
        var r = new ProtoReader(w.WrittenSpan);
        int fields = 0;
        while (r.TryReadTag(out int f, out WireType t))
        {
            fields++;
            if (f == 9)
            {
                Assert.Equal(42UL, r.ReadVarint());
            }
            else
            {
                r.Skip(t);
            }
        }

        Assert.Equal(5, fields);
    }

    [Theory]
    [InlineData("00")]
    [InlineData("0b")]
    [InlineData("0c")]
    [InlineData("0e")]
    [InlineData("0f")]
    [InlineData("f8ffffff1f00")]
    [InlineData("80")]
    [InlineData("ffffffffffffffffffff01")]
    public void InvalidTagsAreViolations(string hex)
    {
        byte[] data = Hex(hex);
        var e = Assert.Throws<ProtocolViolationException>(() =>
        {
            var r = new ProtoReader(data);
            r.TryReadTag(out _, out _);
        });
        Assert.Equal("protobuf", e.Protocol);
    }

    [Theory]
    [InlineData("08")]
    [InlineData("0880")]
    [InlineData("08ffffffffffffffffff02")]
    [InlineData("0a")]
    [InlineData("0a05010203")]
    [InlineData("0affffffffffffffffff01")]
    [InlineData("0d010203")]
    [InlineData("0901020304050607")]
    public void TruncatedOrOversizeValuesAreViolations(string hex)
    {
        byte[] data = Hex(hex);
        Assert.Throws<ProtocolViolationException>(() =>
        {
            var r = new ProtoReader(data);
            while (r.TryReadTag(out _, out WireType t))
            {
                r.Skip(t);
            }
        });
    }

    [Fact]
    public void InvalidUtf8AndRangeErrorsAreViolations()
    {
        byte[] badUtf8 = Hex("0a02c328");
        Assert.Throws<ProtocolViolationException>(() =>
        {
            var r = new ProtoReader(badUtf8);
            r.TryReadTag(out _, out _);
            r.ReadString();
        });

        byte[] big = Hex("0880808080 10");
        Assert.Throws<ProtocolViolationException>(() =>
        {
            var r = new ProtoReader(big);
            r.TryReadTag(out _, out _);
            r.ReadUInt32();
        });
        Assert.Throws<ProtocolViolationException>(() =>
        {
            var r = new ProtoReader(big);
            r.TryReadTag(out _, out _);
            r.ReadInt32();
        });

        Assert.Throws<ProtocolViolationException>(() => ProtoReader.Expect(WireType.Varint, WireType.LengthDelimited, 1));
        ProtoReader.Expect(WireType.Fixed32, WireType.Fixed32, 1);
    }

    [Fact]
    public void NonMinimalVarintsAreAcceptedAsProtobufAllows()
    {
        var r = new ProtoReader(Hex("088100"));
        Assert.True(r.TryReadTag(out _, out _));
        Assert.Equal(1UL, r.ReadVarint());
    }

    [Fact]
    public void RandomBytesParseOrViolate()
    {
        foreach (byte[] data in TestBytes.Random(5000, 64, seed: 13))
        {
            ParsesOrViolates(() =>
            {
                var r = new ProtoReader(data);
                while (r.TryReadTag(out _, out WireType t))
                {
                    if (t == WireType.LengthDelimited)
                    {
                        try
                        {
                            r.ReadString();
                        }
                        catch (ProtocolViolationException)
                        {
                        }
                    }
                    else
                    {
                        r.Skip(t);
                    }
                }

                Assert.True(r.IsAtEnd);
            });
        }
    }
}
