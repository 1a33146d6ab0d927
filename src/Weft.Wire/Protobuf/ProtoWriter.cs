using System.Buffers;
using System.Buffers.Binary;
using Weft.Wire.Multiformats;

namespace Weft.Wire.Protobuf;

/// <summary>
/// Growable protobuf writer. Fields are written in call order (write them in tag order for deterministic
/// output). The buffer comes from <see cref="ArrayPool{T}"/>; <see cref="Dispose"/> returns it (optional:
/// an undisposed writer is simply collected). Also usable as an <see cref="IBufferWriter{T}"/>.
/// </summary>
public sealed class ProtoWriter : IBufferWriter<byte>, IDisposable
{
    private const int DefaultCapacity = 256;

    private byte[] _buffer;
    private int _length;

    public ProtoWriter()
        : this(DefaultCapacity)
    {
    }

    public ProtoWriter(int initialCapacity)
    {
        _buffer = ArrayPool<byte>.Shared.Rent(Math.Max(initialCapacity, 16));
    }

    /// <summary>Bytes written so far.</summary>
    public int Length => _length;

    /// <summary>The bytes written so far (valid until the next write or <see cref="Dispose"/>).</summary>
    public ReadOnlySpan<byte> WrittenSpan => _buffer.AsSpan(0, _length);

    /// <summary>The bytes written so far as memory (valid until the next write or <see cref="Dispose"/>).</summary>
    public ReadOnlyMemory<byte> WrittenMemory => _buffer.AsMemory(0, _length);

    /// <summary>Forgets everything written, keeping the buffer.</summary>
    public void Clear() => _length = 0;

    /// <summary>Writes a field tag.</summary>
    public void WriteTag(int field, WireType type)
    {
        if (field <= 0 || field > ProtoReader.MaxFieldNumber)
        {
            throw new ArgumentOutOfRangeException(nameof(field));
        }

        WriteRawVarint(((ulong)(uint)field << 3) | (uint)type);
    }

    /// <summary>Writes a varint field.</summary>
    public void WriteVarint(int field, ulong value)
    {
        WriteTag(field, WireType.Varint);
        WriteRawVarint(value);
    }

    /// <summary>Writes an int32 field (negative values sign-extend to 10 bytes, as protobuf requires).</summary>
    public void WriteInt32(int field, int value) => WriteVarint(field, unchecked((ulong)(long)value));

    /// <summary>Writes a bool field.</summary>
    public void WriteBool(int field, bool value) => WriteVarint(field, value ? 1UL : 0UL);

    /// <summary>Writes a length-delimited field.</summary>
    public void WriteBytes(int field, ReadOnlySpan<byte> value)
    {
        WriteTag(field, WireType.LengthDelimited);
        WriteRawVarint((ulong)value.Length);
        WriteRaw(value);
    }

    /// <summary>Writes a UTF-8 string field.</summary>
    public void WriteString(int field, string value)
    {
        ArgumentNullException.ThrowIfNull(value);
        int byteCount = ProtoReader.StrictUtf8.GetByteCount(value);
        WriteTag(field, WireType.LengthDelimited);
        WriteRawVarint((ulong)byteCount);
        Span<byte> dest = GetSpan(byteCount);
        ProtoReader.StrictUtf8.GetBytes(value, dest);
        _length += byteCount;
    }

    /// <summary>Writes a nested message field from another writer's contents.</summary>
    public void WriteMessage(int field, ProtoWriter nested)
    {
        ArgumentNullException.ThrowIfNull(nested);
        WriteBytes(field, nested.WrittenSpan);
    }

    /// <summary>Writes a fixed 32-bit field (little endian).</summary>
    public void WriteFixed32(int field, uint value)
    {
        WriteTag(field, WireType.Fixed32);
        BinaryPrimitives.WriteUInt32LittleEndian(GetSpan(4), value);
        _length += 4;
    }

    /// <summary>Writes a fixed 64-bit field (little endian).</summary>
    public void WriteFixed64(int field, ulong value)
    {
        WriteTag(field, WireType.Fixed64);
        BinaryPrimitives.WriteUInt64LittleEndian(GetSpan(8), value);
        _length += 8;
    }

    /// <summary>Writes a bare varint (no tag), e.g. a length prefix.</summary>
    public void WriteRawVarint(ulong value)
    {
        Span<byte> dest = GetSpan(Varint.MaxLength);
        _length += Varint.Write(dest, value);
    }

    /// <summary>Writes raw bytes (no tag, no length).</summary>
    public void WriteRaw(ReadOnlySpan<byte> bytes)
    {
        bytes.CopyTo(GetSpan(bytes.Length));
        _length += bytes.Length;
    }

    /// <summary>Copies the written bytes into a new array.</summary>
    public byte[] ToArray() => WrittenSpan.ToArray();

    /// <summary>Copies the written bytes into a new array preceded by their varint length.</summary>
    public byte[] ToLengthPrefixedArray()
    {
        int prefix = Varint.SizeOf((ulong)_length);
        var result = new byte[prefix + _length];
        Varint.Write(result, (ulong)_length);
        WrittenSpan.CopyTo(result.AsSpan(prefix));
        return result;
    }

    /// <summary>Appends the varint length and then the written bytes to <paramref name="output"/>.</summary>
    public void WriteLengthPrefixedTo(IBufferWriter<byte> output)
    {
        ArgumentNullException.ThrowIfNull(output);
        Varint.Write(output, (ulong)_length);
        output.Write(WrittenSpan);
    }

    /// <inheritdoc />
    public void Advance(int count)
    {
        if (count < 0 || _length + count > _buffer.Length)
        {
            throw new ArgumentOutOfRangeException(nameof(count));
        }

        _length += count;
    }

    /// <inheritdoc />
    public Memory<byte> GetMemory(int sizeHint = 0)
    {
        Ensure(sizeHint);
        return _buffer.AsMemory(_length);
    }

    /// <inheritdoc />
    public Span<byte> GetSpan(int sizeHint = 0)
    {
        Ensure(sizeHint);
        return _buffer.AsSpan(_length);
    }

    /// <summary>Returns the buffer to the pool; the writer must not be used afterwards.</summary>
    public void Dispose()
    {
        byte[] buffer = _buffer;
        _buffer = [];
        _length = 0;
        if (buffer.Length > 0)
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private void Ensure(int sizeHint)
    {
        int needed = Math.Max(sizeHint, 1);
        if (_buffer.Length - _length >= needed)
        {
            return;
        }

        // Writing after Dispose still works: the empty buffer simply grows again.
        int newSize = Math.Max(Math.Max(_buffer.Length * 2, _length + needed), 16);
        byte[] next = ArrayPool<byte>.Shared.Rent(newSize);
        _buffer.AsSpan(0, _length).CopyTo(next);
        byte[] old = _buffer;
        _buffer = next;
        if (old.Length > 0)
        {
            ArrayPool<byte>.Shared.Return(old);
        }
    }
}
