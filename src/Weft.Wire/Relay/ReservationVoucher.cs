using Weft.Wire.Identity;
using Weft.Wire.Protobuf;

namespace Weft.Wire.Relay;

/// <summary>
/// A circuit relay v2 reservation voucher: <c>required bytes relay = 1; required bytes peer = 2; required uint64
/// expiration = 3;</c>, written in field order and carried in a <see cref="SignedEnvelope"/> signed by the relay
/// with domain <see cref="Domain"/> and payload type <see cref="PayloadType"/>.
/// </summary>
public sealed class ReservationVoucher
{
    /// <summary>Signature domain of reservation vouchers.</summary>
    public const string Domain = "libp2p-relay-rsvp";

    private static readonly byte[] PayloadTypeBytes = [0x03, 0x02];

    public ReservationVoucher(PeerId relay, PeerId peer, ulong expiration)
    {
        ArgumentNullException.ThrowIfNull(relay);
        ArgumentNullException.ThrowIfNull(peer);
        Relay = relay;
        Peer = peer;
        Expiration = expiration;
    }

    /// <summary>Payload type: multicodec 0x0302 ("libp2p-relay-rsvp") as the bytes 03 02, as go and js write it.</summary>
    public static ReadOnlySpan<byte> PayloadType => PayloadTypeBytes;

    /// <summary>The relay that grants the reservation (and signs the voucher).</summary>
    public PeerId Relay { get; }

    /// <summary>The reserving peer.</summary>
    public PeerId Peer { get; }

    /// <summary>Expiry as UTC unix time in seconds.</summary>
    public ulong Expiration { get; }

    /// <summary>The Voucher protobuf.</summary>
    public byte[] ToProtobuf()
    {
        using var w = new ProtoWriter(96);
        w.WriteBytes(1, Relay.Bytes.Span);
        w.WriteBytes(2, Peer.Bytes.Span);
        w.WriteVarint(3, Expiration);
        return w.ToArray();
    }

    /// <summary>
    /// Decodes a Voucher protobuf. Throws <see cref="ProtocolViolationException"/> ("relay") when malformed, larger
    /// than <see cref="RelayProtocol.MaxMessageLength"/> or missing a required field.
    /// </summary>
    public static ReservationVoucher FromProtobuf(ReadOnlySpan<byte> data)
    {
        if (data.Length > RelayProtocol.MaxMessageLength)
        {
            throw new ProtocolViolationException(RelayProtocol.Codec, $"voucher of {data.Length} bytes exceeds {RelayProtocol.MaxMessageLength}");
        }

        try
        {
            var r = new ProtoReader(data);
            PeerId? relay = null;
            PeerId? peer = null;
            ulong? expiration = null;
            while (r.TryReadTag(out int field, out WireType wire))
            {
                switch (field)
                {
                    case 1 when wire == WireType.LengthDelimited:
                        relay = PeerId.FromBytes(r.ReadBytes());
                        break;
                    case 2 when wire == WireType.LengthDelimited:
                        peer = PeerId.FromBytes(r.ReadBytes());
                        break;
                    case 3 when wire == WireType.Varint:
                        expiration = r.ReadVarint();
                        break;
                    default:
                        r.Skip(wire);
                        break;
                }
            }

            if (relay is null || peer is null || expiration is not ulong exp)
            {
                throw new ProtocolViolationException(RelayProtocol.Codec, "voucher lacks its relay, peer or expiration");
            }

            return new ReservationVoucher(relay, peer, exp);
        }
        catch (ProtocolViolationException e) when (e.Protocol != RelayProtocol.Codec)
        {
            throw new ProtocolViolationException(RelayProtocol.Codec, "malformed voucher: " + e.Message, e);
        }
    }

    /// <summary>Signs the voucher with the relay's key (which must belong to <see cref="Relay"/>).</summary>
    public SignedEnvelope Seal(Ed25519PrivateKey relayKey)
    {
        ArgumentNullException.ThrowIfNull(relayKey);
        if (!relayKey.PeerId.Equals(Relay))
        {
            throw new ArgumentException("The key does not belong to the voucher's relay.", nameof(relayKey));
        }

        return SignedEnvelope.Seal(relayKey, Domain, PayloadTypeBytes, ToProtobuf());
    }

    /// <summary>The envelope bytes for <see cref="RelayReservation.Voucher"/>: <see cref="Seal"/> then serialize.</summary>
    public byte[] SealToBytes(Ed25519PrivateKey relayKey) => Seal(relayKey).ToProtobuf();

    /// <summary>
    /// The voucher inside an opened envelope; checks the payload type and that the envelope's signer is the
    /// voucher's relay. Throws <see cref="ProtocolViolationException"/> ("relay").
    /// </summary>
    public static ReservationVoucher FromEnvelope(SignedEnvelope envelope)
    {
        ArgumentNullException.ThrowIfNull(envelope);
        if (!envelope.PayloadType.Span.SequenceEqual(PayloadTypeBytes))
        {
            throw new ProtocolViolationException(RelayProtocol.Codec, "envelope payload type is not a reservation voucher");
        }

        ReservationVoucher voucher = FromProtobuf(envelope.Payload.Span);
        if (!voucher.Relay.Matches(envelope.PublicKey))
        {
            throw new ProtocolViolationException(RelayProtocol.Codec, "voucher's relay is not the envelope's signer");
        }

        return voucher;
    }

    /// <summary>
    /// Opens a voucher envelope (signature checked under <see cref="Domain"/>) and decodes it. Throws
    /// <see cref="ProtocolViolationException"/> ("relay") when malformed, badly signed or not signed by the relay.
    /// Callers should also check <see cref="Relay"/> is the relay they reserved with and <see cref="Peer"/> is themselves.
    /// </summary>
    public static ReservationVoucher Open(ReadOnlySpan<byte> envelopeBytes)
    {
        SignedEnvelope envelope;
        try
        {
            envelope = SignedEnvelope.Open(envelopeBytes, Domain);
        }
        catch (ProtocolViolationException e)
        {
            throw new ProtocolViolationException(RelayProtocol.Codec, e.Message, e);
        }

        return FromEnvelope(envelope);
    }
}
