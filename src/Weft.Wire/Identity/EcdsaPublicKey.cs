using System.Security.Cryptography;

namespace Weft.Wire.Identity;

/// <summary>
/// An ECDSA public key (NIST P-256, P-384 or P-521): Data is the DER SubjectPublicKeyInfo; signatures are
/// DER-encoded ECDSA over SHA-256(data).
/// </summary>
public sealed class EcdsaPublicKey : PublicKey
{
    private readonly ECDsa _ecdsa;
    private readonly Lock _lock = new();

    private EcdsaPublicKey(byte[] raw, ECDsa ecdsa)
        : base(raw)
    {
        _ecdsa = ecdsa;
    }

    /// <inheritdoc />
    public override KeyType Type => KeyType.Ecdsa;

    /// <summary>Imports a DER SubjectPublicKeyInfo; ProtocolViolationException ("key") when invalid.</summary>
    public static EcdsaPublicKey FromRaw(ReadOnlySpan<byte> raw)
    {
        var ecdsa = ECDsa.Create();
        try
        {
            ecdsa.ImportSubjectPublicKeyInfo(raw, out int read);
            if (read != raw.Length)
            {
                throw new ProtocolViolationException(Codec, "trailing bytes after the ECDSA SubjectPublicKeyInfo");
            }

            if (ecdsa.KeySize is not (256 or 384 or 521))
            {
                throw new ProtocolViolationException(Codec, $"unsupported ECDSA curve size {ecdsa.KeySize}");
            }
        }
        catch (Exception e) when (e is not ProtocolViolationException)
        {
            // CryptographicException for bad DER; PlatformNotSupportedException for curves OpenSSL lacks.
            ecdsa.Dispose();
            throw new ProtocolViolationException(Codec, "invalid ECDSA SubjectPublicKeyInfo", e);
        }
        catch (ProtocolViolationException)
        {
            ecdsa.Dispose();
            throw;
        }

        return new EcdsaPublicKey(raw.ToArray(), ecdsa);
    }

    /// <inheritdoc />
    public override bool Verify(ReadOnlySpan<byte> data, ReadOnlySpan<byte> signature)
    {
        lock (_lock)
        {
            try
            {
                return _ecdsa.VerifyData(data, signature, HashAlgorithmName.SHA256, DSASignatureFormat.Rfc3279DerSequence);
            }
            catch (CryptographicException)
            {
                return false;
            }
        }
    }
}
