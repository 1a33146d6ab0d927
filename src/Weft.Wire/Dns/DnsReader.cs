using System.Buffers.Binary;
using System.Net;
using System.Text;

namespace Weft.Wire.Dns;

/// <summary>
/// Reads one whole message. Names may be compressed; a pointer must point strictly before the place it
/// stands, so following pointers always ends (and <see cref="DnsLimits.MaxPointerJumps"/> bounds it too).
/// Everything malformed throws <see cref="ProtocolViolationException"/> ("dns").
/// </summary>
internal ref struct DnsReader
{
    public const string Codec = "dns";

    private static readonly UTF8Encoding StrictUtf8 = new(false, throwOnInvalidBytes: true);

    private readonly ReadOnlySpan<byte> _message;
    private readonly DnsLimits _limits;

    public DnsReader(ReadOnlySpan<byte> message, DnsLimits limits)
    {
        _message = message;
        _limits = limits;
        Position = 0;
    }

    public int Position { get; private set; }

    public readonly int Remaining => _message.Length - Position;

    public byte ReadByte()
    {
        Need(1, "byte");
        return _message[Position++];
    }

    public ushort ReadUInt16()
    {
        Need(2, "16-bit field");
        var v = BinaryPrimitives.ReadUInt16BigEndian(_message[Position..]);
        Position += 2;
        return v;
    }

    public uint ReadUInt32()
    {
        Need(4, "32-bit field");
        var v = BinaryPrimitives.ReadUInt32BigEndian(_message[Position..]);
        Position += 4;
        return v;
    }

    public ReadOnlySpan<byte> ReadBytes(int n)
    {
        Need(n, "data");
        var s = _message.Slice(Position, n);
        Position += n;
        return s;
    }

    /// <summary>Reads a name at the current position (following compression pointers).</summary>
    public DnsName ReadName()
    {
        var labels = new List<string>();
        var wireLength = 1;
        var jumps = 0;
        var pos = Position;
        var resume = -1; // where reading continues after the first pointer
        while (true)
        {
            if (pos >= _message.Length) throw Violation("name runs past the end of the message");
            var len = _message[pos];
            if ((len & 0xC0) == 0xC0)
            {
                if (pos + 1 >= _message.Length) throw Violation("truncated compression pointer");
                var target = ((len & 0x3F) << 8) | _message[pos + 1];
                if (target >= pos) throw Violation($"compression pointer at {pos} to {target} does not point backwards");
                if (++jumps > _limits.MaxPointerJumps) throw Violation($"more than {_limits.MaxPointerJumps} compression pointers in one name");
                if (resume < 0) resume = pos + 2;
                pos = target;
                continue;
            }
            if ((len & 0xC0) != 0) throw Violation($"label type 0x{len & 0xC0:x2} is not supported");
            if (len == 0)
            {
                pos++;
                break;
            }
            wireLength += 1 + len;
            if (wireLength > DnsName.MaxWireLength) throw Violation($"name longer than {DnsName.MaxWireLength} bytes");
            if (labels.Count >= _limits.MaxLabels) throw Violation($"name has more than {_limits.MaxLabels} labels");
            if (pos + 1 + len > _message.Length) throw Violation("label runs past the end of the message");
            string label;
            try
            {
                label = StrictUtf8.GetString(_message.Slice(pos + 1, len));
            }
            catch (DecoderFallbackException)
            {
                throw Violation("label is not valid UTF-8");
            }
            labels.Add(label);
            pos += 1 + len;
        }
        Position = resume >= 0 ? resume : pos;
        return labels.Count == 0 ? DnsName.Root : DnsName.FromLabels(labels);
    }

    public DnsQuestion ReadQuestion()
    {
        var name = ReadName();
        var type = ReadUInt16();
        var cls = ReadUInt16();
        return new DnsQuestion(name, (DnsType)type, (ushort)(cls & 0x7FFF)) { UnicastResponse = (cls & 0x8000) != 0 };
    }

    public DnsRecord ReadRecord()
    {
        var name = ReadName();
        var type = (DnsType)ReadUInt16();
        var cls = ReadUInt16();
        var ttl = ReadUInt32();
        int length = ReadUInt16();
        Need(length, "record data");
        var start = Position;
        var end = start + length;
        DnsRecord record;
        switch (type)
        {
            case DnsType.A when length == 4:
                record = new ARecord { Name = name, Address = new IPAddress(ReadBytes(4)) };
                break;
            case DnsType.AAAA when length == 16:
                record = new AaaaRecord { Name = name, Address = new IPAddress(ReadBytes(16)) };
                break;
            case DnsType.A or DnsType.AAAA:
                throw Violation($"{type} record with {length} bytes of data");
            case DnsType.PTR:
                record = new PtrRecord { Name = name, Target = ReadName() };
                break;
            case DnsType.CNAME:
                record = new CnameRecord { Name = name, Target = ReadName() };
                break;
            case DnsType.SRV:
                var priority = ReadUInt16();
                var weight = ReadUInt16();
                var port = ReadUInt16();
                record = new SrvRecord { Name = name, Priority = priority, Weight = weight, Port = port, Target = ReadName() };
                break;
            case DnsType.TXT:
                var strings = new List<byte[]>();
                while (Position < end)
                {
                    int n = ReadByte();
                    if (Position + n > end) throw Violation("TXT string runs past its record");
                    strings.Add(ReadBytes(n).ToArray());
                }
                record = new TxtRecord { Name = name, Strings = strings };
                break;
            default:
                record = new UnknownRecord { Name = name, RecordType = type, Data = ReadBytes(length).ToArray() };
                break;
        }
        if (Position != end) throw Violation($"{type} record data is {length} bytes but {Position - start} were used");
        return record with { Class = (ushort)(cls & 0x7FFF), CacheFlush = (cls & 0x8000) != 0, Ttl = ttl };
    }

    private readonly void Need(int n, string what)
    {
        if (n < 0 || Position + n > _message.Length) throw Violation($"truncated {what}");
    }

    public static ProtocolViolationException Violation(string detail) => new(Codec, detail);
}
