using System.Buffers;

namespace Weft.Wire.Tests;

/// <summary>Builds multi-segment sequences so codecs are tested with every split of their input.</summary>
public static class TestSequences
{
    public static ReadOnlySequence<byte> Split(byte[] data, int cut)
    {
        if (cut <= 0 || cut >= data.Length) return new ReadOnlySequence<byte>(data);
        var first = new Segment(data.AsMemory(0, cut));
        var last = first.Append(data.AsMemory(cut));
        return new ReadOnlySequence<byte>(first, 0, last, last.Memory.Length);
    }

    public static ReadOnlySequence<byte> ByteByByte(byte[] data)
    {
        if (data.Length == 0) return ReadOnlySequence<byte>.Empty;
        var first = new Segment(data.AsMemory(0, 1));
        var last = first;
        for (var i = 1; i < data.Length; i++) last = last.Append(data.AsMemory(i, 1));
        return new ReadOnlySequence<byte>(first, 0, last, 1);
    }

    private sealed class Segment : ReadOnlySequenceSegment<byte>
    {
        public Segment(ReadOnlyMemory<byte> memory) => Memory = memory;

        public Segment Append(ReadOnlyMemory<byte> memory)
        {
            var s = new Segment(memory) { RunningIndex = RunningIndex + Memory.Length };
            Next = s;
            return s;
        }
    }
}
