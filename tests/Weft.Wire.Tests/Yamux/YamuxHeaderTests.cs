using System.Buffers;
using Weft.Wire.Yamux;

namespace Weft.Wire.Tests.Yamux;

public class YamuxHeaderTests
{
    // Hand-assembled from spec.md: version, type, flags (u16 BE), stream id (u32 BE), length (u32 BE).
    public static TheoryData<string, YamuxFrameType, YamuxFlags, uint, uint> Vectors => new()
    {
        { "000000010000000100000003", YamuxFrameType.Data, YamuxFlags.Syn, 1, 3 },
        { "000100020000000200000000", YamuxFrameType.WindowUpdate, YamuxFlags.Ack, 2, 0 },
        { "0001000100000003000c0000", YamuxFrameType.WindowUpdate, YamuxFlags.Syn, 3, 0xC0000 },
        { "000100040000000500000000", YamuxFrameType.WindowUpdate, YamuxFlags.Fin, 5, 0 },
        { "000100080000000700000000", YamuxFrameType.WindowUpdate, YamuxFlags.Rst, 7, 0 },
        { "000000060000000900040000", YamuxFrameType.Data, YamuxFlags.Ack | YamuxFlags.Fin, 9, 256 * 1024 },
        { "000200010000000000000001", YamuxFrameType.Ping, YamuxFlags.Syn, 0, 1 },
        { "0002000200000000deadbeef", YamuxFrameType.Ping, YamuxFlags.Ack, 0, 0xDEADBEEF },
        { "000300000000000000000000", YamuxFrameType.GoAway, YamuxFlags.None, 0, 0 },
        { "000300000000000000000001", YamuxFrameType.GoAway, YamuxFlags.None, 0, 1 },
        { "000300000000000000000002", YamuxFrameType.GoAway, YamuxFlags.None, 0, 2 },
        { "0000ffff7fffffffffffffff", YamuxFrameType.Data, (YamuxFlags)0xFFFF, 0x7FFFFFFF, uint.MaxValue },
    };

    [Theory]
    [MemberData(nameof(Vectors))]
    public void Decodes_vectors_at_every_split(string hex, YamuxFrameType type, YamuxFlags flags, uint id, uint length)
    {
        var bytes = Convert.FromHexString(hex);
        var expected = new YamuxHeader(type, flags, id, length);
        var trailer = new byte[] { 0xAA, 0xBB };
        var withTrailer = bytes.Concat(trailer).ToArray();

        foreach (var seq in Splits(withTrailer))
        {
            var input = seq;
            Assert.True(YamuxHeader.TryRead(ref input, out var h));
            Assert.Equal(expected, h);
            Assert.Equal(trailer, input.ToArray());
        }

        var byteByByte = ByteByByte(withTrailer);
        Assert.True(YamuxHeader.TryRead(ref byteByByte, out var h2));
        Assert.Equal(expected, h2);
        Assert.Equal(2, byteByByte.Length);

        Assert.True(YamuxHeader.TryRead(bytes, out var h3, out var consumed));
        Assert.Equal(expected, h3);
        Assert.Equal(YamuxHeader.Size, consumed);
    }

    [Theory]
    [MemberData(nameof(Vectors))]
    public void Encodes_vectors(string hex, YamuxFrameType type, YamuxFlags flags, uint id, uint length)
    {
        var h = new YamuxHeader(type, flags, id, length);
        var span = new byte[YamuxHeader.Size];
        h.Write(span);
        Assert.Equal(hex, Convert.ToHexString(span).ToLowerInvariant());

        var writer = new ArrayBufferWriter<byte>();
        h.Write(writer);
        Assert.Equal(span, writer.WrittenSpan.ToArray());
    }

    [Fact]
    public void Factories_set_the_fields_the_spec_describes()
    {
        Assert.Equal(new YamuxHeader(YamuxFrameType.Data, YamuxFlags.Syn, 3, 10), YamuxHeader.Data(3, YamuxFlags.Syn, 10));
        Assert.Equal(new YamuxHeader(YamuxFrameType.WindowUpdate, YamuxFlags.Fin, 4, 0), YamuxHeader.WindowUpdate(4, YamuxFlags.Fin, 0));
        Assert.Equal(new YamuxHeader(YamuxFrameType.Ping, YamuxFlags.Ack, 0, 77), YamuxHeader.Ping(YamuxFlags.Ack, 77));
        var goAway = YamuxHeader.GoAway(YamuxGoAwayCode.InternalError);
        Assert.Equal(new YamuxHeader(YamuxFrameType.GoAway, YamuxFlags.None, 0, 2), goAway);
        Assert.Equal(YamuxGoAwayCode.InternalError, goAway.GoAwayCode);
        Assert.True(YamuxHeader.Data(1, YamuxFlags.Syn | YamuxFlags.Fin, 0).Has(YamuxFlags.Fin));
        Assert.False(YamuxHeader.Data(1, YamuxFlags.Syn, 0).Has(YamuxFlags.Fin));
        Assert.Equal(256 * 1024u, YamuxHeader.InitialStreamWindow);
    }

    [Fact]
    public void Short_input_needs_more_and_stays_untouched()
    {
        var bytes = Convert.FromHexString("000000010000000100000003");
        for (var len = 0; len < YamuxHeader.Size; len++)
        {
            foreach (var seq in Splits(bytes[..len]))
            {
                var input = seq;
                Assert.False(YamuxHeader.TryRead(ref input, out _));
                Assert.Equal(len, input.Length);
                Assert.True(input.Start.Equals(seq.Start));
            }
            Assert.False(YamuxHeader.TryRead(bytes.AsSpan(0, len), out _, out var consumed));
            Assert.Equal(0, consumed);
        }
    }

    [Theory]
    [InlineData("010000010000000100000003", "version")]
    [InlineData("ff0000010000000100000003", "version")]
    [InlineData("000400000000000000000000", "type")]
    [InlineData("00ff00000000000000000000", "type")]
    public void Unknown_version_or_type_is_a_protocol_violation(string hex, string word)
    {
        var bytes = Convert.FromHexString(hex);
        foreach (var seq in Splits(bytes))
        {
            var input = seq;
            var ex = Assert.Throws<ProtocolViolationException>(() => YamuxHeader.TryRead(ref input, out _));
            Assert.Equal("yamux", ex.Protocol);
            Assert.Contains(word, ex.Detail);
        }
        Assert.Throws<ProtocolViolationException>(() => YamuxHeader.TryRead(bytes, out _, out _));
    }

    [Fact]
    public void Random_and_truncated_input_parses_or_throws_protocol_violation()
    {
        var rng = new Random(1234);
        var buf = new byte[40];
        for (var i = 0; i < 5000; i++)
        {
            rng.NextBytes(buf);
            // Make valid versions and types common enough to exercise the success path too.
            if (rng.Next(2) == 0) buf[0] = 0;
            if (rng.Next(2) == 0) buf[1] = (byte)rng.Next(5);
            var len = rng.Next(buf.Length + 1);
            var input = ByteByByte(buf.AsSpan(0, len).ToArray());
            try
            {
                while (YamuxHeader.TryRead(ref input, out var h))
                {
                    Assert.True((byte)h.Type <= 3);
                }
                Assert.True(input.Length < YamuxHeader.Size);
            }
            catch (ProtocolViolationException ex)
            {
                Assert.Equal("yamux", ex.Protocol);
            }
        }
    }

    [Fact]
    public void Round_trips_random_headers()
    {
        var rng = new Random(99);
        var span = new byte[YamuxHeader.Size];
        for (var i = 0; i < 1000; i++)
        {
            var h = new YamuxHeader((YamuxFrameType)rng.Next(4), (YamuxFlags)rng.Next(0x10000), (uint)rng.NextInt64(0, 1L << 32), (uint)rng.NextInt64(0, 1L << 32));
            h.Write(span);
            var seq = new ReadOnlySequence<byte>(span);
            Assert.True(YamuxHeader.TryRead(ref seq, out var back));
            Assert.Equal(h, back);
            Assert.True(seq.IsEmpty);
        }
    }

    [Fact]
    public void Write_rejects_a_short_destination()
    {
        Assert.Throws<ArgumentException>(() => YamuxHeader.Ping(YamuxFlags.Syn, 1).Write(new byte[11]));
    }

    /// <summary>The input as one segment and as two segments split at every position.</summary>
    internal static IEnumerable<ReadOnlySequence<byte>> Splits(byte[] data)
    {
        yield return new ReadOnlySequence<byte>(data);
        for (var i = 0; i <= data.Length; i++)
            yield return Segments(data[..i], data[i..]);
    }

    internal static ReadOnlySequence<byte> ByteByByte(byte[] data) =>
        data.Length == 0 ? ReadOnlySequence<byte>.Empty : Segments(data.Select(b => new[] { b }).ToArray());

    internal static ReadOnlySequence<byte> Segments(params byte[][] parts)
    {
        var first = new Segment(parts[0], 0);
        var last = first;
        for (var i = 1; i < parts.Length; i++) last = last.Append(parts[i]);
        return new ReadOnlySequence<byte>(first, 0, last, last.Memory.Length);
    }

    private sealed class Segment : ReadOnlySequenceSegment<byte>
    {
        public Segment(byte[] data, long runningIndex)
        {
            Memory = data;
            RunningIndex = runningIndex;
        }

        public Segment Append(byte[] data)
        {
            var next = new Segment(data, RunningIndex + Memory.Length);
            Next = next;
            return next;
        }
    }
}
