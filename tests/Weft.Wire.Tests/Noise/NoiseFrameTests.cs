using System.Buffers;
using Weft.Wire.Noise;

namespace Weft.Wire.Tests.Noise;

public class NoiseFrameTests
{
    private static byte[] Frames(params byte[][] messages)
    {
        var w = new ArrayBufferWriter<byte>();
        foreach (var m in messages) NoiseFrame.Write(w, m);
        return w.WrittenSpan.ToArray();
    }

    private static List<byte[]> ReadAll(ReadOnlySequence<byte> input, out long left)
    {
        var list = new List<byte[]>();
        while (NoiseFrame.TryRead(ref input, out var m)) list.Add(m.ToArray());
        left = input.Length;
        return list;
    }

    [Fact]
    public void Header_is_big_endian_u16()
    {
        var bytes = Frames(new byte[0x0102]);
        Assert.Equal(0x01, bytes[0]);
        Assert.Equal(0x02, bytes[1]);
        Assert.Equal(2 + 0x0102, bytes.Length);
        Assert.Equal(new byte[] { 0, 0 }, Frames(Array.Empty<byte>()));
    }

    [Fact]
    public void Every_split_and_byte_by_byte_yields_the_same_frames()
    {
        var messages = new[] { new byte[] { 1, 2, 3 }, Array.Empty<byte>(), Enumerable.Range(0, 300).Select(i => (byte)i).ToArray() };
        var data = Frames(messages);
        for (var cut = 0; cut <= data.Length; cut++)
        {
            var got = ReadAll(TestSequences.Split(data, cut), out var left);
            Assert.Equal(0, left);
            Assert.Equal(messages, got);
        }
        Assert.Equal(messages, ReadAll(TestSequences.ByteByByte(data), out _));
    }

    [Fact]
    public void Partial_frames_leave_the_input_untouched()
    {
        var data = Frames(new byte[10]);
        for (var n = 0; n < data.Length; n++)
        {
            var input = TestSequences.Split(data[..n], n / 2);
            var before = input;
            Assert.False(NoiseFrame.TryRead(ref input, out _));
            Assert.Equal(before.Length, input.Length);
            Assert.Equal(before.Start, input.Start);
        }
    }

    [Fact]
    public void Largest_frame_round_trips_and_larger_is_refused()
    {
        var max = new byte[NoiseFrame.MaxMessageLength];
        var data = Frames(max);
        Assert.Equal(0xff, data[0]);
        Assert.Equal(0xff, data[1]);
        var input = new ReadOnlySequence<byte>(data);
        Assert.True(NoiseFrame.TryRead(ref input, out var m));
        Assert.Equal(NoiseFrame.MaxMessageLength, m.Length);
        Assert.Throws<ArgumentOutOfRangeException>(() => NoiseFrame.WriteHeader(new byte[2], NoiseFrame.MaxMessageLength + 1));
        Assert.Equal(65519, NoiseFrame.MaxPlaintextLength);
    }

    [Fact]
    public void Random_input_never_throws()
    {
        var rng = new Random(3);
        for (var i = 0; i < 500; i++)
        {
            var data = new byte[rng.Next(0, 64)];
            rng.NextBytes(data);
            ReadAll(TestSequences.Split(data, rng.Next(0, data.Length + 1)), out _);
        }
    }
}
