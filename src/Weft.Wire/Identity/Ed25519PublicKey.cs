using System.Buffers;
using Org.BouncyCastle.Math.EC.Rfc8032;

namespace Weft.Wire.Identity;

/// <summary>An Ed25519 public key (32 bytes; RFC 8032 signatures).</summary>
public sealed class Ed25519PublicKey : PublicKey
{
    /// <summary>Public key size.</summary>
    public const int KeyLength = 32;

    /// <summary>Signature size.</summary>
    public const int SignatureLength = 64;

    private Ed25519PublicKey(byte[] raw)
        : base(raw)
    {
    }

    /// <inheritdoc />
    public override KeyType Type => KeyType.Ed25519;

    /// <summary>Wraps 32 raw public key bytes; ProtocolViolationException ("key") on a wrong length.</summary>
    public static Ed25519PublicKey FromRaw(ReadOnlySpan<byte> raw)
    {
        if (raw.Length != KeyLength)
        {
            throw new ProtocolViolationException(Codec, $"Ed25519 public key must be {KeyLength} bytes, got {raw.Length}");
        }

        return new Ed25519PublicKey(raw.ToArray());
    }

    /// <inheritdoc />
    public override bool Verify(ReadOnlySpan<byte> data, ReadOnlySpan<byte> signature)
    {
        if (signature.Length != SignatureLength)
        {
            return false;
        }

        byte[] sig = ArrayPool<byte>.Shared.Rent(SignatureLength);
        byte[] message = ArrayPool<byte>.Shared.Rent(Math.Max(data.Length, 1));
        try
        {
            signature.CopyTo(sig);
            data.CopyTo(message);
            return Ed25519.Verify(sig, 0, RawArray, 0, message, 0, data.Length);
        }
        catch (ArgumentException)
        {
            return false;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(sig);
            ArrayPool<byte>.Shared.Return(message);
        }
    }
}
