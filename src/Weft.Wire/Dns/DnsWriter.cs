using System.Buffers.Binary;
using System.Net;
using System.Text;

namespace Weft.Wire.Dns;

/// <summary>Builds one message; names are compressed against every name suffix written before (RFC 1035 §4.1.4).</summary>
internal sealed class DnsWriter
{
    /// <summary>Offsets past this cannot be the target of a compression pointer (14 bits).</summary>
    private const int MaxPointerOffset = 0x3FFF;

    private readonly Dictionary<string, int> _suffixes = new(StringComparer.Ordinal);
    private byte[] _buffer = new byte[512];

    public int Length { get; private set; }

    public byte[] ToArray() => _buffer.AsSpan(0, Length).ToArray();

    public ReadOnlySpan<byte> Written => _buffer.AsSpan(0, Length);

    public void WriteByte(byte b)
    {
        Ensure(1);
        _buffer[Length++] = b;
    }

    public void WriteUInt16(ushort v)
    {
        Ensure(2);
        BinaryPrimitives.WriteUInt16BigEndian(_buffer.AsSpan(Length), v);
        Length += 2;
    }

    public void WriteUInt32(uint v)
    {
        Ensure(4);
        BinaryPrimitives.WriteUInt32BigEndian(_buffer.AsSpan(Length), v);
        Length += 4;
    }

    public void WriteBytes(ReadOnlySpan<byte> bytes)
    {
        Ensure(bytes.Length);
        bytes.CopyTo(_buffer.AsSpan(Length));
        Length += bytes.Length;
    }

    public void WriteAddress(IPAddress address)
    {
        Span<byte> b = stackalloc byte[16];
        address.TryWriteBytes(b, out var n);
        WriteBytes(b[..n]);
    }

    /// <summary>Overwrites two bytes written earlier (a length or a count).</summary>
    public void PatchUInt16(int offset, ushort v) => BinaryPrimitives.WriteUInt16BigEndian(_buffer.AsSpan(offset), v);

    /// <summary>
    /// Writes a name. With <paramref name="compress"/> the longest suffix already in the message becomes a
    /// pointer; either way the suffixes written here can be pointed at later.
    /// </summary>
    public void WriteName(DnsName name, bool compress)
    {
        var labels = name.Labels;
        for (var i = 0; i < labels.Count; i++)
        {
            var key = SuffixKey(name, i);
            if (compress && _suffixes.TryGetValue(key, out var target))
            {
                WriteUInt16((ushort)(0xC000 | target));
                return;
            }
            if (Length <= MaxPointerOffset) _suffixes.TryAdd(key, Length);
            var bytes = Encoding.UTF8.GetBytes(labels[i]);
            WriteByte((byte)bytes.Length);
            WriteBytes(bytes);
        }
        WriteByte(0);
    }

    private static string SuffixKey(DnsName name, int skip) => DnsName.AsciiLower(name.Skip(skip).ToString());

    private void Ensure(int n)
    {
        if (_buffer.Length - Length >= n) return;
        Array.Resize(ref _buffer, Math.Max(_buffer.Length * 2, Length + n));
    }
}
