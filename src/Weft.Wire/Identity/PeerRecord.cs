using Weft.Wire.Multiformats;
using Weft.Wire.Protobuf;

namespace Weft.Wire.Identity;

/// <summary>
/// A libp2p peer record (RFC 0003): a peer's ID, a sequence number and its listen addresses, carried in a
/// <see cref="SignedEnvelope"/> with domain <see cref="Domain"/> and payload type <see cref="PayloadType"/>.
/// </summary>
public sealed class PeerRecord
{
    /// <summary>Signature domain of peer records.</summary>
    public const string Domain = "libp2p-peer-record";

    /// <summary>Most addresses accepted in one record.</summary>
    public const int MaxAddresses = 128;

    /// <summary>Largest serialized record accepted.</summary>
    public const int MaxLength = SignedEnvelope.MaxLength;

    private const string Codec = "peer-record";

    private static readonly byte[] PayloadTypeBytes = [0x03, 0x01];

    public PeerRecord(PeerId peerId, ulong seq, IReadOnlyList<Multiaddr> addresses)
    {
        ArgumentNullException.ThrowIfNull(peerId);
        ArgumentNullException.ThrowIfNull(addresses);
        PeerId = peerId;
        Seq = seq;
        Addresses = addresses.ToArray();
    }

    /// <summary>Payload type of peer records: multicodec 0x0301 ("libp2p-peer-record") as varint bytes.</summary>
    public static ReadOnlySpan<byte> PayloadType => PayloadTypeBytes;

    /// <summary>The peer the record describes.</summary>
    public PeerId PeerId { get; }

    /// <summary>Sequence number; newer records have larger values.</summary>
    public ulong Seq { get; }

    /// <summary>The peer's addresses.</summary>
    public IReadOnlyList<Multiaddr> Addresses { get; }

    /// <summary>The PeerRecord protobuf (peer_id = 1, seq = 2, addresses = 3 { multiaddr = 1 }).</summary>
    public byte[] ToProtobuf()
    {
        using var w = new ProtoWriter(128);
        using var nested = new ProtoWriter(64);
        w.WriteBytes(1, PeerId.Bytes.Span);
        w.WriteVarint(2, Seq);
        foreach (Multiaddr address in Addresses)
        {
            nested.Clear();
            nested.WriteBytes(1, address.Bytes.Span);
            w.WriteMessage(3, nested);
        }

        return w.ToArray();
    }

    /// <summary>
    /// Decodes a PeerRecord protobuf. Throws <see cref="ProtocolViolationException"/> ("peer-record") when
    /// malformed, lacking a peer ID, with invalid addresses or too many of them.
    /// </summary>
    public static PeerRecord FromProtobuf(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length > MaxLength)
        {
            throw new ProtocolViolationException(Codec, $"record longer than {MaxLength} bytes");
        }

        try
        {
            PeerId? peer = null;
            ulong seq = 0;
            var addresses = new List<Multiaddr>();
            var reader = new ProtoReader(bytes);
            while (reader.TryReadTag(out int field, out WireType wire))
            {
                switch (field)
                {
                    case 1 when wire == WireType.LengthDelimited:
                        peer = PeerId.FromBytes(reader.ReadBytes());
                        break;
                    case 2 when wire == WireType.Varint:
                        seq = reader.ReadVarint();
                        break;
                    case 3 when wire == WireType.LengthDelimited:
                        if (addresses.Count == MaxAddresses)
                        {
                            throw new ProtocolViolationException(Codec, $"more than {MaxAddresses} addresses");
                        }

                        addresses.Add(ReadAddressInfo(reader.ReadBytes()));
                        break;
                    default:
                        reader.Skip(wire);
                        break;
                }
            }

            if (peer is null)
            {
                throw new ProtocolViolationException(Codec, "record lacks a peer ID");
            }

            return new PeerRecord(peer, seq, addresses);
        }
        catch (ProtocolViolationException e) when (e.Protocol != Codec)
        {
            throw new ProtocolViolationException(Codec, "malformed record: " + e.Message, e);
        }
    }

    /// <summary>Wraps the record in an envelope signed by <paramref name="key"/> (which must be the record's peer).</summary>
    public SignedEnvelope Seal(Ed25519PrivateKey key)
    {
        ArgumentNullException.ThrowIfNull(key);
        if (!key.PeerId.Equals(PeerId))
        {
            throw new ArgumentException("The key does not belong to the record's peer.", nameof(key));
        }

        return SignedEnvelope.Seal(key, Domain, PayloadTypeBytes, ToProtobuf());
    }

    /// <summary>
    /// The record inside an opened envelope; checks the payload type and that the record's peer ID is the
    /// envelope signer's. Throws <see cref="ProtocolViolationException"/> ("peer-record").
    /// </summary>
    public static PeerRecord FromEnvelope(SignedEnvelope envelope)
    {
        ArgumentNullException.ThrowIfNull(envelope);
        if (!envelope.PayloadType.Span.SequenceEqual(PayloadTypeBytes))
        {
            throw new ProtocolViolationException(Codec, "envelope payload type is not a peer record");
        }

        PeerRecord record = FromProtobuf(envelope.Payload.Span);
        if (!record.PeerId.Matches(envelope.PublicKey))
        {
            throw new ProtocolViolationException(Codec, "record's peer ID does not match the envelope's signer");
        }

        return record;
    }

    /// <summary>Opens a signed peer record envelope (<see cref="SignedEnvelope.Open"/> with <see cref="Domain"/>) and decodes it.</summary>
    public static PeerRecord OpenSigned(ReadOnlySpan<byte> envelopeBytes)
    {
        SignedEnvelope envelope;
        try
        {
            envelope = SignedEnvelope.Open(envelopeBytes, Domain);
        }
        catch (ProtocolViolationException e)
        {
            throw new ProtocolViolationException(Codec, e.Message, e);
        }

        return FromEnvelope(envelope);
    }

    private static Multiaddr ReadAddressInfo(ReadOnlySpan<byte> info)
    {
        var reader = new ProtoReader(info);
        Multiaddr? address = null;
        while (reader.TryReadTag(out int field, out WireType wire))
        {
            if (field == 1 && wire == WireType.LengthDelimited)
            {
                address = Multiaddr.FromBytes(reader.ReadBytes());
            }
            else
            {
                reader.Skip(wire);
            }
        }

        return address ?? throw new ProtocolViolationException(Codec, "address entry lacks a multiaddr");
    }
}
