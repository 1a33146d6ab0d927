using System.Buffers;

namespace Weft.Wire.Tests.Multiformats;

/// <summary>Helpers shared by the wire codec tests: hex, multi-segment sequences, fuzz input.</summary>
internal static class TestBytes
{
    public static byte[] Hex(string hex) => Convert.FromHexString(hex.Replace(" ", "", StringComparison.Ordinal));

    public static string ToHex(ReadOnlySpan<byte> bytes) => Convert.ToHexStringLower(bytes);

    /// <summary>The sequence split into two segments at <paramref name="at"/>.</summary>
    public static ReadOnlySequence<byte> Split(byte[] data, int at)
    {
        if (at <= 0 || at >= data.Length)
        {
            return new ReadOnlySequence<byte>(data);
        }

        var first = new Segment(data.AsMemory(0, at));
        Segment last = first.Append(data.AsMemory(at));
        return new ReadOnlySequence<byte>(first, 0, last, last.Memory.Length);
    }

    /// <summary>One segment per byte.</summary>
    public static ReadOnlySequence<byte> ByteByByte(byte[] data)
    {
        if (data.Length == 0)
        {
            return ReadOnlySequence<byte>.Empty;
        }

        var first = new Segment(data.AsMemory(0, 1));
        Segment last = first;
        for (int i = 1; i < data.Length; i++)
        {
            last = last.Append(data.AsMemory(i, 1));
        }

        return new ReadOnlySequence<byte>(first, 0, last, last.Memory.Length);
    }

    /// <summary>Deterministic pseudo-random buffers of varied lengths.</summary>
    public static IEnumerable<byte[]> Random(int count, int maxLength, int seed)
    {
        var rng = new Random(seed);
        for (int i = 0; i < count; i++)
        {
            var buffer = new byte[rng.Next(maxLength + 1)];
            rng.NextBytes(buffer);
            yield return buffer;
        }
    }

    /// <summary>Runs <paramref name="parse"/> and fails unless it returns or throws ProtocolViolationException.</summary>
    public static void ParsesOrViolates(Action parse)
    {
        try
        {
            parse();
        }
        catch (ProtocolViolationException)
        {
        }
    }

    private sealed class Segment : ReadOnlySequenceSegment<byte>
    {
        public Segment(ReadOnlyMemory<byte> memory) => Memory = memory;

        public Segment Append(ReadOnlyMemory<byte> memory)
        {
            var next = new Segment(memory) { RunningIndex = RunningIndex + Memory.Length };
            Next = next;
            return next;
        }
    }
}
