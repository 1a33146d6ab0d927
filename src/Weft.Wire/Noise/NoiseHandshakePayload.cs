using System.Text;
using Weft.Wire.Protobuf;

namespace Weft.Wire.Noise;

/// <summary>
/// The libp2p <c>NoiseHandshakePayload</c> carried in handshake messages 2 and 3:
/// <c>identity_key = 1</c> (a serialized libp2p PublicKey), <c>identity_sig = 2</c> (signature over
/// <see cref="StaticKeySignaturePrefix"/> ‖ the sender's static X25519 key) and <c>extensions = 4</c>.
/// </summary>
public sealed class NoiseHandshakePayload
{
    public const string StaticKeySignaturePrefix = "noise-libp2p-static-key:";

    /// <summary>Largest serialized identity key accepted (an 8192-bit RSA key is about 1.1 KB).</summary>
    public const int MaxIdentityKeyLength = Weft.Wire.Identity.PublicKey.MaxProtobufLength;

    /// <summary>Largest identity signature accepted (an 8192-bit RSA signature is 1 KB).</summary>
    public const int MaxIdentitySignatureLength = 2048;

    private const int FieldIdentityKey = 1;
    private const int FieldIdentitySig = 2;
    private const int FieldExtensions = 4;

    public required byte[] IdentityKey { get; init; }

    public required byte[] IdentitySignature { get; init; }

    /// <summary>Null when the sender included no extensions field.</summary>
    public NoiseExtensions? Extensions { get; init; }

    /// <summary>The bytes an identity key signs to vouch for a static Noise key.</summary>
    public static byte[] StaticKeySignedData(ReadOnlySpan<byte> staticPublicKey)
    {
        var prefixLength = StaticKeySignaturePrefix.Length;
        var data = new byte[prefixLength + staticPublicKey.Length];
        Encoding.ASCII.GetBytes(StaticKeySignaturePrefix, data);
        staticPublicKey.CopyTo(data.AsSpan(prefixLength));
        return data;
    }

    public byte[] ToProtobuf()
    {
        using var w = new ProtoWriter();
        w.WriteBytes(FieldIdentityKey, IdentityKey);
        w.WriteBytes(FieldIdentitySig, IdentitySignature);
        if (Extensions is not null) w.WriteBytes(FieldExtensions, Extensions.ToProtobuf());
        return w.ToArray();
    }

    /// <summary>
    /// Parses a payload; unknown fields are skipped. A missing key or signature, or malformed protobuf, throws
    /// <see cref="ProtocolViolationException"/> for protocol "noise".
    /// </summary>
    public static NoiseHandshakePayload FromProtobuf(ReadOnlySpan<byte> bytes)
    {
        try
        {
            return Parse(bytes);
        }
        catch (ProtocolViolationException e) when (e.Protocol != "noise")
        {
            throw new ProtocolViolationException("noise", $"malformed handshake payload: {e.Message}", e);
        }
    }

    private static NoiseHandshakePayload Parse(ReadOnlySpan<byte> bytes)
    {
        byte[]? key = null, sig = null;
        NoiseExtensions? extensions = null;
        var r = new ProtoReader(bytes);
        while (r.TryReadTag(out var field, out var type))
        {
            switch (field)
            {
                case FieldIdentityKey:
                    key = ReadBounded(ref r, type, MaxIdentityKeyLength, "identity_key");
                    break;
                case FieldIdentitySig:
                    sig = ReadBounded(ref r, type, MaxIdentitySignatureLength, "identity_sig");
                    break;
                case FieldExtensions:
                    ExpectLengthDelimited(type, "extensions");
                    extensions = NoiseExtensions.FromProtobuf(r.ReadBytes());
                    break;
                default:
                    r.Skip(type);
                    break;
            }
        }
        if (key is null || key.Length == 0) throw new ProtocolViolationException("noise", "handshake payload has no identity_key");
        if (sig is null || sig.Length == 0) throw new ProtocolViolationException("noise", "handshake payload has no identity_sig");
        return new NoiseHandshakePayload { IdentityKey = key, IdentitySignature = sig, Extensions = extensions };
    }

    private static byte[] ReadBounded(ref ProtoReader r, WireType type, int max, string name)
    {
        ExpectLengthDelimited(type, name);
        var value = r.ReadBytes();
        if (value.Length > max) throw new ProtocolViolationException("noise", $"handshake payload {name} of {value.Length} bytes exceeds {max}");
        return value.ToArray();
    }

    internal static void ExpectLengthDelimited(WireType type, string name)
    {
        if (type != WireType.LengthDelimited)
            throw new ProtocolViolationException("noise", $"handshake payload field {name} has wire type {type}, expected length-delimited");
    }
}

/// <summary>
/// <c>NoiseExtensions</c>: <c>webtransport_certhashes = 1</c> (repeated bytes) and <c>stream_muxers = 2</c>
/// (repeated string, in the sender's order of preference).
/// </summary>
public sealed class NoiseExtensions
{
    /// <summary>Most entries accepted in each repeated field.</summary>
    public const int MaxEntries = 32;

    /// <summary>Longest muxer protocol id accepted, in bytes.</summary>
    public const int MaxMuxerIdLength = 256;

    /// <summary>Longest certificate hash (a multihash) accepted, in bytes.</summary>
    public const int MaxCertHashLength = 256;

    private const int FieldCertHashes = 1;
    private const int FieldStreamMuxers = 2;

    public IReadOnlyList<byte[]> WebTransportCertHashes { get; init; } = [];

    public IReadOnlyList<string> StreamMuxers { get; init; } = [];

    public byte[] ToProtobuf()
    {
        using var w = new ProtoWriter();
        foreach (var h in WebTransportCertHashes) w.WriteBytes(FieldCertHashes, h);
        foreach (var m in StreamMuxers) w.WriteString(FieldStreamMuxers, m);
        return w.ToArray();
    }

    public static NoiseExtensions FromProtobuf(ReadOnlySpan<byte> bytes)
    {
        var hashes = new List<byte[]>();
        var muxers = new List<string>();
        var r = new ProtoReader(bytes);
        while (r.TryReadTag(out var field, out var type))
        {
            switch (field)
            {
                case FieldCertHashes:
                {
                    NoiseHandshakePayload.ExpectLengthDelimited(type, "webtransport_certhashes");
                    var h = r.ReadBytes();
                    if (h.Length > MaxCertHashLength) throw new ProtocolViolationException("noise", $"webtransport certificate hash of {h.Length} bytes exceeds {MaxCertHashLength}");
                    if (hashes.Count == MaxEntries) throw new ProtocolViolationException("noise", $"more than {MaxEntries} webtransport certificate hashes");
                    hashes.Add(h.ToArray());
                    break;
                }
                case FieldStreamMuxers:
                {
                    NoiseHandshakePayload.ExpectLengthDelimited(type, "stream_muxers");
                    var m = r.ReadString();
                    if (Encoding.UTF8.GetByteCount(m) > MaxMuxerIdLength) throw new ProtocolViolationException("noise", $"stream muxer id longer than {MaxMuxerIdLength} bytes");
                    if (muxers.Count == MaxEntries) throw new ProtocolViolationException("noise", $"more than {MaxEntries} stream muxers");
                    muxers.Add(m);
                    break;
                }
                default:
                    r.Skip(type);
                    break;
            }
        }
        return new NoiseExtensions { WebTransportCertHashes = hashes, StreamMuxers = muxers };
    }

    /// <summary>
    /// Inlined muxer negotiation (libp2p connections/inlined-muxer-negotiation.md): the first muxer of the
    /// initiator's list that the responder also lists. Null when either list is empty (fall back to
    /// multistream-select). When both lists are non-empty but share nothing the handshake must fail; the
    /// result is then null and <paramref name="disjoint"/> is true.
    /// </summary>
    public static string? SelectMuxer(IReadOnlyList<string> initiator, IReadOnlyList<string> responder, out bool disjoint)
    {
        disjoint = false;
        if (initiator.Count == 0 || responder.Count == 0) return null;
        foreach (var candidate in initiator)
        {
            for (var i = 0; i < responder.Count; i++)
                if (string.Equals(candidate, responder[i], StringComparison.Ordinal)) return candidate;
        }
        disjoint = true;
        return null;
    }
}
