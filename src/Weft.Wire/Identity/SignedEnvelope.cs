using System.Text;
using Weft.Wire.Multiformats;
using Weft.Wire.Protobuf;

namespace Weft.Wire.Identity;

/// <summary>
/// A libp2p signed envelope (RFC 0002): a payload with its type, signed by a key under a domain string.
/// The signature covers varint-length-prefixed domain, payload type and payload.
/// </summary>
public sealed class SignedEnvelope
{
    /// <summary>Largest serialized envelope accepted.</summary>
    public const int MaxLength = 64 * 1024;

    /// <summary>Longest domain string in bytes.</summary>
    public const int MaxDomainLength = 256;

    private const string Codec = "envelope";

    private readonly byte[] _payloadType;
    private readonly byte[] _payload;
    private readonly byte[] _signature;

    private SignedEnvelope(PublicKey publicKey, byte[] payloadType, byte[] payload, byte[] signature)
    {
        PublicKey = publicKey;
        _payloadType = payloadType;
        _payload = payload;
        _signature = signature;
    }

    /// <summary>The signer's public key.</summary>
    public PublicKey PublicKey { get; }

    /// <summary>The payload type (usually a multicodec as varint bytes).</summary>
    public ReadOnlyMemory<byte> PayloadType => _payloadType;

    /// <summary>The signed payload.</summary>
    public ReadOnlyMemory<byte> Payload => _payload;

    /// <summary>The signature.</summary>
    public ReadOnlyMemory<byte> Signature => _signature;

    /// <summary>The peer ID of the signer.</summary>
    public PeerId PeerId => PublicKey.ToPeerId();

    /// <summary>Signs <paramref name="payload"/> under <paramref name="domain"/> with <paramref name="key"/>.</summary>
    public static SignedEnvelope Seal(Ed25519PrivateKey key, string domain, ReadOnlySpan<byte> payloadType, ReadOnlySpan<byte> payload)
    {
        ArgumentNullException.ThrowIfNull(key);
        ArgumentException.ThrowIfNullOrEmpty(domain);
        byte[] unsigned = BuildSignedData(domain, payloadType, payload);
        byte[] signature = key.Sign(unsigned);
        return new SignedEnvelope(key.PublicKey, payloadType.ToArray(), payload.ToArray(), signature);
    }

    /// <summary>The Envelope protobuf (public_key = 1, payload_type = 2, payload = 3, signature = 5).</summary>
    public byte[] ToProtobuf()
    {
        byte[] key = PublicKey.ProtobufBytes();
        using var w = new ProtoWriter(key.Length + _payloadType.Length + _payload.Length + _signature.Length + 32);
        w.WriteBytes(1, key);
        w.WriteBytes(2, _payloadType);
        w.WriteBytes(3, _payload);
        w.WriteBytes(5, _signature);
        return w.ToArray();
    }

    /// <summary>
    /// Decodes an Envelope protobuf and verifies its signature under <paramref name="expectedDomain"/>.
    /// Throws <see cref="ProtocolViolationException"/> ("envelope") when malformed, too large or badly signed.
    /// </summary>
    public static SignedEnvelope Open(ReadOnlySpan<byte> bytes, string expectedDomain)
    {
        ArgumentException.ThrowIfNullOrEmpty(expectedDomain);
        if (bytes.Length > MaxLength)
        {
            throw new ProtocolViolationException(Codec, $"envelope longer than {MaxLength} bytes");
        }

        ReadOnlySpan<byte> keyBytes = default;
        ReadOnlySpan<byte> payloadType = default;
        ReadOnlySpan<byte> payload = default;
        ReadOnlySpan<byte> signature = default;
        bool hasKey = false;
        bool hasSignature = false;
        PublicKey key;
        try
        {
            var reader = new ProtoReader(bytes);
            while (reader.TryReadTag(out int field, out WireType wire))
            {
                if (wire != WireType.LengthDelimited || field is not (1 or 2 or 3 or 5))
                {
                    reader.Skip(wire);
                    continue;
                }

                ReadOnlySpan<byte> value = reader.ReadBytes();
                switch (field)
                {
                    case 1:
                        keyBytes = value;
                        hasKey = true;
                        break;
                    case 2:
                        payloadType = value;
                        break;
                    case 3:
                        payload = value;
                        break;
                    default:
                        signature = value;
                        hasSignature = true;
                        break;
                }
            }

            if (!hasKey || !hasSignature)
            {
                throw new ProtocolViolationException(Codec, "envelope lacks its public key or signature");
            }

            key = PublicKey.FromProtobuf(keyBytes);
        }
        catch (ProtocolViolationException e) when (e.Protocol != Codec)
        {
            throw new ProtocolViolationException(Codec, "malformed envelope: " + e.Message, e);
        }

        byte[] unsigned = BuildSignedData(expectedDomain, payloadType, payload);
        if (!key.Verify(unsigned, signature))
        {
            throw new ProtocolViolationException(Codec, "invalid signature (wrong key, domain or tampered payload)");
        }

        return new SignedEnvelope(key, payloadType.ToArray(), payload.ToArray(), signature.ToArray());
    }

    /// <summary>The bytes that are signed: varint-prefixed domain, payload type and payload.</summary>
    internal static byte[] BuildSignedData(string domain, ReadOnlySpan<byte> payloadType, ReadOnlySpan<byte> payload)
    {
        int domainLength = Encoding.UTF8.GetByteCount(domain);
        if (domainLength > MaxDomainLength)
        {
            throw new ArgumentException($"Domain longer than {MaxDomainLength} bytes.", nameof(domain));
        }

        int size = Varint.SizeOf((ulong)domainLength) + domainLength
            + Varint.SizeOf((ulong)payloadType.Length) + payloadType.Length
            + Varint.SizeOf((ulong)payload.Length) + payload.Length;
        var buffer = new byte[size];
        Span<byte> span = buffer;
        int pos = Varint.Write(span, (ulong)domainLength);
        pos += Encoding.UTF8.GetBytes(domain, span[pos..]);
        pos += Varint.Write(span[pos..], (ulong)payloadType.Length);
        payloadType.CopyTo(span[pos..]);
        pos += payloadType.Length;
        pos += Varint.Write(span[pos..], (ulong)payload.Length);
        payload.CopyTo(span[pos..]);
        return buffer;
    }
}
