using System.Buffers.Binary;
using System.Text;

namespace Weft.Wire.Protobuf;

/// <summary>
/// Forward-only reader over one serialized protobuf message. Every malformed input (truncated fields,
/// bad wire types, lengths past the end, groups, invalid UTF-8) throws
/// <see cref="ProtocolViolationException"/> with protocol "protobuf". Unknown fields are skipped with
/// <see cref="Skip(WireType)"/>.
/// </summary>
public ref struct ProtoReader
{
    /// <summary>Largest field number protobuf allows (2^29 - 1).</summary>
    public const int MaxFieldNumber = (1 << 29) - 1;

    private const string Codec = "protobuf";
    private const int MaxVarintLength = 10;

    private readonly ReadOnlySpan<byte> _data;
    private int _position;

    public ProtoReader(ReadOnlySpan<byte> data)
    {
        _data = data;
        _position = 0;
    }

    /// <summary>Bytes consumed so far.</summary>
    public readonly int Position => _position;

    /// <summary>True when every byte has been consumed.</summary>
    public readonly bool IsAtEnd => _position >= _data.Length;

    /// <summary>The bytes not read yet.</summary>
    public readonly ReadOnlySpan<byte> Remaining => _data[_position..];

    /// <summary>
    /// Reads the next field tag. Returns false at the end of the message. Field number 0, numbers above
    /// <see cref="MaxFieldNumber"/>, groups and unknown wire types are protocol violations.
    /// </summary>
    public bool TryReadTag(out int field, out WireType type)
    {
        if (_position >= _data.Length)
        {
            field = 0;
            type = default;
            return false;
        }

        ulong tag = ReadVarint();
        ulong number = tag >> 3;
        int wire = (int)(tag & 7);
        if (number == 0 || number > MaxFieldNumber)
        {
            throw new ProtocolViolationException(Codec, $"invalid field number {number}");
        }

        if (wire is 3 or 4)
        {
            throw new ProtocolViolationException(Codec, "groups are not supported");
        }

        if (wire > 5)
        {
            throw new ProtocolViolationException(Codec, $"invalid wire type {wire}");
        }

        field = (int)number;
        type = (WireType)wire;
        return true;
    }

    /// <summary>Reads a base-128 varint (non-minimal encodings are accepted, as protobuf allows).</summary>
    public ulong ReadVarint()
    {
        ReadOnlySpan<byte> data = _data;
        int pos = _position;
        ulong result = 0;
        for (int i = 0; i < MaxVarintLength; i++)
        {
            if (pos >= data.Length)
            {
                throw new ProtocolViolationException(Codec, "truncated varint");
            }

            byte b = data[pos++];
            if (i == MaxVarintLength - 1 && b > 0x01)
            {
                throw new ProtocolViolationException(Codec, "varint overflows 64 bits");
            }

            result |= (ulong)(b & 0x7F) << (7 * i);
            if ((b & 0x80) == 0)
            {
                _position = pos;
                return result;
            }
        }

        throw new ProtocolViolationException(Codec, "varint longer than 10 bytes");
    }

    /// <summary>Reads a varint and checks it fits in an unsigned 32-bit value.</summary>
    public uint ReadUInt32()
    {
        ulong v = ReadVarint();
        if (v > uint.MaxValue)
        {
            throw new ProtocolViolationException(Codec, "uint32 out of range");
        }

        return (uint)v;
    }

    /// <summary>Reads an int32 field (negative values are sign-extended 10-byte varints on the wire).</summary>
    public int ReadInt32()
    {
        ulong v = ReadVarint();
        long s = unchecked((long)v);
        if (s < int.MinValue || s > int.MaxValue)
        {
            throw new ProtocolViolationException(Codec, "int32 out of range");
        }

        return (int)s;
    }

    /// <summary>Reads an int64 field.</summary>
    public long ReadInt64() => unchecked((long)ReadVarint());

    /// <summary>Reads a bool field (any non-zero varint is true).</summary>
    public bool ReadBool() => ReadVarint() != 0;

    /// <summary>Reads a length-delimited field's bytes (a slice of the input, not a copy).</summary>
    public ReadOnlySpan<byte> ReadBytes()
    {
        ulong length = ReadVarint();
        int remaining = _data.Length - _position;
        if (length > (ulong)remaining)
        {
            throw new ProtocolViolationException(Codec, $"length {length} exceeds the {remaining} remaining bytes");
        }

        ReadOnlySpan<byte> result = _data.Slice(_position, (int)length);
        _position += (int)length;
        return result;
    }

    /// <summary>Reads a length-delimited field as strict UTF-8.</summary>
    public string ReadString()
    {
        ReadOnlySpan<byte> bytes = ReadBytes();
        try
        {
            return StrictUtf8.GetString(bytes);
        }
        catch (DecoderFallbackException e)
        {
            throw new ProtocolViolationException(Codec, "string is not valid UTF-8", e);
        }
    }

    /// <summary>Reads a little-endian fixed 32-bit field.</summary>
    public uint ReadFixed32()
    {
        if (_data.Length - _position < 4)
        {
            throw new ProtocolViolationException(Codec, "truncated fixed32");
        }

        uint v = BinaryPrimitives.ReadUInt32LittleEndian(_data[_position..]);
        _position += 4;
        return v;
    }

    /// <summary>Reads a little-endian fixed 64-bit field.</summary>
    public ulong ReadFixed64()
    {
        if (_data.Length - _position < 8)
        {
            throw new ProtocolViolationException(Codec, "truncated fixed64");
        }

        ulong v = BinaryPrimitives.ReadUInt64LittleEndian(_data[_position..]);
        _position += 8;
        return v;
    }

    /// <summary>Skips the value of a field whose tag has just been read.</summary>
    public void Skip(WireType type)
    {
        switch (type)
        {
            case WireType.Varint:
                ReadVarint();
                break;
            case WireType.Fixed64:
                ReadFixed64();
                break;
            case WireType.LengthDelimited:
                ReadBytes();
                break;
            case WireType.Fixed32:
                ReadFixed32();
                break;
            default:
                throw new ProtocolViolationException(Codec, $"cannot skip wire type {(int)type}");
        }
    }

    /// <summary>Throws unless <paramref name="actual"/> is <paramref name="expected"/>; for field type checks.</summary>
    public static void Expect(WireType actual, WireType expected, int field)
    {
        if (actual != expected)
        {
            throw new ProtocolViolationException(Codec, $"field {field} has wire type {actual}, expected {expected}");
        }
    }

    internal static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);
}
