using System.Buffers;
using Weft.Wire.Protobuf;

namespace Weft.Wire.Relay;

/// <summary>Type of a <see cref="StopMessage"/>.</summary>
public enum StopMessageType
{
    Connect = 0,
    Status = 1,
}

/// <summary>
/// The stop protocol message (<see cref="RelayProtocol.StopProtocolId"/>): <c>required Type type = 1; optional Peer
/// peer = 2; optional Limit limit = 3; optional Status status = 4;</c>.
/// Fields have explicit presence: <see cref="Type"/> is always written (CONNECT encodes as <c>08 00</c>), the
/// others only when non-null. On decode unknown fields (and known fields with another wire type) are skipped,
/// a repeated singular field keeps its last value, and an undefined <see cref="Type"/> or
/// <see cref="Status"/> number is carried through for the handler to answer UNEXPECTED_MESSAGE.
/// </summary>
public sealed record StopMessage : ProtoMessage
{
    public required StopMessageType Type { get; init; }

    public RelayPeer? Peer { get; init; }

    public RelayLimit? Limit { get; init; }

    public RelayStatus? Status { get; init; }

    /// <summary>
    /// Decodes a protobuf. Throws <see cref="ProtocolViolationException"/> ("relay") when it is malformed, longer
    /// than <see cref="RelayProtocol.MaxMessageLength"/>, lacks its type or has a peer without a valid id.
    /// </summary>
    public static StopMessage FromProtobuf(ReadOnlySpan<byte> data)
    {
        if (data.Length > RelayProtocol.MaxMessageLength)
        {
            throw new ProtocolViolationException(RelayProtocol.Codec, $"stop message of {data.Length} bytes exceeds {RelayProtocol.MaxMessageLength}");
        }

        try
        {
            var r = new ProtoReader(data);
            StopMessageType? type = null;
            RelayPeer? peer = null;
            RelayLimit? limit = null;
            RelayStatus? status = null;
            while (r.TryReadTag(out int field, out WireType wire))
            {
                switch (field)
                {
                    case 1 when wire == WireType.Varint:
                        type = (StopMessageType)r.ReadInt32();
                        break;
                    case 2 when wire == WireType.LengthDelimited:
                        peer = RelayPeer.Read(r.ReadBytes());
                        break;
                    case 3 when wire == WireType.LengthDelimited:
                        limit = RelayLimit.Read(r.ReadBytes());
                        break;
                    case 4 when wire == WireType.Varint:
                        status = (RelayStatus)r.ReadInt32();
                        break;
                    default:
                        r.Skip(wire);
                        break;
                }
            }

            if (type is not StopMessageType t)
            {
                throw new ProtocolViolationException(RelayProtocol.Codec, "stop message lacks its required type");
            }

            return new StopMessage { Type = t, Peer = peer, Limit = limit, Status = status };
        }
        catch (ProtocolViolationException e) when (e.Protocol != RelayProtocol.Codec)
        {
            throw new ProtocolViolationException(RelayProtocol.Codec, "malformed stop message: " + e.Message, e);
        }
    }

    /// <summary>
    /// Reads one length-prefixed message. False: more bytes are needed and <paramref name="input"/> is untouched;
    /// malformed or oversized input throws <see cref="ProtocolViolationException"/>.
    /// </summary>
    public static bool TryRead(ref ReadOnlySequence<byte> input, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out StopMessage? value) =>
        LengthPrefixed.TryRead(ref input, RelayProtocol.MaxMessageLength, RelayProtocol.Codec, FromProtobuf, out value);

    protected override void WriteTo(ProtoWriter w)
    {
        w.WriteInt32(1, (int)Type);
        if (Peer is not null || Limit is not null)
        {
            using var nested = new ProtoWriter(64);
            if (Peer is not null)
            {
                Peer.WriteTo(nested);
                w.WriteMessage(2, nested);
            }

            if (Limit is not null)
            {
                nested.Clear();
                Limit.WriteTo(nested);
                w.WriteMessage(3, nested);
            }
        }

        if (Status is RelayStatus s)
        {
            w.WriteInt32(4, (int)s);
        }
    }
}
