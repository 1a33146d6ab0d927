using System.Buffers;
using System.Buffers.Binary;
using System.Text;

namespace Weft.Wire.Mqtt;

/// <summary>MQTT 3.1.1 control packet types (OASIS mqtt-v3.1.1 §2.2.1).</summary>
public enum MqttPacketType : byte
{
    Connect = 1,
    ConnAck = 2,
    Publish = 3,
    PubAck = 4,
    PubRec = 5,
    PubRel = 6,
    PubComp = 7,
    Subscribe = 8,
    SubAck = 9,
    Unsubscribe = 10,
    UnsubAck = 11,
    PingReq = 12,
    PingResp = 13,
    Disconnect = 14,
}

/// <summary>
/// One MQTT 3.1.1 control packet: a fixed header (type and flags, remaining length as a 1–4 byte varint) then the
/// variable header and payload. <see cref="TryRead"/> is the codec: false = more bytes needed, malformed input =
/// <see cref="ProtocolViolationException"/> ("mqtt").
/// </summary>
public abstract record MqttPacket
{
    /// <summary>Largest remaining length the varint can express (§2.2.3).</summary>
    public const int MaxRemainingLength = 268_435_455;

    public abstract MqttPacketType Type { get; }

    /// <summary>
    /// Reads one packet. False: the packet is not complete and <paramref name="input"/> is untouched. A remaining
    /// length above <paramref name="maxPacketBytes"/> throws before the body arrives.
    /// </summary>
    public static bool TryRead(ref ReadOnlySequence<byte> input, int maxPacketBytes, out MqttPacket packet)
    {
        packet = null!;
        if (input.IsEmpty) return false;
        var reader = new SequenceReader<byte>(input);
        reader.TryRead(out var first);
        var length = 0;
        for (var i = 0; ; i++)
        {
            if (!reader.TryRead(out var b)) return false;
            if (i == 3 && (b & 0x80) != 0) throw Violation("remaining length uses more than 4 bytes");
            length |= (b & 0x7F) << (7 * i);
            if ((b & 0x80) == 0) break;
        }
        if (length > maxPacketBytes) throw Violation($"packet of {length} bytes is over the limit of {maxPacketBytes}");
        if (reader.Remaining < length) return false;
        var body = input.Slice(reader.Position, length);
        packet = Parse(first, body);
        input = input.Slice(body.End);
        return true;
    }

    /// <summary>Writes the whole packet.</summary>
    public void Write(IBufferWriter<byte> output)
    {
        ArgumentNullException.ThrowIfNull(output);
        var body = new ArrayBufferWriter<byte>(64);
        WriteBody(body);
        if (body.WrittenCount > MaxRemainingLength) throw new InvalidOperationException($"an MQTT packet body holds at most {MaxRemainingLength} bytes");
        var head = output.GetSpan(5);
        head[0] = (byte)(((int)Type << 4) | Flags);
        var n = 1;
        var len = body.WrittenCount;
        do
        {
            var b = (byte)(len & 0x7F);
            len >>= 7;
            head[n++] = (byte)(len > 0 ? b | 0x80 : b);
        } while (len > 0);
        output.Advance(n);
        output.Write(body.WrittenSpan);
    }

    public byte[] ToArray()
    {
        var w = new ArrayBufferWriter<byte>(64);
        Write(w);
        return w.WrittenSpan.ToArray();
    }

    /// <summary>The low 4 bits of the first byte.</summary>
    protected virtual int Flags => 0;

    protected abstract void WriteBody(ArrayBufferWriter<byte> w);

    internal static ProtocolViolationException Violation(string message) => new("mqtt", message);

    private static MqttPacket Parse(byte first, ReadOnlySequence<byte> body)
    {
        var type = (MqttPacketType)(first >> 4);
        var flags = first & 0x0F;
        var r = new BodyReader(body);
        MqttPacket p = type switch
        {
            MqttPacketType.Publish => MqttPublish.Read(flags, ref r),
            MqttPacketType.Subscribe => Checked(flags, 2, type, MqttSubscribe.Read(ref r)),
            MqttPacketType.Unsubscribe => Checked(flags, 2, type, MqttUnsubscribe.Read(ref r)),
            MqttPacketType.PubRel => Checked(flags, 2, type, new MqttPacketId(type, r.PacketId())),
            MqttPacketType.PubAck or MqttPacketType.PubRec or MqttPacketType.PubComp or MqttPacketType.UnsubAck
                => Checked(flags, 0, type, new MqttPacketId(type, r.PacketId())),
            MqttPacketType.Connect => Checked(flags, 0, type, MqttConnect.Read(ref r)),
            MqttPacketType.ConnAck => Checked(flags, 0, type, MqttConnAck.Read(ref r)),
            MqttPacketType.SubAck => Checked(flags, 0, type, MqttSubAck.Read(ref r)),
            MqttPacketType.PingReq or MqttPacketType.PingResp or MqttPacketType.Disconnect => Checked(flags, 0, type, new MqttEmpty(type)),
            _ => throw Violation($"reserved packet type {(int)type}"),
        };
        if (!r.End) throw Violation($"{type} has {r.Left} bytes after its last field");
        return p;
    }

    private static MqttPacket Checked(int flags, int expected, MqttPacketType type, MqttPacket p) =>
        flags == expected ? p : throw Violation($"{type} must have fixed-header flags {expected}, got {flags}");

    /// <summary>Reads the fields of a packet body; every short read is a violation (the body length is known).</summary>
    internal ref struct BodyReader
    {
        private SequenceReader<byte> _r;

        public BodyReader(ReadOnlySequence<byte> body) => _r = new SequenceReader<byte>(body);

        public readonly bool End => _r.End;

        public readonly long Left => _r.Remaining;

        public byte Byte()
        {
            if (!_r.TryRead(out var b)) throw Violation("packet ends inside a field");
            return b;
        }

        public ushort UInt16()
        {
            if (!_r.TryReadBigEndian(out short v)) throw Violation("packet ends inside a field");
            return (ushort)v;
        }

        public ushort PacketId()
        {
            var id = UInt16();
            return id != 0 ? id : throw Violation("packet identifier 0 is not allowed");
        }

        public byte[] Bytes()
        {
            var n = UInt16();
            if (_r.Remaining < n) throw Violation("packet ends inside a field");
            var b = _r.UnreadSequence.Slice(0, n).ToArray();
            _r.Advance(n);
            return b;
        }

        public string String(string what)
        {
            var b = Bytes();
            string s;
            try
            {
                s = Strict.GetString(b);
            }
            catch (DecoderFallbackException)
            {
                throw Violation($"{what} is not valid UTF-8");
            }
            if (s.Contains('\0', StringComparison.Ordinal)) throw Violation($"{what} contains U+0000");
            return s;
        }

        public byte[] Rest()
        {
            var b = _r.UnreadSequence.ToArray();
            _r.Advance(b.Length);
            return b;
        }
    }

    internal static readonly UTF8Encoding Strict = new(false, true);

    internal static void WriteString(ArrayBufferWriter<byte> w, string s)
    {
        var n = Strict.GetByteCount(s);
        if (n > ushort.MaxValue) throw new ArgumentException($"an MQTT string holds at most {ushort.MaxValue} bytes");
        WriteUInt16(w, (ushort)n);
        Strict.GetBytes(s, w);
    }

    internal static void WriteBytes(ArrayBufferWriter<byte> w, ReadOnlySpan<byte> b)
    {
        if (b.Length > ushort.MaxValue) throw new ArgumentException($"an MQTT binary field holds at most {ushort.MaxValue} bytes");
        WriteUInt16(w, (ushort)b.Length);
        w.Write(b);
    }

    internal static void WriteUInt16(ArrayBufferWriter<byte> w, ushort v)
    {
        BinaryPrimitives.WriteUInt16BigEndian(w.GetSpan(2), v);
        w.Advance(2);
    }

    internal static void WriteByte(ArrayBufferWriter<byte> w, byte b)
    {
        w.GetSpan(1)[0] = b;
        w.Advance(1);
    }

    internal static void ValidateTopicName(string topic)
    {
        if (topic.Length == 0) throw Violation("topic name is empty");
        if (topic.AsSpan().IndexOfAny('+', '#') >= 0) throw Violation($"topic name '{topic}' contains a wildcard");
    }

    internal static void ValidateTopicFilter(string filter)
    {
        if (filter.Length == 0) throw Violation("topic filter is empty");
        var levels = filter.Split('/');
        for (var i = 0; i < levels.Length; i++)
        {
            var l = levels[i];
            if (l.Contains('#', StringComparison.Ordinal) && (l != "#" || i != levels.Length - 1)) throw Violation($"topic filter '{filter}': '#' must be a whole last level");
            if (l.Contains('+', StringComparison.Ordinal) && l != "+") throw Violation($"topic filter '{filter}': '+' must be a whole level");
        }
    }
}

/// <summary>CONNECT (§3.1). Protocol name "MQTT", level 4.</summary>
public sealed record MqttConnect : MqttPacket
{
    public override MqttPacketType Type => MqttPacketType.Connect;
    public required string ClientId { get; init; }
    public bool CleanSession { get; init; } = true;
    public ushort KeepAliveSeconds { get; init; } = 60;
    public string? Username { get; init; }
    public byte[]? Password { get; init; }
    public string? WillTopic { get; init; }
    public byte[]? WillMessage { get; init; }
    public byte WillQos { get; init; }
    public bool WillRetain { get; init; }

    protected override void WriteBody(ArrayBufferWriter<byte> w)
    {
        WriteString(w, "MQTT");
        WriteByte(w, 4);
        var flags = (CleanSession ? 0x02 : 0) | (WillTopic is not null ? 0x04 | (WillQos << 3) | (WillRetain ? 0x20 : 0) : 0)
                    | (Password is not null ? 0x40 : 0) | (Username is not null ? 0x80 : 0);
        WriteByte(w, (byte)flags);
        WriteUInt16(w, KeepAliveSeconds);
        WriteString(w, ClientId);
        if (WillTopic is not null)
        {
            WriteString(w, WillTopic);
            WriteBytes(w, WillMessage ?? []);
        }
        if (Username is not null) WriteString(w, Username);
        if (Password is not null) WriteBytes(w, Password);
    }

    internal static MqttConnect Read(ref BodyReader r)
    {
        var name = r.String("protocol name");
        if (name != "MQTT") throw Violation($"protocol name '{name}' is not MQTT");
        var level = r.Byte();
        if (level != 4) throw Violation($"protocol level {level} is not 4 (3.1.1)");
        var flags = r.Byte();
        if ((flags & 0x01) != 0) throw Violation("CONNECT reserved flag is set");
        var will = (flags & 0x04) != 0;
        var willQos = (byte)((flags >> 3) & 3);
        if (willQos == 3) throw Violation("will QoS 3 is not allowed");
        if (!will && (willQos != 0 || (flags & 0x20) != 0)) throw Violation("will QoS or retain set without a will");
        if ((flags & 0x40) != 0 && (flags & 0x80) == 0) throw Violation("password flag set without a user name");
        var keepAlive = r.UInt16();
        var clientId = r.String("client identifier");
        string? willTopic = null;
        byte[]? willMessage = null;
        if (will)
        {
            willTopic = r.String("will topic");
            ValidateTopicName(willTopic);
            willMessage = r.Bytes();
        }
        var user = (flags & 0x80) != 0 ? r.String("user name") : null;
        var pass = (flags & 0x40) != 0 ? r.Bytes() : null;
        return new MqttConnect
        {
            ClientId = clientId, CleanSession = (flags & 0x02) != 0, KeepAliveSeconds = keepAlive, Username = user, Password = pass,
            WillTopic = willTopic, WillMessage = willMessage, WillQos = willQos, WillRetain = (flags & 0x20) != 0,
        };
    }
}

/// <summary>CONNACK (§3.2): 0 = accepted; 1–5 = refused (version, identifier, server unavailable, credentials, not authorised).</summary>
public sealed record MqttConnAck(bool SessionPresent, byte ReturnCode) : MqttPacket
{
    public override MqttPacketType Type => MqttPacketType.ConnAck;

    protected override void WriteBody(ArrayBufferWriter<byte> w)
    {
        WriteByte(w, (byte)(SessionPresent ? 1 : 0));
        WriteByte(w, ReturnCode);
    }

    internal static MqttConnAck Read(ref BodyReader r)
    {
        var ack = r.Byte();
        if ((ack & 0xFE) != 0) throw Violation("CONNACK reserved acknowledge flags are set");
        var code = r.Byte();
        if (code > 5) throw Violation($"CONNACK return code {code} is reserved");
        return new MqttConnAck((ack & 1) != 0, code);
    }

    /// <summary>The return code in words.</summary>
    public string Describe() => ReturnCode switch
    {
        0 => "accepted",
        1 => "unacceptable protocol version",
        2 => "identifier rejected",
        3 => "server unavailable",
        4 => "bad user name or password",
        5 => "not authorized",
        _ => $"code {ReturnCode}",
    };
}

/// <summary>PUBLISH (§3.3). <see cref="PacketId"/> is present only for QoS 1 and 2.</summary>
public sealed record MqttPublish : MqttPacket
{
    public override MqttPacketType Type => MqttPacketType.Publish;
    public required string Topic { get; init; }
    public byte Qos { get; init; }
    public bool Retain { get; init; }
    public bool Dup { get; init; }
    public ushort PacketId { get; init; }
    public ReadOnlyMemory<byte> Payload { get; init; }

    protected override int Flags => (Dup ? 8 : 0) | (Qos << 1) | (Retain ? 1 : 0);

    protected override void WriteBody(ArrayBufferWriter<byte> w)
    {
        if (Qos > 2) throw new InvalidOperationException("QoS must be 0, 1 or 2");
        if (Qos > 0 && PacketId == 0) throw new InvalidOperationException("a QoS 1 or 2 PUBLISH needs a packet identifier");
        WriteString(w, Topic);
        if (Qos > 0) WriteUInt16(w, PacketId);
        w.Write(Payload.Span);
    }

    internal static MqttPublish Read(int flags, ref BodyReader r)
    {
        var qos = (byte)((flags >> 1) & 3);
        if (qos == 3) throw Violation("PUBLISH QoS 3 is not allowed");
        if (qos == 0 && (flags & 8) != 0) throw Violation("PUBLISH QoS 0 with DUP set");
        var topic = r.String("topic name");
        ValidateTopicName(topic);
        var id = qos > 0 ? r.PacketId() : (ushort)0;
        return new MqttPublish { Topic = topic, Qos = qos, Retain = (flags & 1) != 0, Dup = (flags & 8) != 0, PacketId = id, Payload = r.Rest() };
    }
}

/// <summary>PUBACK, PUBREC, PUBREL, PUBCOMP and UNSUBACK: a packet identifier alone.</summary>
public sealed record MqttPacketId(MqttPacketType PacketType, ushort PacketId) : MqttPacket
{
    public override MqttPacketType Type => PacketType;

    protected override int Flags => PacketType == MqttPacketType.PubRel ? 2 : 0;

    protected override void WriteBody(ArrayBufferWriter<byte> w) => WriteUInt16(w, PacketId);
}

/// <summary>SUBSCRIBE (§3.8): one or more topic filters with their maximum QoS.</summary>
public sealed record MqttSubscribe(ushort PacketId, IReadOnlyList<(string Filter, byte Qos)> Topics) : MqttPacket
{
    public override MqttPacketType Type => MqttPacketType.Subscribe;

    protected override int Flags => 2;

    protected override void WriteBody(ArrayBufferWriter<byte> w)
    {
        if (Topics.Count == 0) throw new InvalidOperationException("SUBSCRIBE needs at least one topic filter");
        WriteUInt16(w, PacketId);
        foreach (var (f, q) in Topics)
        {
            WriteString(w, f);
            WriteByte(w, q);
        }
    }

    internal static MqttSubscribe Read(ref BodyReader r)
    {
        var id = r.PacketId();
        var topics = new List<(string, byte)>();
        while (!r.End)
        {
            var f = r.String("topic filter");
            ValidateTopicFilter(f);
            var q = r.Byte();
            if (q > 2) throw Violation($"requested QoS byte {q} is not 0, 1 or 2");
            topics.Add((f, q));
        }
        if (topics.Count == 0) throw Violation("SUBSCRIBE with no topic filter");
        return new MqttSubscribe(id, topics);
    }
}

/// <summary>SUBACK (§3.9): one return code per filter (granted QoS 0–2, or 0x80 failure).</summary>
public sealed record MqttSubAck(ushort PacketId, IReadOnlyList<byte> ReturnCodes) : MqttPacket
{
    public const byte Failure = 0x80;

    public override MqttPacketType Type => MqttPacketType.SubAck;

    protected override void WriteBody(ArrayBufferWriter<byte> w)
    {
        WriteUInt16(w, PacketId);
        foreach (var c in ReturnCodes) WriteByte(w, c);
    }

    internal static MqttSubAck Read(ref BodyReader r)
    {
        var id = r.PacketId();
        var codes = new List<byte>();
        while (!r.End)
        {
            var c = r.Byte();
            if (c > 2 && c != Failure) throw Violation($"SUBACK return code {c} is reserved");
            codes.Add(c);
        }
        if (codes.Count == 0) throw Violation("SUBACK with no return code");
        return new MqttSubAck(id, codes);
    }
}

/// <summary>UNSUBSCRIBE (§3.10).</summary>
public sealed record MqttUnsubscribe(ushort PacketId, IReadOnlyList<string> Filters) : MqttPacket
{
    public override MqttPacketType Type => MqttPacketType.Unsubscribe;

    protected override int Flags => 2;

    protected override void WriteBody(ArrayBufferWriter<byte> w)
    {
        WriteUInt16(w, PacketId);
        foreach (var f in Filters) WriteString(w, f);
    }

    internal static MqttUnsubscribe Read(ref BodyReader r)
    {
        var id = r.PacketId();
        var filters = new List<string>();
        while (!r.End)
        {
            var f = r.String("topic filter");
            ValidateTopicFilter(f);
            filters.Add(f);
        }
        if (filters.Count == 0) throw Violation("UNSUBSCRIBE with no topic filter");
        return new MqttUnsubscribe(id, filters);
    }
}

/// <summary>PINGREQ, PINGRESP and DISCONNECT: no body.</summary>
public sealed record MqttEmpty(MqttPacketType PacketType) : MqttPacket
{
    public static readonly MqttEmpty PingReq = new(MqttPacketType.PingReq);
    public static readonly MqttEmpty PingResp = new(MqttPacketType.PingResp);
    public static readonly MqttEmpty Disconnect = new(MqttPacketType.Disconnect);

    public override MqttPacketType Type => PacketType;

    protected override void WriteBody(ArrayBufferWriter<byte> w) { }
}
