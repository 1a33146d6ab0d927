using System.Buffers;
using System.Buffers.Binary;

namespace Weft.Wire.Yamux;

/// <summary>The frame types of yamux version 0 (hashicorp/yamux spec.md, "Type Field").</summary>
public enum YamuxFrameType : byte
{
    /// <summary>Carries <see cref="YamuxHeader.Length"/> payload bytes for a stream.</summary>
    Data = 0,

    /// <summary>Grows the receiver's send window of a stream by <see cref="YamuxHeader.Length"/> bytes.</summary>
    WindowUpdate = 1,

    /// <summary>Keep-alive and RTT probe; <see cref="YamuxHeader.Length"/> is an opaque value echoed back.</summary>
    Ping = 2,

    /// <summary>Ends the session; <see cref="YamuxHeader.Length"/> is a <see cref="YamuxGoAwayCode"/>.</summary>
    GoAway = 3,
}

/// <summary>Header flags. Bits outside the four defined ones are carried through untouched.</summary>
[Flags]
public enum YamuxFlags : ushort
{
    None = 0,

    /// <summary>Opens a stream (on Data/WindowUpdate) or marks a ping request.</summary>
    Syn = 0x1,

    /// <summary>Accepts a stream (on Data/WindowUpdate) or marks a ping response.</summary>
    Ack = 0x2,

    /// <summary>Half-closes the sender's direction of a stream.</summary>
    Fin = 0x4,

    /// <summary>Resets a stream in both directions.</summary>
    Rst = 0x8,
}

/// <summary>The error code carried by a GoAway frame.</summary>
public enum YamuxGoAwayCode : uint
{
    Normal = 0,
    ProtocolError = 1,
    InternalError = 2,
}

/// <summary>
/// The fixed 12-byte yamux frame header: version (u8, always 0), type (u8), flags (u16), stream id (u32),
/// length (u32), all big-endian. For Data frames <see cref="Length"/> counts the payload bytes that follow;
/// for the other types it is the window delta, ping value or GoAway code and no payload follows.
/// </summary>
public readonly record struct YamuxHeader(YamuxFrameType Type, YamuxFlags Flags, uint StreamId, uint Length)
{
    /// <summary>Bytes in every header.</summary>
    public const int Size = 12;

    /// <summary>The only protocol version defined.</summary>
    public const byte ProtocolVersion = 0;

    /// <summary>The stream id reserved for the session (pings and GoAway).</summary>
    public const uint SessionStreamId = 0;

    /// <summary>The window every stream starts with, in each direction, before any window update.</summary>
    public const uint InitialStreamWindow = 256 * 1024;

    /// <summary>True if <see cref="Flags"/> contains every bit of <paramref name="flag"/>.</summary>
    public bool Has(YamuxFlags flag) => (Flags & flag) == flag;

    /// <summary><see cref="Length"/> read as a GoAway code (meaningful only for <see cref="YamuxFrameType.GoAway"/>).</summary>
    public YamuxGoAwayCode GoAwayCode => (YamuxGoAwayCode)Length;

    /// <summary>A Data frame header announcing <paramref name="length"/> payload bytes.</summary>
    public static YamuxHeader Data(uint streamId, YamuxFlags flags, uint length) => new(YamuxFrameType.Data, flags, streamId, length);

    /// <summary>A WindowUpdate header granting <paramref name="delta"/> more bytes (0 when it only carries flags).</summary>
    public static YamuxHeader WindowUpdate(uint streamId, YamuxFlags flags, uint delta) => new(YamuxFrameType.WindowUpdate, flags, streamId, delta);

    /// <summary>A ping request (<see cref="YamuxFlags.Syn"/>) or response (<see cref="YamuxFlags.Ack"/>).</summary>
    public static YamuxHeader Ping(YamuxFlags flags, uint opaque) => new(YamuxFrameType.Ping, flags, SessionStreamId, opaque);

    /// <summary>A GoAway header with <paramref name="code"/>.</summary>
    public static YamuxHeader GoAway(YamuxGoAwayCode code) => new(YamuxFrameType.GoAway, YamuxFlags.None, SessionStreamId, (uint)code);

    /// <summary>
    /// Reads one header. False: fewer than <see cref="Size"/> bytes are available and <paramref name="input"/> is
    /// untouched. On success <paramref name="input"/> is advanced past the header (not past any payload).
    /// Throws <see cref="ProtocolViolationException"/> for an unknown version or frame type.
    /// </summary>
    public static bool TryRead(ref ReadOnlySequence<byte> input, out YamuxHeader header)
    {
        if (input.Length < Size)
        {
            header = default;
            return false;
        }
        var first = input.FirstSpan;
        if (first.Length >= Size)
        {
            header = Read(first);
        }
        else
        {
            Span<byte> tmp = stackalloc byte[Size];
            input.Slice(0, Size).CopyTo(tmp);
            header = Read(tmp);
        }
        input = input.Slice(Size);
        return true;
    }

    /// <summary>
    /// Reads one header from a span. False when <paramref name="input"/> holds fewer than <see cref="Size"/> bytes;
    /// <paramref name="consumed"/> is then 0.
    /// </summary>
    public static bool TryRead(ReadOnlySpan<byte> input, out YamuxHeader header, out int consumed)
    {
        if (input.Length < Size)
        {
            header = default;
            consumed = 0;
            return false;
        }
        header = Read(input);
        consumed = Size;
        return true;
    }

    private static YamuxHeader Read(ReadOnlySpan<byte> src)
    {
        var version = src[0];
        if (version != ProtocolVersion)
            throw new ProtocolViolationException("yamux", $"unsupported version {version}");
        var type = src[1];
        if (type > (byte)YamuxFrameType.GoAway)
            throw new ProtocolViolationException("yamux", $"unknown frame type {type}");
        return new YamuxHeader(
            (YamuxFrameType)type,
            (YamuxFlags)BinaryPrimitives.ReadUInt16BigEndian(src[2..]),
            BinaryPrimitives.ReadUInt32BigEndian(src[4..]),
            BinaryPrimitives.ReadUInt32BigEndian(src[8..]));
    }

    /// <summary>Writes the 12 header bytes to the start of <paramref name="dest"/>.</summary>
    public void Write(Span<byte> dest)
    {
        if (dest.Length < Size) throw new ArgumentException($"a yamux header needs {Size} bytes", nameof(dest));
        dest[0] = ProtocolVersion;
        dest[1] = (byte)Type;
        BinaryPrimitives.WriteUInt16BigEndian(dest[2..], (ushort)Flags);
        BinaryPrimitives.WriteUInt32BigEndian(dest[4..], StreamId);
        BinaryPrimitives.WriteUInt32BigEndian(dest[8..], Length);
    }

    /// <summary>Writes the header to <paramref name="output"/> and advances it.</summary>
    public void Write(IBufferWriter<byte> output)
    {
        Write(output.GetSpan(Size));
        output.Advance(Size);
    }

    public override string ToString() => $"{Type} id={StreamId} flags={Flags} len={Length}";
}
