using System.Security.Cryptography;
using System.Text;
using Org.BouncyCastle.Asn1;
using Org.BouncyCastle.Asn1.Sec;
using Org.BouncyCastle.Asn1.X9;
using Org.BouncyCastle.Crypto.Parameters;
using Org.BouncyCastle.Crypto.Signers;
using Weft.Wire.Identity;
using Weft.Wire.Protobuf;
using Weft.Wire.Tests.Multiformats;
using static Weft.Wire.Tests.Multiformats.TestBytes;

namespace Weft.Wire.Tests.Identity;

public class PublicKeyTests
{
    private static readonly byte[] Message = Encoding.UTF8.GetBytes("libp2p signed message");

    [Theory]
    [InlineData(KeyVectors.Ed25519Public, KeyType.Ed25519)]
    [InlineData(KeyVectors.Secp256k1Public, KeyType.Secp256k1)]
    [InlineData(KeyVectors.RsaPublic, KeyType.Rsa)]
    [InlineData(KeyVectors.EcdsaPublic, KeyType.Ecdsa)]
    public void SpecPublicKeysRoundTrip(string hex, KeyType type)
    {
        byte[] proto = Hex(hex);
        PublicKey key = PublicKey.FromProtobuf(proto);
        Assert.Equal(type, key.Type);
        Assert.Equal(proto, key.ToProtobuf());
        Assert.Equal(key, PublicKey.FromProtobuf(key.ToProtobuf()));
        Assert.Equal(key.GetHashCode(), PublicKey.FromProtobuf(proto).GetHashCode());
        Assert.True(key.ToPeerId().Matches(key));
        Assert.Equal(key.ToPeerId(), PeerId.FromPublicKey(key));
    }

    [Fact]
    public void SpecEd25519PrivateKeyProducesSpecPublicKey()
    {
        Ed25519PrivateKey priv = Ed25519PrivateKey.FromProtobuf(Hex(KeyVectors.Ed25519Private));
        Assert.Equal(KeyVectors.Ed25519Public, ToHex(priv.PublicKey.ToProtobuf()));
        Assert.Equal(KeyVectors.Ed25519Private.ToLowerInvariant(), ToHex(priv.ToProtobuf()));
        Assert.True(priv.PublicKey.Verify(Message, priv.Sign(Message)));
    }

    [Fact]
    public void SpecSecp256k1PrivateKeyProducesSpecPublicKeyAndVerifies()
    {
        PublicKey.ReadKeyProtobuf(Hex(KeyVectors.Secp256k1Private), out ulong type, out ReadOnlySpan<byte> data);
        Assert.Equal((ulong)KeyType.Secp256k1, type);
        X9ECParameters curve = SecNamedCurves.GetByName("secp256k1");
        var domain = new ECDomainParameters(curve.Curve, curve.G, curve.N, curve.H);
        var d = new Org.BouncyCastle.Math.BigInteger(1, data.ToArray());
        byte[] pub = curve.G.Multiply(d).Normalize().GetEncoded(true);
        Assert.Equal(KeyVectors.Secp256k1Public, ToHex(PublicKey.EncodeProtobuf(KeyType.Secp256k1, pub)));

        var signer = new ECDsaSigner(new HMacDsaKCalculator(new Org.BouncyCastle.Crypto.Digests.Sha256Digest()));
        signer.Init(true, new ECPrivateKeyParameters(d, domain));
        Org.BouncyCastle.Math.BigInteger[] rs = signer.GenerateSignature(SHA256.HashData(Message));
        byte[] der = new DerSequence(new DerInteger(rs[0]), new DerInteger(rs[1])).GetDerEncoded();

        PublicKey key = PublicKey.FromProtobuf(Hex(KeyVectors.Secp256k1Public));
        Assert.True(key.Verify(Message, der));
        Assert.False(key.Verify(Encoding.UTF8.GetBytes("other"), der));
        byte[] tampered = (byte[])der.Clone();
        tampered[^1] ^= 1;
        Assert.False(key.Verify(Message, tampered));
        Assert.False(key.Verify(Message, []));
        Assert.False(key.Verify(Message, new byte[80]));
        Assert.False(key.Verify(Message, der[..^1]));
        Assert.False(key.Verify(Message, [.. der, 0]));
        Assert.False(key.Verify(Message, [0x30, 0x81, der[1], .. der[2..]]));
        Assert.False(key.Verify(Message, [0x30, 0x06, 0x02, 0x01, 0x00, 0x02, 0x01, 0x01]));

        // An uncompressed point is accepted and re-encoded compressed, like go-libp2p.
        byte[] uncompressed = curve.G.Multiply(d).Normalize().GetEncoded(false);
        PublicKey fromUncompressed = PublicKey.FromProtobuf(PublicKey.EncodeProtobuf(KeyType.Secp256k1, uncompressed));
        Assert.Equal(key, fromUncompressed);
    }

    [Fact]
    public void SpecRsaKeyVerifiesPkcs1Sha256()
    {
        PublicKey.ReadKeyProtobuf(Hex(KeyVectors.RsaPrivate), out ulong type, out ReadOnlySpan<byte> data);
        Assert.Equal((ulong)KeyType.Rsa, type);
        using RSA rsa = RSA.Create();
        rsa.ImportRSAPrivateKey(data, out _);
        byte[] signature = rsa.SignData(Message, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);

        var key = (RsaPublicKey)PublicKey.FromProtobuf(Hex(KeyVectors.RsaPublic));
        Assert.Equal(4096, key.KeySize);
        Assert.Equal(rsa.ExportSubjectPublicKeyInfo(), key.Raw.ToArray());
        Assert.True(key.Verify(Message, signature));
        signature[10] ^= 1;
        Assert.False(key.Verify(Message, signature));
        Assert.False(key.Verify(Message, new byte[3]));

        PeerId id = key.ToPeerId();
        Assert.StartsWith("Qm", id.ToString(), StringComparison.Ordinal);
        Assert.Null(id.TryExtractPublicKey());
        Assert.True(id.Matches(key));
    }

    [Fact]
    public void SpecEcdsaKeyVerifiesDerSha256()
    {
        PublicKey.ReadKeyProtobuf(Hex(KeyVectors.EcdsaPrivate), out ulong type, out ReadOnlySpan<byte> data);
        Assert.Equal((ulong)KeyType.Ecdsa, type);
        using ECDsa ecdsa = ECDsa.Create();
        ecdsa.ImportECPrivateKey(data, out _);
        byte[] signature = ecdsa.SignData(Message, HashAlgorithmName.SHA256, DSASignatureFormat.Rfc3279DerSequence);

        PublicKey key = PublicKey.FromProtobuf(Hex(KeyVectors.EcdsaPublic));
        Assert.True(key.Verify(Message, signature));
        Assert.False(key.Verify(Encoding.UTF8.GetBytes("x"), signature));
        Assert.False(key.Verify(Message, [1, 2, 3]));
    }

    [Fact]
    public void RsaKeysOutsideTheSizeBoundsAreRejected()
    {
        using RSA small = RSA.Create(1024);
        byte[] proto = PublicKey.EncodeProtobuf(KeyType.Rsa, small.ExportSubjectPublicKeyInfo());
        var e = Assert.Throws<ProtocolViolationException>(() => PublicKey.FromProtobuf(proto));
        Assert.Equal("key", e.Protocol);
    }

    [Theory]
    [InlineData("")]
    [InlineData("0801")]
    [InlineData("1200")]
    [InlineData("08011200")]
    [InlineData("0801121f" + "0000000000000000000000000000000000000000000000000000000000000000")]
    [InlineData("0807122000000000000000000000000000000000000000000000000000000000000000")]
    [InlineData("0802122100000000000000000000000000000000000000000000000000000000000000")]
    [InlineData("0800120400010203")]
    [InlineData("0803120400010203")]
    [InlineData("080112ff")]
    [InlineData("0b")]
    [InlineData("08ffffffffffffffffffff")]
    public void MalformedOrUnsupportedKeysAreProtocolViolations(string hex)
    {
        var e = Assert.Throws<ProtocolViolationException>(() => PublicKey.FromProtobuf(Hex(hex)));
        Assert.Equal("key", e.Protocol);
        Assert.False(PublicKey.TryFromProtobuf(Hex(hex), out _));
    }

    [Fact]
    public void OversizeKeyProtobufIsRejected()
    {
        using var w = new ProtoWriter();
        w.WriteVarint(1, 0);
        w.WriteBytes(2, new byte[PublicKey.MaxProtobufLength]);
        Assert.Throws<ProtocolViolationException>(() => PublicKey.FromProtobuf(w.WrittenSpan));
    }

    [Fact]
    public void UnknownFieldsAreSkippedAndEncodingIsCanonical()
    {
        byte[] spec = Hex(KeyVectors.Ed25519Public);
        byte[] withExtra = [0x1a, 0x01, 0x00, .. spec, 0x20, 0x05];
        PublicKey key = PublicKey.FromProtobuf(withExtra);
        Assert.Equal(spec, key.ToProtobuf());

        byte[] reordered = [.. spec[2..], .. spec[..2]];
        Assert.Equal(spec, PublicKey.FromProtobuf(reordered).ToProtobuf());
    }

    [Fact]
    public void RandomAndTruncatedKeyBytesParseOrViolate()
    {
        foreach (string hex in new[] { KeyVectors.Ed25519Public, KeyVectors.Secp256k1Public, KeyVectors.EcdsaPublic, KeyVectors.RsaPublic })
        {
            byte[] proto = Hex(hex);
            int step = proto.Length > 200 ? 37 : 1;
            for (int length = 0; length < proto.Length; length += step)
            {
                byte[] prefix = proto[..length];
                ParsesOrViolates(() => PublicKey.FromProtobuf(prefix));
            }

            for (int i = 0; i < proto.Length; i += step)
            {
                byte[] flipped = (byte[])proto.Clone();
                flipped[i] ^= 0x5A;
                ParsesOrViolates(() => PublicKey.FromProtobuf(flipped));
            }
        }

        foreach (byte[] data in TestBytes.Random(2000, 80, seed: 7))
        {
            ParsesOrViolates(() => PublicKey.FromProtobuf(data));
            byte[] typed = [0x08, (byte)(data.Length % 4), 0x12, (byte)Math.Min(data.Length, 127), .. data];
            ParsesOrViolates(() => PublicKey.FromProtobuf(typed));
        }
    }
}
