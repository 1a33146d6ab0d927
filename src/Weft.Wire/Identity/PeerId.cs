using System.Diagnostics.CodeAnalysis;
using Weft.Wire.Multiformats;

namespace Weft.Wire.Identity;

/// <summary>
/// A libp2p peer ID: the multihash of a public key's protobuf (identity multihash when the protobuf is at
/// most <see cref="MaxInlineKeyLength"/> bytes, else sha2-256). Equality is by bytes.
/// </summary>
public sealed class PeerId : IEquatable<PeerId>
{
    /// <summary>Public keys up to this protobuf size are inlined (identity multihash).</summary>
    public const int MaxInlineKeyLength = 42;

    /// <summary>Longest peer ID multihash accepted (identity of 42 bytes plus 2 header bytes).</summary>
    public const int MaxLength = MaxInlineKeyLength + 2;

    /// <summary>Longest text form accepted by <see cref="Parse"/>.</summary>
    public const int MaxTextLength = 128;

    /// <summary>Multicodec of libp2p public keys, used in CID peer IDs.</summary>
    public const ulong Libp2pKeyCodec = 0x72;

    private const string Codec = "peerid";

    private readonly byte[] _bytes;
    private readonly int _hash;
    private string? _text;

    private PeerId(byte[] bytes)
    {
        _bytes = bytes;
        var hash = default(HashCode);
        hash.AddBytes(bytes);
        _hash = hash.ToHashCode();
    }

    /// <summary>The multihash.</summary>
    public ReadOnlyMemory<byte> Bytes => _bytes;

    /// <summary>The peer ID of <paramref name="key"/>.</summary>
    public static PeerId FromPublicKey(PublicKey key)
    {
        ArgumentNullException.ThrowIfNull(key);
        byte[] proto = key.ProtobufBytes();
        return new PeerId(proto.Length <= MaxInlineKeyLength
            ? Multihash.Encode(Multihash.Identity, proto)
            : Multihash.Sha256(proto));
    }

    /// <summary>
    /// Validates and wraps a binary peer ID: a sha2-256 multihash (32-byte digest) or an identity multihash
    /// of at most <see cref="MaxInlineKeyLength"/> bytes. Throws <see cref="ProtocolViolationException"/> ("peerid").
    /// </summary>
    public static PeerId FromBytes(ReadOnlySpan<byte> multihash)
    {
        if (!IsValid(multihash, out string? reason))
        {
            throw new ProtocolViolationException(Codec, reason);
        }

        return new PeerId(multihash.ToArray());
    }

    /// <summary>Like <see cref="FromBytes"/> but false instead of an exception.</summary>
    public static bool TryFromBytes(ReadOnlySpan<byte> multihash, [NotNullWhen(true)] out PeerId? peerId)
    {
        peerId = IsValid(multihash, out _) ? new PeerId(multihash.ToArray()) : null;
        return peerId is not null;
    }

    /// <summary>
    /// Parses a base58btc multihash ("12D3Koo…", "Qm…", "16U…") or a CIDv1 with the libp2p-key codec in
    /// multibase base32 ("bafz…") or base58btc ("z…"). Throws <see cref="FormatException"/>.
    /// </summary>
    public static PeerId Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (!TryParse(text, out PeerId? id, out string? error))
        {
            throw new FormatException($"Invalid peer ID '{Truncate(text)}': {error}.");
        }

        return id;
    }

    /// <summary>Like <see cref="Parse"/> but false instead of an exception.</summary>
    public static bool TryParse(string? text, [NotNullWhen(true)] out PeerId? peerId) => TryParse(text, out peerId, out _);

    private static bool TryParse(string? text, [NotNullWhen(true)] out PeerId? peerId, [NotNullWhen(false)] out string? error)
    {
        peerId = null;
        if (string.IsNullOrEmpty(text))
        {
            error = "empty";
            return false;
        }

        if (text.Length > MaxTextLength)
        {
            error = $"longer than {MaxTextLength} characters";
            return false;
        }

        byte[]? decoded;
        bool isCid;
        if (text[0] == '1' || text.StartsWith("Qm", StringComparison.Ordinal))
        {
            isCid = false;
            if (!Base58.TryDecode(text, out decoded))
            {
                error = "not valid base58btc";
                return false;
            }
        }
        else if (text[0] is 'b' or 'B')
        {
            isCid = true;
            if (!Base32.TryDecode(text.AsSpan(1), out decoded))
            {
                error = "not valid multibase base32";
                return false;
            }
        }
        else if (text[0] == 'z')
        {
            isCid = true;
            if (!Base58.TryDecode(text.AsSpan(1), out decoded))
            {
                error = "not valid multibase base58btc";
                return false;
            }
        }
        else
        {
            error = "neither a base58btc multihash nor a multibase CID";
            return false;
        }

        ReadOnlySpan<byte> mh = decoded;
        if (isCid)
        {
            try
            {
                if (!Varint.TryRead(mh, out ulong version, out int n1)
                    || !Varint.TryRead(mh[n1..], out ulong codec, out int n2))
                {
                    error = "truncated CID";
                    return false;
                }

                if (version != 1)
                {
                    error = $"CID version {version} is not 1";
                    return false;
                }

                if (codec != Libp2pKeyCodec)
                {
                    error = $"CID codec 0x{codec:x} is not libp2p-key (0x72)";
                    return false;
                }

                mh = mh[(n1 + n2)..];
            }
            catch (ProtocolViolationException e)
            {
                error = "malformed CID: " + e.Detail;
                return false;
            }
        }

        if (!IsValid(mh, out error))
        {
            return false;
        }

        peerId = new PeerId(mh.ToArray());
        return true;
    }

    /// <summary>The base58btc text form (the usual "12D3Koo…"/"Qm…").</summary>
    public override string ToString() => _text ??= Base58.Encode(_bytes);

    /// <summary>The CIDv1 text form: multibase base32, codec libp2p-key ("bafz…").</summary>
    public string ToCidString()
    {
        int prefix = Varint.SizeOf(1) + Varint.SizeOf(Libp2pKeyCodec);
        Span<byte> cid = stackalloc byte[prefix + _bytes.Length];
        int n = Varint.Write(cid, 1);
        Varint.Write(cid[n..], Libp2pKeyCodec);
        _bytes.CopyTo(cid[prefix..]);
        return "b" + Base32.Encode(cid);
    }

    /// <summary>The public key inlined in an identity-multihash peer ID, or null (sha2-256 IDs, bad keys).</summary>
    public PublicKey? TryExtractPublicKey()
    {
        Multihash.TryDecode(_bytes, out ulong code, out ReadOnlySpan<byte> digest);
        if (code != Multihash.Identity)
        {
            return null;
        }

        return PublicKey.TryFromProtobuf(digest, out PublicKey? key) ? key : null;
    }

    /// <summary>True when <paramref name="key"/> is the key this peer ID was derived from.</summary>
    public bool Matches(PublicKey key)
    {
        ArgumentNullException.ThrowIfNull(key);
        return key.ToPeerId().Equals(this);
    }

    /// <inheritdoc />
    public bool Equals(PeerId? other) =>
        other is not null && (ReferenceEquals(this, other) || (other._hash == _hash && other._bytes.AsSpan().SequenceEqual(_bytes)));

    /// <inheritdoc />
    public override bool Equals(object? obj) => Equals(obj as PeerId);

    /// <inheritdoc />
    public override int GetHashCode() => _hash;

    public static bool operator ==(PeerId? left, PeerId? right) => left is null ? right is null : left.Equals(right);

    public static bool operator !=(PeerId? left, PeerId? right) => !(left == right);

    private static bool IsValid(ReadOnlySpan<byte> multihash, [NotNullWhen(false)] out string? reason)
    {
        if (multihash.Length > MaxLength)
        {
            reason = $"peer ID longer than {MaxLength} bytes";
            return false;
        }

        if (!Multihash.TryDecode(multihash, out ulong code, out ReadOnlySpan<byte> digest))
        {
            reason = "malformed multihash";
            return false;
        }

        switch (code)
        {
            case Multihash.Identity when digest.Length <= MaxInlineKeyLength:
            case Multihash.Sha2_256 when digest.Length == 32:
                reason = null;
                return true;
            case Multihash.Identity:
                reason = $"identity multihash longer than {MaxInlineKeyLength} bytes";
                return false;
            case Multihash.Sha2_256:
                reason = "sha2-256 digest is not 32 bytes";
                return false;
            default:
                reason = $"unsupported multihash code 0x{code:x}";
                return false;
        }
    }

    private static string Truncate(string text) => text.Length <= 64 ? text : text[..64] + "…";
}
