using Weft.Wire.Protobuf;

namespace Weft.Wire.Identity;

/// <summary>
/// A libp2p public key: a <see cref="KeyType"/> plus the type-specific encoding <see cref="Raw"/> (the
/// protobuf Data field). Equality is by type and raw bytes.
/// </summary>
public abstract class PublicKey : IEquatable<PublicKey>
{
    /// <summary>Largest serialized PublicKey protobuf accepted (an 8192-bit RSA key needs about 1.1 KiB).</summary>
    public const int MaxProtobufLength = 8 * 1024;

    internal const string Codec = "key";

    private readonly byte[] _raw;
    private byte[]? _protobuf;
    private PeerId? _peerId;

    private protected PublicKey(byte[] raw)
    {
        _raw = raw;
    }

    /// <summary>The key type.</summary>
    public abstract KeyType Type { get; }

    /// <summary>The key's Data field as it appears in the protobuf.</summary>
    public ReadOnlyMemory<byte> Raw => _raw;

    private protected byte[] RawArray => _raw;

    /// <summary>Verifies <paramref name="signature"/> over <paramref name="data"/> with the rules of this key type.</summary>
    public abstract bool Verify(ReadOnlySpan<byte> data, ReadOnlySpan<byte> signature);

    /// <summary>The deterministic PublicKey protobuf (field 1 type, field 2 data). Returns a new copy.</summary>
    public byte[] ToProtobuf() => (byte[])ProtobufBytes().Clone();

    /// <summary>The cached protobuf encoding (never hand this array out).</summary>
    internal byte[] ProtobufBytes() => _protobuf ??= EncodeProtobuf(Type, _raw);

    /// <summary>The peer ID derived from this key.</summary>
    public PeerId ToPeerId() => _peerId ??= PeerId.FromPublicKey(this);

    /// <summary>
    /// Decodes a PublicKey protobuf. Throws <see cref="ProtocolViolationException"/> ("key") on malformed
    /// input, missing fields, oversize input, an unsupported type or an invalid key.
    /// </summary>
    public static PublicKey FromProtobuf(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length > MaxProtobufLength)
        {
            throw new ProtocolViolationException(Codec, $"public key protobuf longer than {MaxProtobufLength} bytes");
        }

        ReadKeyProtobuf(bytes, out ulong type, out ReadOnlySpan<byte> data);
        return type switch
        {
            (ulong)KeyType.Ed25519 => Ed25519PublicKey.FromRaw(data),
            (ulong)KeyType.Secp256k1 => Secp256k1PublicKey.FromRaw(data),
            (ulong)KeyType.Rsa => RsaPublicKey.FromRaw(data),
            (ulong)KeyType.Ecdsa => EcdsaPublicKey.FromRaw(data),
            _ => throw new ProtocolViolationException(Codec, $"unsupported key type {type}"),
        };
    }

    /// <summary>Decodes a PublicKey protobuf; false instead of an exception.</summary>
    public static bool TryFromProtobuf(ReadOnlySpan<byte> bytes, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out PublicKey? key)
    {
        try
        {
            key = FromProtobuf(bytes);
            return true;
        }
        catch (ProtocolViolationException)
        {
            key = null;
            return false;
        }
    }

    /// <summary>Reads the two fields of a PublicKey or PrivateKey protobuf (unknown fields are skipped).</summary>
    internal static void ReadKeyProtobuf(ReadOnlySpan<byte> bytes, out ulong type, out ReadOnlySpan<byte> data)
    {
        bool hasType = false;
        bool hasData = false;
        type = 0;
        data = default;
        try
        {
            var reader = new ProtoReader(bytes);
            while (reader.TryReadTag(out int field, out WireType wire))
            {
                if (field == 1 && wire == WireType.Varint)
                {
                    type = reader.ReadVarint();
                    hasType = true;
                }
                else if (field == 2 && wire == WireType.LengthDelimited)
                {
                    data = reader.ReadBytes();
                    hasData = true;
                }
                else
                {
                    reader.Skip(wire);
                }
            }
        }
        catch (ProtocolViolationException e)
        {
            throw new ProtocolViolationException(Codec, "malformed key protobuf: " + e.Detail, e);
        }

        if (!hasType || !hasData)
        {
            throw new ProtocolViolationException(Codec, "key protobuf lacks its type or data field");
        }
    }

    internal static byte[] EncodeProtobuf(KeyType type, ReadOnlySpan<byte> data)
    {
        using var writer = new ProtoWriter(data.Length + 16);
        writer.WriteVarint(1, (ulong)type);
        writer.WriteBytes(2, data);
        return writer.ToArray();
    }

    /// <inheritdoc />
    public bool Equals(PublicKey? other) =>
        other is not null && (ReferenceEquals(this, other) || (other.Type == Type && other._raw.AsSpan().SequenceEqual(_raw)));

    /// <inheritdoc />
    public override bool Equals(object? obj) => Equals(obj as PublicKey);

    /// <inheritdoc />
    public override int GetHashCode()
    {
        var hash = default(HashCode);
        hash.Add(Type);
        hash.AddBytes(_raw);
        return hash.ToHashCode();
    }

    /// <inheritdoc />
    public override string ToString() => $"{Type} {ToPeerId()}";
}
