using System.Buffers;
using System.Diagnostics.CodeAnalysis;
using Weft.Wire.Identity;
using Weft.Wire.Multiformats;
using Weft.Wire.Protobuf;

namespace Weft.Wire.AutoNat;

/// <summary>Type of an <see cref="AutoNatMessage"/>.</summary>
public enum AutoNatMessageType
{
    Dial = 0,
    DialResponse = 1,
}

/// <summary>Status of an AutoNAT v1 dial response. Values outside this list are carried through as numbers.</summary>
public enum AutoNatResponseStatus
{
    /// <summary>A dial-back succeeded (<c>OK</c>).</summary>
    Ok = 0,

    /// <summary>Every dial-back failed (<c>E_DIAL_ERROR</c>).</summary>
    DialError = 100,

    /// <summary>The server would not dial: throttled, relayed request, nothing dialable (<c>E_DIAL_REFUSED</c>).</summary>
    DialRefused = 101,

    /// <summary>Malformed request or one for another peer (<c>E_BAD_REQUEST</c>).</summary>
    BadRequest = 200,

    /// <summary>The server failed for its own reasons (<c>E_INTERNAL_ERROR</c>).</summary>
    InternalError = 300,
}

/// <summary>
/// The <c>PeerInfo</c> message: <c>optional bytes id = 1; repeated bytes addrs = 2;</c>. A present id must be a
/// valid peer ID. Address entries that are empty or do not parse (a newer peer may use protocols we do not know),
/// and entries past <see cref="AutoNatMessage.MaxAddresses"/>, are dropped on decode.
/// </summary>
public sealed record AutoNatPeerInfo
{
    /// <summary>The peer asking to be dialled; null when absent on the wire.</summary>
    public PeerId? Id { get; init; }

    /// <summary>Addresses to dial back.</summary>
    public IReadOnlyList<Multiaddr> Addrs { get; init; } = [];

    internal void WriteTo(ProtoWriter w)
    {
        if (Id is not null)
        {
            w.WriteBytes(1, Id.Bytes.Span);
        }

        foreach (Multiaddr a in Addrs)
        {
            w.WriteBytes(2, a.Bytes.Span);
        }
    }

    internal static AutoNatPeerInfo Read(ReadOnlySpan<byte> data)
    {
        var r = new ProtoReader(data);
        PeerId? id = null;
        var addrs = new List<Multiaddr>();
        while (r.TryReadTag(out int field, out WireType type))
        {
            switch (field)
            {
                case 1 when type == WireType.LengthDelimited:
                    id = PeerId.FromBytes(r.ReadBytes());
                    break;
                case 2 when type == WireType.LengthDelimited:
                    ReadOnlySpan<byte> raw = r.ReadBytes();
                    if (addrs.Count < AutoNatMessage.MaxAddresses && !raw.IsEmpty && Multiaddr.TryFromBytes(raw, out Multiaddr? address))
                    {
                        addrs.Add(address);
                    }

                    break;
                default:
                    r.Skip(type);
                    break;
            }
        }

        return new AutoNatPeerInfo { Id = id, Addrs = addrs };
    }
}

/// <summary>The <c>Dial</c> message: <c>optional PeerInfo peer = 1;</c>.</summary>
public sealed record AutoNatDial
{
    public AutoNatPeerInfo? Peer { get; init; }

    internal void WriteTo(ProtoWriter w)
    {
        if (Peer is not null)
        {
            using var nested = new ProtoWriter(64);
            Peer.WriteTo(nested);
            w.WriteMessage(1, nested);
        }
    }

    internal static AutoNatDial Read(ReadOnlySpan<byte> data)
    {
        var r = new ProtoReader(data);
        AutoNatPeerInfo? peer = null;
        while (r.TryReadTag(out int field, out WireType type))
        {
            if (field == 1 && type == WireType.LengthDelimited)
            {
                peer = AutoNatPeerInfo.Read(r.ReadBytes());
            }
            else
            {
                r.Skip(type);
            }
        }

        return new AutoNatDial { Peer = peer };
    }
}

/// <summary>
/// The <c>DialResponse</c> message: <c>optional ResponseStatus status = 1; optional string statusText = 2; optional
/// bytes addr = 3;</c>. An <see cref="Addr"/> that is empty or does not parse decodes as null.
/// </summary>
public sealed record AutoNatDialResponse
{
    public AutoNatResponseStatus? Status { get; init; }

    /// <summary>Free text explaining the status (strict UTF-8 on the wire).</summary>
    public string? StatusText { get; init; }

    /// <summary>The address the server dialled successfully (OK), when it says.</summary>
    public Multiaddr? Addr { get; init; }

    internal void WriteTo(ProtoWriter w)
    {
        if (Status is AutoNatResponseStatus s)
        {
            w.WriteInt32(1, (int)s);
        }

        if (StatusText is not null)
        {
            w.WriteString(2, StatusText);
        }

        if (Addr is not null)
        {
            w.WriteBytes(3, Addr.Bytes.Span);
        }
    }

    internal static AutoNatDialResponse Read(ReadOnlySpan<byte> data)
    {
        var r = new ProtoReader(data);
        AutoNatResponseStatus? status = null;
        string? text = null;
        Multiaddr? addr = null;
        while (r.TryReadTag(out int field, out WireType type))
        {
            switch (field)
            {
                case 1 when type == WireType.Varint:
                    status = (AutoNatResponseStatus)r.ReadInt32();
                    break;
                case 2 when type == WireType.LengthDelimited:
                    text = r.ReadString();
                    break;
                case 3 when type == WireType.LengthDelimited:
                    ReadOnlySpan<byte> raw = r.ReadBytes();
                    addr = !raw.IsEmpty && Multiaddr.TryFromBytes(raw, out Multiaddr? a) ? a : null;
                    break;
                default:
                    r.Skip(type);
                    break;
            }
        }

        return new AutoNatDialResponse { Status = status, StatusText = text, Addr = addr };
    }
}

/// <summary>
/// The AutoNAT v1 message (autonat/autonat-v1.md): <c>optional MessageType type = 1; optional Dial dial = 2;
/// optional DialResponse dialResponse = 3;</c>, sent with a uvarint length prefix on a <see cref="ProtocolId"/>
/// stream. <see cref="Type"/> is always written; a message without it decodes as <see cref="AutoNatMessageType.Dial"/>
/// (the proto2 default, as go reads it). The other fields have explicit presence: written only when non-null, and
/// an empty nested message on the wire decodes as present. Unknown fields (and known fields with another wire type)
/// are skipped, a repeated singular field keeps its last value, undefined enum numbers are carried through.
/// </summary>
public sealed record AutoNatMessage : ProtoMessage
{
    /// <summary>Protocol ID of AutoNAT v1.</summary>
    public const string ProtocolId = "/libp2p/autonat/1.0.0";

    /// <summary>Largest encoded message (length prefix excluded) accepted on decode; go and js use the same 4 KiB.</summary>
    public const int MaxMessageLength = 4096;

    /// <summary>Most addresses kept from one <see cref="AutoNatPeerInfo"/>; the rest are dropped.</summary>
    public const int MaxAddresses = 64;

    /// <summary>Codec name used in <see cref="ProtocolViolationException"/>.</summary>
    public const string Codec = "autonat";

    public required AutoNatMessageType Type { get; init; }

    public AutoNatDial? Dial { get; init; }

    public AutoNatDialResponse? DialResponse { get; init; }

    /// <summary>A DIAL request asking to be dialled back as <paramref name="self"/> on <paramref name="addrs"/>.</summary>
    public static AutoNatMessage DialRequest(PeerId self, IReadOnlyList<Multiaddr> addrs) => new()
    {
        Type = AutoNatMessageType.Dial,
        Dial = new AutoNatDial { Peer = new AutoNatPeerInfo { Id = self, Addrs = addrs } },
    };

    /// <summary>A DIAL_RESPONSE.</summary>
    public static AutoNatMessage Response(AutoNatResponseStatus status, string? statusText = null, Multiaddr? addr = null) => new()
    {
        Type = AutoNatMessageType.DialResponse,
        DialResponse = new AutoNatDialResponse { Status = status, StatusText = statusText, Addr = addr },
    };

    /// <summary>
    /// Decodes a protobuf. Throws <see cref="ProtocolViolationException"/> ("autonat") when it is malformed, longer
    /// than <see cref="MaxMessageLength"/>, or carries a peer ID that is not valid.
    /// </summary>
    public static AutoNatMessage FromProtobuf(ReadOnlySpan<byte> data)
    {
        if (data.Length > MaxMessageLength)
        {
            throw new ProtocolViolationException(Codec, $"message of {data.Length} bytes exceeds {MaxMessageLength}");
        }

        try
        {
            var r = new ProtoReader(data);
            AutoNatMessageType type = AutoNatMessageType.Dial;
            AutoNatDial? dial = null;
            AutoNatDialResponse? response = null;
            while (r.TryReadTag(out int field, out WireType wire))
            {
                switch (field)
                {
                    case 1 when wire == WireType.Varint:
                        type = (AutoNatMessageType)r.ReadInt32();
                        break;
                    case 2 when wire == WireType.LengthDelimited:
                        dial = AutoNatDial.Read(r.ReadBytes());
                        break;
                    case 3 when wire == WireType.LengthDelimited:
                        response = AutoNatDialResponse.Read(r.ReadBytes());
                        break;
                    default:
                        r.Skip(wire);
                        break;
                }
            }

            return new AutoNatMessage { Type = type, Dial = dial, DialResponse = response };
        }
        catch (ProtocolViolationException e) when (e.Protocol != Codec)
        {
            throw new ProtocolViolationException(Codec, "malformed message: " + e.Message, e);
        }
    }

    /// <summary>
    /// Reads one length-prefixed message. False: more bytes are needed and <paramref name="input"/> is untouched;
    /// malformed or oversized input throws <see cref="ProtocolViolationException"/> (a length above
    /// <see cref="MaxMessageLength"/> before the body arrives).
    /// </summary>
    public static bool TryRead(ref ReadOnlySequence<byte> input, [NotNullWhen(true)] out AutoNatMessage? value) =>
        LengthPrefixed.TryRead(ref input, MaxMessageLength, Codec, FromProtobuf, out value);

    protected override void WriteTo(ProtoWriter w)
    {
        w.WriteInt32(1, (int)Type);
        if (Dial is not null)
        {
            using var nested = new ProtoWriter(64);
            Dial.WriteTo(nested);
            w.WriteMessage(2, nested);
        }

        if (DialResponse is not null)
        {
            using var nested = new ProtoWriter(64);
            DialResponse.WriteTo(nested);
            w.WriteMessage(3, nested);
        }
    }
}
