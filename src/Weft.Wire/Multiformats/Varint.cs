using System.Buffers;

namespace Weft.Wire.Multiformats;

/// <summary>
/// Unsigned LEB128 varints as used by multiformats (multicodec, multihash, multiaddr, length prefixes).
/// Decoding is strict: an encoding that is longer than <see cref="MaxLength"/>, overflows 64 bits, or is
/// not minimal (a trailing 0x00 byte after the first) is a protocol violation.
/// </summary>
public static class Varint
{
    /// <summary>Longest encoding of a 64-bit value.</summary>
    public const int MaxLength = 10;

    private const string Codec = "varint";

    /// <summary>
    /// Reads one varint from the start of <paramref name="input"/>. Returns false (and leaves
    /// <paramref name="input"/> untouched) when the input ends before the varint does.
    /// </summary>
    public static bool TryRead(ref ReadOnlySequence<byte> input, out ulong value)
    {
        ReadOnlySpan<byte> first = input.FirstSpan;
        if (first.Length >= MaxLength || input.IsSingleSegment)
        {
            if (!TryRead(first, out value, out int consumed))
            {
                return false;
            }

            input = input.Slice(consumed);
            return true;
        }

        Span<byte> buffer = stackalloc byte[MaxLength];
        int available = (int)Math.Min(input.Length, MaxLength);
        input.Slice(0, available).CopyTo(buffer);
        if (!TryRead(buffer[..available], out value, out int used))
        {
            return false;
        }

        input = input.Slice(used);
        return true;
    }

    /// <summary>
    /// Reads one varint from the start of <paramref name="input"/>. Returns false when the input ends before
    /// the varint does; malformed encodings throw <see cref="ProtocolViolationException"/>.
    /// </summary>
    public static bool TryRead(ReadOnlySpan<byte> input, out ulong value, out int consumed)
    {
        ulong result = 0;
        int limit = Math.Min(input.Length, MaxLength);
        for (int i = 0; i < limit; i++)
        {
            byte b = input[i];
            if (i == MaxLength - 1 && b > 0x01)
            {
                throw new ProtocolViolationException(Codec, "value overflows 64 bits");
            }

            result |= (ulong)(b & 0x7F) << (7 * i);
            if ((b & 0x80) == 0)
            {
                if (b == 0 && i > 0)
                {
                    throw new ProtocolViolationException(Codec, "non-minimal encoding");
                }

                value = result;
                consumed = i + 1;
                return true;
            }
        }

        if (input.Length >= MaxLength)
        {
            throw new ProtocolViolationException(Codec, $"longer than {MaxLength} bytes");
        }

        value = 0;
        consumed = 0;
        return false;
    }

    /// <summary>Reads a varint that must be complete; a truncated one is a protocol violation.</summary>
    public static ulong Read(ReadOnlySpan<byte> input, out int consumed)
    {
        if (!TryRead(input, out ulong value, out consumed))
        {
            throw new ProtocolViolationException(Codec, "truncated");
        }

        return value;
    }

    /// <summary>Writes <paramref name="value"/> into <paramref name="dest"/>; returns the bytes written.</summary>
    public static int Write(Span<byte> dest, ulong value)
    {
        int i = 0;
        while (value >= 0x80)
        {
            dest[i++] = (byte)(value | 0x80);
            value >>= 7;
        }

        dest[i++] = (byte)value;
        return i;
    }

    /// <summary>Appends <paramref name="value"/> to <paramref name="w"/>.</summary>
    public static void Write(IBufferWriter<byte> w, ulong value)
    {
        ArgumentNullException.ThrowIfNull(w);
        Span<byte> span = w.GetSpan(MaxLength);
        w.Advance(Write(span, value));
    }

    /// <summary>Number of bytes <see cref="Write(Span{byte}, ulong)"/> produces for <paramref name="value"/>.</summary>
    public static int SizeOf(ulong value)
    {
        // 1 + floor(log2(value|1)) / 7
        int bits = 64 - System.Numerics.BitOperations.LeadingZeroCount(value | 1);
        return (bits + 6) / 7;
    }

    /// <summary>Encodes <paramref name="value"/> into a new array.</summary>
    public static byte[] Encode(ulong value)
    {
        var result = new byte[SizeOf(value)];
        Write(result, value);
        return result;
    }
}
