using System.Buffers;
using System.Security.Cryptography;
using Org.BouncyCastle.Math.EC.Rfc8032;

namespace Weft.Wire.Identity;

/// <summary>An Ed25519 private key (32-byte seed) with its public key; signs per RFC 8032.</summary>
public sealed class Ed25519PrivateKey
{
    /// <summary>Seed size.</summary>
    public const int SeedLength = 32;

    /// <summary>Largest PrivateKey protobuf accepted.</summary>
    public const int MaxProtobufLength = 1024;

    private readonly byte[] _seed;

    private Ed25519PrivateKey(byte[] seed)
    {
        _seed = seed;
        var pub = new byte[Ed25519PublicKey.KeyLength];
        Ed25519.GeneratePublicKey(_seed, 0, pub, 0);
        PublicKey = Ed25519PublicKey.FromRaw(pub);
    }

    /// <summary>The 32-byte seed (RFC 8032 private key).</summary>
    public ReadOnlySpan<byte> Seed => _seed;

    /// <summary>The matching public key.</summary>
    public Ed25519PublicKey PublicKey { get; }

    /// <summary>The peer ID of <see cref="PublicKey"/>.</summary>
    public PeerId PeerId => PublicKey.ToPeerId();

    /// <summary>A fresh key from the system CSPRNG.</summary>
    public static Ed25519PrivateKey Generate()
    {
        var seed = new byte[SeedLength];
        RandomNumberGenerator.Fill(seed);
        return new Ed25519PrivateKey(seed);
    }

    /// <summary>The key with the given 32-byte seed.</summary>
    public static Ed25519PrivateKey FromSeed(ReadOnlySpan<byte> seed32)
    {
        if (seed32.Length != SeedLength)
        {
            throw new ArgumentException($"Ed25519 seed must be {SeedLength} bytes.", nameof(seed32));
        }

        return new Ed25519PrivateKey(seed32.ToArray());
    }

    /// <summary>Signs <paramref name="data"/>; returns the 64-byte signature.</summary>
    public byte[] Sign(ReadOnlySpan<byte> data)
    {
        var signature = new byte[Ed25519PublicKey.SignatureLength];
        Sign(data, signature);
        return signature;
    }

    /// <summary>Signs <paramref name="data"/> into <paramref name="signature64"/>.</summary>
    public void Sign(ReadOnlySpan<byte> data, Span<byte> signature64)
    {
        if (signature64.Length < Ed25519PublicKey.SignatureLength)
        {
            throw new ArgumentException("Signature buffer must hold 64 bytes.", nameof(signature64));
        }

        byte[] message = ArrayPool<byte>.Shared.Rent(Math.Max(data.Length, 1));
        byte[] sig = ArrayPool<byte>.Shared.Rent(Ed25519PublicKey.SignatureLength);
        try
        {
            data.CopyTo(message);
            byte[] pub = PublicKeyBytes();
            Ed25519.Sign(_seed, 0, pub, 0, message, 0, data.Length, sig, 0);
            sig.AsSpan(0, Ed25519PublicKey.SignatureLength).CopyTo(signature64);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(message, clearArray: true);
            ArrayPool<byte>.Shared.Return(sig);
        }
    }

    /// <summary>
    /// The libp2p PrivateKey protobuf: Type = Ed25519, Data = seed ‖ public key (64 bytes), as go and js
    /// write it.
    /// </summary>
    public byte[] ToProtobuf()
    {
        Span<byte> data = stackalloc byte[SeedLength + Ed25519PublicKey.KeyLength];
        _seed.CopyTo(data);
        PublicKey.Raw.Span.CopyTo(data[SeedLength..]);
        byte[] result = Identity.PublicKey.EncodeProtobuf(KeyType.Ed25519, data);
        CryptographicOperations.ZeroMemory(data);
        return result;
    }

    /// <summary>
    /// Reads a PrivateKey protobuf of type Ed25519 whose Data is seed ‖ public (64 bytes; the public half must
    /// match), the legacy seed ‖ public ‖ public (96 bytes) or a bare 32-byte seed. Throws
    /// <see cref="ProtocolViolationException"/> ("key") otherwise.
    /// </summary>
    public static Ed25519PrivateKey FromProtobuf(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length > MaxProtobufLength)
        {
            throw new ProtocolViolationException(Identity.PublicKey.Codec, "private key protobuf too long");
        }

        Identity.PublicKey.ReadKeyProtobuf(bytes, out ulong type, out ReadOnlySpan<byte> data);
        if (type != (ulong)KeyType.Ed25519)
        {
            throw new ProtocolViolationException(Identity.PublicKey.Codec, $"private key type {type} is not Ed25519");
        }

        const int pubLength = Ed25519PublicKey.KeyLength;
        if (data.Length is not (SeedLength or SeedLength + pubLength or SeedLength + (2 * pubLength)))
        {
            throw new ProtocolViolationException(Identity.PublicKey.Codec, $"Ed25519 private key data has invalid length {data.Length}");
        }

        var key = new Ed25519PrivateKey(data[..SeedLength].ToArray());
        for (int offset = SeedLength; offset < data.Length; offset += pubLength)
        {
            if (!data.Slice(offset, pubLength).SequenceEqual(key.PublicKey.Raw.Span))
            {
                throw new ProtocolViolationException(Identity.PublicKey.Codec, "Ed25519 private key's public half does not match its seed");
            }
        }

        return key;
    }

    private byte[] PublicKeyBytes()
    {
        // Raw of Ed25519PublicKey is backed by its own array; MemoryMarshal keeps us from copying it.
        return System.Runtime.InteropServices.MemoryMarshal.TryGetArray(PublicKey.Raw, out ArraySegment<byte> segment)
            && segment.Offset == 0 && segment.Array!.Length == Ed25519PublicKey.KeyLength
            ? segment.Array
            : PublicKey.Raw.ToArray();
    }
}
