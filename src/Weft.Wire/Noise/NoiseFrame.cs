using System.Buffers;
using System.Buffers.Binary;

namespace Weft.Wire.Noise;

/// <summary>
/// libp2p Noise framing: every Noise message travels as <c>u16be(length) ‖ message</c>.
/// </summary>
public static class NoiseFrame
{
    public const int HeaderLength = 2;

    /// <summary>Largest Noise message (the length field is 16 bits).</summary>
    public const int MaxMessageLength = ushort.MaxValue;

    /// <summary>Largest plaintext one transport message can carry (the message holds plaintext and a 16-byte tag).</summary>
    public const int MaxPlaintextLength = MaxMessageLength - CipherState.TagLength;

    /// <summary>Reads one frame. False: more bytes needed (input untouched). Every length is valid at this layer.</summary>
    public static bool TryRead(ref ReadOnlySequence<byte> input, out ReadOnlySequence<byte> message)
    {
        message = default;
        if (!TryReadLength(input, out var length)) return false;
        if (input.Length < HeaderLength + length) return false;
        message = input.Slice(HeaderLength, length);
        input = input.Slice(message.End);
        return true;
    }

    /// <summary>Peeks at the length field of the next frame. False: fewer than 2 bytes available.</summary>
    public static bool TryReadLength(in ReadOnlySequence<byte> input, out int length)
    {
        length = 0;
        if (input.Length < HeaderLength) return false;
        var first = input.FirstSpan;
        if (first.Length >= HeaderLength)
        {
            length = BinaryPrimitives.ReadUInt16BigEndian(first);
        }
        else
        {
            Span<byte> header = stackalloc byte[HeaderLength];
            input.Slice(0, HeaderLength).CopyTo(header);
            length = BinaryPrimitives.ReadUInt16BigEndian(header);
        }
        return true;
    }

    /// <summary>Writes the 2-byte length field.</summary>
    public static void WriteHeader(Span<byte> destination, int messageLength)
    {
        if ((uint)messageLength > MaxMessageLength)
            throw new ArgumentOutOfRangeException(nameof(messageLength), $"a Noise message is at most {MaxMessageLength} bytes");
        BinaryPrimitives.WriteUInt16BigEndian(destination, (ushort)messageLength);
    }

    /// <summary>Writes a whole frame (header and message). Returns bytes written.</summary>
    public static int Write(Span<byte> destination, ReadOnlySpan<byte> message)
    {
        WriteHeader(destination, message.Length);
        message.CopyTo(destination[HeaderLength..]);
        return HeaderLength + message.Length;
    }

    /// <summary>Writes a whole frame into <paramref name="output"/>.</summary>
    public static void Write(IBufferWriter<byte> output, ReadOnlySpan<byte> message)
    {
        var span = output.GetSpan(HeaderLength + message.Length);
        output.Advance(Write(span, message));
    }
}
