using System.Security.Cryptography;

namespace Weft.Wire.Identity;

/// <summary>
/// An RSA public key: Data is the DER SubjectPublicKeyInfo; signatures are RSASSA-PKCS1-v1_5 with SHA-256.
/// Keys smaller than <see cref="MinBits"/> or larger than <see cref="MaxBits"/> are rejected.
/// </summary>
public sealed class RsaPublicKey : PublicKey
{
    /// <summary>Smallest accepted modulus (same as go-libp2p and js-libp2p).</summary>
    public const int MinBits = 2048;

    /// <summary>Largest accepted modulus.</summary>
    public const int MaxBits = 8192;

    private readonly RSA _rsa;
    private readonly Lock _lock = new();

    private RsaPublicKey(byte[] raw, RSA rsa)
        : base(raw)
    {
        _rsa = rsa;
    }

    /// <inheritdoc />
    public override KeyType Type => KeyType.Rsa;

    /// <summary>Modulus size in bits.</summary>
    public int KeySize => _rsa.KeySize;

    /// <summary>Imports a DER SubjectPublicKeyInfo; ProtocolViolationException ("key") when invalid or out of bounds.</summary>
    public static RsaPublicKey FromRaw(ReadOnlySpan<byte> raw)
    {
        var rsa = RSA.Create();
        try
        {
            rsa.ImportSubjectPublicKeyInfo(raw, out int read);
            if (read != raw.Length)
            {
                throw new ProtocolViolationException(Codec, "trailing bytes after the RSA SubjectPublicKeyInfo");
            }

            if (rsa.KeySize < MinBits || rsa.KeySize > MaxBits)
            {
                throw new ProtocolViolationException(Codec, $"RSA key size {rsa.KeySize} outside {MinBits}..{MaxBits} bits");
            }
        }
        catch (Exception e) when (e is not ProtocolViolationException)
        {
            // CryptographicException for bad DER; PlatformNotSupportedException for curves OpenSSL lacks.
            rsa.Dispose();
            throw new ProtocolViolationException(Codec, "invalid RSA SubjectPublicKeyInfo", e);
        }
        catch (ProtocolViolationException)
        {
            rsa.Dispose();
            throw;
        }

        return new RsaPublicKey(raw.ToArray(), rsa);
    }

    /// <inheritdoc />
    public override bool Verify(ReadOnlySpan<byte> data, ReadOnlySpan<byte> signature)
    {
        lock (_lock)
        {
            try
            {
                return _rsa.VerifyData(data, signature, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
            }
            catch (CryptographicException)
            {
                return false;
            }
        }
    }
}
