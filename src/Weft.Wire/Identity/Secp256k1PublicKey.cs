using System.Security.Cryptography;
using Org.BouncyCastle.Asn1;
using Org.BouncyCastle.Asn1.Sec;
using Org.BouncyCastle.Asn1.X9;
using Org.BouncyCastle.Crypto.Parameters;
using Org.BouncyCastle.Crypto.Signers;
using ECPoint = Org.BouncyCastle.Math.EC.ECPoint;

namespace Weft.Wire.Identity;

/// <summary>
/// A secp256k1 public key. Data is the 33-byte compressed point (an uncompressed 65-byte point is
/// accepted and re-encoded compressed, like go-libp2p). Signatures are strict DER ECDSA over SHA-256(data)
/// (BER variants such as long-form lengths or padded integers are rejected, like btcec).
/// </summary>
public sealed class Secp256k1PublicKey : PublicKey
{
    /// <summary>Compressed point size.</summary>
    public const int CompressedLength = 33;

    /// <summary>Longest DER signature accepted (two 33-byte integers plus headers).</summary>
    public const int MaxSignatureLength = 72;

    internal static readonly X9ECParameters Curve = SecNamedCurves.GetByName("secp256k1");
    internal static readonly ECDomainParameters Domain = new(Curve.Curve, Curve.G, Curve.N, Curve.H, Curve.GetSeed());

    private readonly ECPublicKeyParameters _parameters;

    private Secp256k1PublicKey(byte[] raw, ECPublicKeyParameters parameters)
        : base(raw)
    {
        _parameters = parameters;
    }

    /// <inheritdoc />
    public override KeyType Type => KeyType.Secp256k1;

    /// <summary>Decodes a SEC1 point; ProtocolViolationException ("key") when it is not a valid curve point.</summary>
    public static Secp256k1PublicKey FromRaw(ReadOnlySpan<byte> raw)
    {
        if (raw.Length != CompressedLength && raw.Length != 65)
        {
            throw new ProtocolViolationException(Codec, $"secp256k1 public key must be 33 or 65 bytes, got {raw.Length}");
        }

        ECPoint point;
        try
        {
            point = Curve.Curve.DecodePoint(raw.ToArray());
            if (point.IsInfinity || !point.IsValid())
            {
                throw new ProtocolViolationException(Codec, "secp256k1 public key is not a valid curve point");
            }
        }
        catch (Exception e) when (e is ArgumentException or ArithmeticException or FormatException or InvalidOperationException)
        {
            throw new ProtocolViolationException(Codec, "secp256k1 public key is not a valid curve point", e);
        }

        point = point.Normalize();
        return new Secp256k1PublicKey(point.GetEncoded(true), new ECPublicKeyParameters(point, Domain));
    }

    /// <inheritdoc />
    public override bool Verify(ReadOnlySpan<byte> data, ReadOnlySpan<byte> signature)
    {
        if (signature.Length is 0 or > MaxSignatureLength)
        {
            return false;
        }

        Org.BouncyCastle.Math.BigInteger r;
        Org.BouncyCastle.Math.BigInteger s;
        try
        {
            byte[] encoded = signature.ToArray();
            if (Asn1Object.FromByteArray(encoded) is not Asn1Sequence seq
                || !seq.GetDerEncoded().AsSpan().SequenceEqual(encoded)
                || seq.Count != 2
                || seq[0] is not DerInteger ri
                || seq[1] is not DerInteger si)
            {
                return false;
            }

            r = ri.PositiveValue;
            s = si.PositiveValue;
            if (ri.Value.SignValue <= 0 || si.Value.SignValue <= 0)
            {
                return false;
            }
        }
        catch (Exception e) when (e is IOException or ArgumentException or InvalidOperationException or InvalidCastException or ArithmeticException or IndexOutOfRangeException)
        {
            return false;
        }

        byte[] hash = SHA256.HashData(data);
        var signer = new ECDsaSigner();
        signer.Init(false, _parameters);
        return signer.VerifySignature(hash, r, s);
    }
}
