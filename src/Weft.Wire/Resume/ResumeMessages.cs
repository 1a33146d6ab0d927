using System.Buffers;
using System.Diagnostics.CodeAnalysis;
using Weft.Wire.Multiformats;
using Weft.Wire.Protobuf;
using Weft.Wire.Tunnel;

namespace Weft.Wire.Resume;

/// <summary>What a <see cref="ResumeHello"/> asks for.</summary>
public enum ResumeHelloKind
{
    /// <summary>A new session to the endpoint in <see cref="ResumeHello.Target"/>.</summary>
    Open = 0,

    /// <summary>Re-attach an existing session on this new stream.</summary>
    Resume = 1,
}

/// <summary>
/// The first message on a <see cref="ProtocolId"/> stream (length-prefixed protobuf):
/// <code>
/// bytes session = 1; Kind kind = 2; tunnel-proxy Proxy target = 3; uint64 received = 4;
/// </code>
/// <see cref="Received"/> is how many bytes of the session the sender has received from the other side (for a
/// resume: the other side resends from there).
/// </summary>
public sealed record ResumeHello : ProtoMessage
{
    /// <summary>Weft's resumable tunnel (TCP only): survives the death of the path it runs on.</summary>
    public const string ProtocolId = "/weft/tunnel-resume/1.0.0";

    /// <summary>Session ids are 16 random bytes.</summary>
    public const int SessionIdLength = 16;

    public const int MaxMessageLength = 4096;

    private const string Codec = "tunnel-resume";

    public required byte[] Session { get; init; }
    public required ResumeHelloKind Kind { get; init; }
    public ProxyMessage? Target { get; init; }
    public ulong Received { get; init; }

    public static ResumeHello FromProtobuf(ReadOnlySpan<byte> data)
    {
        if (data.Length > MaxMessageLength) throw new ProtocolViolationException(Codec, $"hello of {data.Length} bytes exceeds {MaxMessageLength}");
        try
        {
            var r = new ProtoReader(data);
            byte[]? session = null;
            var kind = ResumeHelloKind.Open;
            ProxyMessage? target = null;
            ulong received = 0;
            while (r.TryReadTag(out var field, out var wire))
            {
                switch (field)
                {
                    case 1 when wire == WireType.LengthDelimited: session = r.ReadBytes().ToArray(); break;
                    case 2 when wire == WireType.Varint: kind = (ResumeHelloKind)r.ReadInt32(); break;
                    case 3 when wire == WireType.LengthDelimited: target = ProxyMessage.FromProtobuf(r.ReadBytes()); break;
                    case 4 when wire == WireType.Varint: received = r.ReadVarint(); break;
                    default: r.Skip(wire); break;
                }
            }
            if (session is not { Length: SessionIdLength }) throw new ProtocolViolationException(Codec, $"the session id must be {SessionIdLength} bytes");
            if (kind is not (ResumeHelloKind.Open or ResumeHelloKind.Resume)) throw new ProtocolViolationException(Codec, $"unknown hello kind {(int)kind}");
            if (kind == ResumeHelloKind.Open && target is null) throw new ProtocolViolationException(Codec, "OPEN without a target");
            return new ResumeHello { Session = session, Kind = kind, Target = target, Received = received };
        }
        catch (ProtocolViolationException e) when (e.Protocol != Codec)
        {
            throw new ProtocolViolationException(Codec, "malformed hello: " + e.Message, e);
        }
    }

    public static bool TryRead(ref ReadOnlySequence<byte> input, [NotNullWhen(true)] out ResumeHello? value) =>
        LengthPrefixed.TryRead(ref input, MaxMessageLength, Codec, FromProtobuf, out value);

    protected override void WriteTo(ProtoWriter w)
    {
        w.WriteBytes(1, Session);
        w.WriteInt32(2, (int)Kind);
        if (Target is not null) w.WriteBytes(3, Target.ToProtobuf());
        if (Received != 0) w.WriteVarint(4, Received);
    }
}

/// <summary>The answer to a <see cref="ResumeHello"/>.</summary>
public enum ResumeStatus
{
    Ok = 0,

    /// <summary>The endpoint could not be reached or is refused.</summary>
    Failed = 1,

    /// <summary>No such session here (the node restarted, or its grace period ran out): the connection is lost.</summary>
    UnknownSession = 2,

    /// <summary>The offsets do not meet (the data the other side lacks is no longer buffered): the connection is lost.</summary>
    Impossible = 3,
}

/// <summary>
/// The answer (length-prefixed protobuf): <c>Status status = 1; uint64 received = 2; string reason = 3;</c>.
/// </summary>
public sealed record ResumeWelcome : ProtoMessage
{
    public const int MaxMessageLength = 4096;

    private const string Codec = "tunnel-resume";

    public required ResumeStatus Status { get; init; }
    public ulong Received { get; init; }
    public string? Reason { get; init; }

    public static ResumeWelcome FromProtobuf(ReadOnlySpan<byte> data)
    {
        if (data.Length > MaxMessageLength) throw new ProtocolViolationException(Codec, $"welcome of {data.Length} bytes exceeds {MaxMessageLength}");
        try
        {
            var r = new ProtoReader(data);
            var status = ResumeStatus.Ok;
            ulong received = 0;
            string? reason = null;
            while (r.TryReadTag(out var field, out var wire))
            {
                switch (field)
                {
                    case 1 when wire == WireType.Varint: status = (ResumeStatus)r.ReadInt32(); break;
                    case 2 when wire == WireType.Varint: received = r.ReadVarint(); break;
                    case 3 when wire == WireType.LengthDelimited: reason = r.ReadString(); break;
                    default: r.Skip(wire); break;
                }
            }
            if (status is < ResumeStatus.Ok or > ResumeStatus.Impossible) throw new ProtocolViolationException(Codec, $"unknown status {(int)status}");
            return new ResumeWelcome { Status = status, Received = received, Reason = reason };
        }
        catch (ProtocolViolationException e) when (e.Protocol != Codec)
        {
            throw new ProtocolViolationException(Codec, "malformed welcome: " + e.Message, e);
        }
    }

    public static bool TryRead(ref ReadOnlySequence<byte> input, [NotNullWhen(true)] out ResumeWelcome? value) =>
        LengthPrefixed.TryRead(ref input, MaxMessageLength, Codec, FromProtobuf, out value);

    protected override void WriteTo(ProtoWriter w)
    {
        w.WriteInt32(1, (int)Status);
        if (Received != 0) w.WriteVarint(2, Received);
        if (Reason is not null) w.WriteString(3, Reason);
    }
}

public enum ResumeFrameType : byte
{
    /// <summary>Bytes of the session starting at <see cref="ResumeFrame.Offset"/>.</summary>
    Data = 0,

    /// <summary>Everything before <see cref="ResumeFrame.Offset"/> arrived (and, with <see cref="ResumeFrame.Fin"/>, the end too).</summary>
    Ack = 1,

    /// <summary>The sender's direction ends at <see cref="ResumeFrame.Offset"/> (TCP half-close).</summary>
    Fin = 2,

    /// <summary>The session is over with an error (<see cref="ResumeFrame.Reason"/>): reset the connection.</summary>
    Reset = 3,
}

/// <summary>
/// A frame after the hello/welcome: <c>type(1) ‖ uvarint offset ‖</c> then for DATA <c>uvarint length ‖ bytes</c>,
/// for ACK one flag byte (1 = the FIN arrived too), for RESET <c>uvarint length ‖ UTF-8 reason</c>.
/// </summary>
public readonly record struct ResumeFrame(ResumeFrameType Type, ulong Offset, ReadOnlySequence<byte> Payload, bool Fin, string? Reason)
{
    /// <summary>Largest DATA payload.</summary>
    public const int MaxPayload = 64 * 1024;

    /// <summary>Largest RESET reason.</summary>
    public const int MaxReason = 1024;

    private const string Codec = "tunnel-resume";

    public static void WriteDataHeader(IBufferWriter<byte> output, ulong offset, int length)
    {
        if ((uint)length > MaxPayload) throw new ArgumentOutOfRangeException(nameof(length));
        var span = output.GetSpan(1 + 10 + 5);
        span[0] = (byte)ResumeFrameType.Data;
        var n = 1 + Varint.Write(span[1..], offset);
        n += Varint.Write(span[n..], (ulong)length);
        output.Advance(n);
    }

    public static void WriteAck(IBufferWriter<byte> output, ulong offset, bool fin)
    {
        var span = output.GetSpan(12);
        span[0] = (byte)ResumeFrameType.Ack;
        var n = 1 + Varint.Write(span[1..], offset);
        span[n++] = fin ? (byte)1 : (byte)0;
        output.Advance(n);
    }

    public static void WriteFin(IBufferWriter<byte> output, ulong offset)
    {
        var span = output.GetSpan(11);
        span[0] = (byte)ResumeFrameType.Fin;
        output.Advance(1 + Varint.Write(span[1..], offset));
    }

    public static void WriteReset(IBufferWriter<byte> output, string reason)
    {
        var bytes = System.Text.Encoding.UTF8.GetBytes(reason.Length > MaxReason / 4 ? reason[..(MaxReason / 4)] : reason);
        var span = output.GetSpan(1 + 10 + 5 + bytes.Length);
        span[0] = (byte)ResumeFrameType.Reset;
        var n = 1 + Varint.Write(span[1..], 0);
        n += Varint.Write(span[n..], (ulong)bytes.Length);
        bytes.CopyTo(span[n..]);
        output.Advance(n + bytes.Length);
    }

    /// <summary>
    /// Reads one frame. False: more bytes are needed and <paramref name="input"/> is untouched. A DATA frame's payload
    /// is a slice of the input (valid until the reader advances past it). Malformed input throws
    /// <see cref="ProtocolViolationException"/>.
    /// </summary>
    public static bool TryRead(ref ReadOnlySequence<byte> input, out ResumeFrame frame)
    {
        frame = default;
        var reader = input;
        if (reader.IsEmpty) return false;
        var type = (ResumeFrameType)reader.FirstSpan[0];
        reader = reader.Slice(1);
        if (!Varint.TryRead(ref reader, out var offset)) return false;
        switch (type)
        {
            case ResumeFrameType.Data:
            {
                if (!Varint.TryRead(ref reader, out var length)) return false;
                if (length > MaxPayload) throw new ProtocolViolationException(Codec, $"DATA of {length} bytes exceeds {MaxPayload}");
                if ((ulong)reader.Length < length) return false;
                frame = new ResumeFrame(type, offset, reader.Slice(0, (long)length), false, null);
                input = reader.Slice((long)length);
                return true;
            }
            case ResumeFrameType.Ack:
            {
                if (reader.IsEmpty) return false;
                var flag = reader.FirstSpan[0];
                if (flag > 1) throw new ProtocolViolationException(Codec, $"ACK flag {flag}");
                frame = new ResumeFrame(type, offset, default, flag == 1, null);
                input = reader.Slice(1);
                return true;
            }
            case ResumeFrameType.Fin:
                frame = new ResumeFrame(type, offset, default, true, null);
                input = reader;
                return true;
            case ResumeFrameType.Reset:
            {
                if (!Varint.TryRead(ref reader, out var length)) return false;
                if (length > MaxReason) throw new ProtocolViolationException(Codec, $"RESET reason of {length} bytes exceeds {MaxReason}");
                if ((ulong)reader.Length < length) return false;
                string reason;
                try
                {
                    reason = new System.Text.UTF8Encoding(false, true).GetString(reader.Slice(0, (long)length).ToArray());
                }
                catch (System.Text.DecoderFallbackException)
                {
                    throw new ProtocolViolationException(Codec, "RESET reason is not UTF-8");
                }
                frame = new ResumeFrame(type, offset, default, false, reason);
                input = reader.Slice((long)length);
                return true;
            }
            default:
                throw new ProtocolViolationException(Codec, $"unknown frame type {(byte)type}");
        }
    }
}
