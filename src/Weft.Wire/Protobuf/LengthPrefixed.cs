using System.Buffers;
using System.Diagnostics.CodeAnalysis;
using Weft.Wire.Multiformats;

namespace Weft.Wire.Protobuf;

/// <summary>Parses a whole message body.</summary>
public delegate T SpanParser<T>(ReadOnlySpan<byte> data);

/// <summary>
/// <c>uvarint(len) ‖ bytes</c> framing, as used by identify, circuit relay, DCUtR, Kademlia and others.
/// </summary>
public static class LengthPrefixed
{
    /// <summary>Bodies up to this size are parsed from a stack copy when they span segments; larger ones from a pooled buffer.</summary>
    private const int MaxStackCopy = 1024;

    /// <summary>
    /// Reads one message and parses it with <paramref name="parse"/>. False: more bytes are needed and
    /// <paramref name="input"/> is untouched. A length above <paramref name="maxLength"/> throws
    /// <see cref="ProtocolViolationException"/>(<paramref name="codec"/>) before the body arrives.
    /// </summary>
    public static bool TryRead<T>(ref ReadOnlySequence<byte> input, int maxLength, string codec, SpanParser<T> parse, [MaybeNullWhen(false)] out T value)
    {
        value = default;
        if (!TryReadBody(ref input, maxLength, codec, out var body, out var rest)) return false;
        if (body.IsSingleSegment)
        {
            value = parse(body.FirstSpan);
        }
        else if (body.Length <= MaxStackCopy)
        {
            Span<byte> copy = stackalloc byte[(int)body.Length];
            body.CopyTo(copy);
            value = parse(copy);
        }
        else
        {
            var rented = ArrayPool<byte>.Shared.Rent((int)body.Length);
            try
            {
                body.CopyTo(rented);
                value = parse(rented.AsSpan(0, (int)body.Length));
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(rented);
            }
        }
        input = rest;
        return true;
    }

    /// <summary>Reads one message body as a new array; same contract as the generic overload.</summary>
    public static bool TryRead(ref ReadOnlySequence<byte> input, int maxLength, string codec, out byte[] value)
    {
        value = [];
        if (!TryReadBody(ref input, maxLength, codec, out var body, out var rest)) return false;
        value = body.ToArray();
        input = rest;
        return true;
    }

    /// <summary>Appends <c>uvarint(len) ‖ message</c>.</summary>
    public static void Write(IBufferWriter<byte> output, ReadOnlySpan<byte> message)
    {
        Varint.Write(output, (ulong)message.Length);
        output.Write(message);
    }

    private static bool TryReadBody(ref ReadOnlySequence<byte> input, int maxLength, string codec, out ReadOnlySequence<byte> body, out ReadOnlySequence<byte> rest)
    {
        body = default;
        rest = default;
        var probe = input;
        if (!Varint.TryRead(ref probe, out var length)) return false;
        if (length > (ulong)maxLength)
            throw new ProtocolViolationException(codec, $"message of {length} bytes exceeds the limit of {maxLength}");
        if ((ulong)probe.Length < length) return false;
        body = probe.Slice(0, (long)length);
        rest = probe.Slice(body.End);
        return true;
    }
}
