using System.Security.Cryptography;
using System.Text;
using Weft.Wire.Identity;
using Weft.Wire.Tests.Multiformats;
using static Weft.Wire.Tests.Multiformats.TestBytes;

namespace Weft.Wire.Tests.Identity;

public class Ed25519Tests
{
    /// <summary>RFC 8032 section 7.1 tests 1, 2 and 3.</summary>
    [Theory]
    [InlineData(
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b")]
    [InlineData(
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00")]
    [InlineData(
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a")]
    public void MatchesRfc8032Vectors(string secret, string pub, string message, string signature)
    {
        Ed25519PrivateKey key = Ed25519PrivateKey.FromSeed(Hex(secret));
        Assert.Equal(secret, ToHex(key.Seed));
        Assert.Equal(pub, ToHex(key.PublicKey.Raw.Span));
        byte[] msg = Hex(message);
        Assert.Equal(signature, ToHex(key.Sign(msg)));

        Span<byte> sig = stackalloc byte[64];
        key.Sign(msg, sig);
        Assert.Equal(signature, ToHex(sig));

        Ed25519PublicKey verifier = Ed25519PublicKey.FromRaw(Hex(pub));
        Assert.True(verifier.Verify(msg, Hex(signature)));
        Assert.False(verifier.Verify([.. msg, 0], Hex(signature)));
    }

    [Theory]
    [InlineData("listener", "12D3KooWBDUxGKAkwWmieaV6qsR3aH3jpCfD9tjUc5yGNuhRMWZh")]
    [InlineData("relay", "12D3KooWSMDFN5DeFADosuV7UEwjHWQv1ioLEUqgzjGjxYQzxFX6")]
    public void SeedsFromJsInteropRunsGiveTheirPeerIds(string seed, string peerId)
    {
        Ed25519PrivateKey key = Ed25519PrivateKey.FromSeed(SHA256.HashData(Encoding.UTF8.GetBytes(seed)));
        Assert.Equal(peerId, key.PeerId.ToString());
        Assert.Equal(PeerId.Parse(peerId), key.PeerId);
        Assert.Equal(key.PublicKey, PeerId.Parse(peerId).TryExtractPublicKey());
        byte[] proto = key.PublicKey.ToProtobuf();
        Assert.Equal("08011220", ToHex(proto.AsSpan(0, 4)));
        Assert.Equal(36, proto.Length);
    }

    [Fact]
    public void TamperedSignaturesAndWrongLengthsFail()
    {
        Ed25519PrivateKey key = Ed25519PrivateKey.Generate();
        byte[] data = Encoding.UTF8.GetBytes("payload");
        byte[] sig = key.Sign(data);
        Assert.True(key.PublicKey.Verify(data, sig));
        for (int i = 0; i < sig.Length; i++)
        {
            byte[] bad = (byte[])sig.Clone();
            bad[i] ^= 0x01;
            Assert.False(key.PublicKey.Verify(data, bad));
        }

        Assert.False(key.PublicKey.Verify(data, sig[..63]));
        Assert.False(key.PublicKey.Verify(data, [.. sig, 0]));
        Assert.False(key.PublicKey.Verify(data, new byte[64]));
        Assert.False(Ed25519PrivateKey.Generate().PublicKey.Verify(data, sig));

        // A public key that is not a curve point never verifies and never throws.
        Ed25519PublicKey junk = Ed25519PublicKey.FromRaw(Enumerable.Repeat((byte)0xFF, 32).ToArray());
        Assert.False(junk.Verify(data, sig));
    }

    [Fact]
    public void RandomSignaturesNeverThrow()
    {
        Ed25519PublicKey key = Ed25519PrivateKey.FromSeed(new byte[32]).PublicKey;
        foreach (byte[] sig in TestBytes.Random(200, 70, seed: 8))
        {
            Assert.False(key.Verify([1, 2, 3], sig));
        }

        foreach (byte[] raw in TestBytes.Random(100, 32, seed: 9))
        {
            byte[] padded = raw.Length == 32 ? raw : [.. raw, .. new byte[32 - raw.Length]];
            Assert.False(Ed25519PublicKey.FromRaw(padded).Verify([1], new byte[64]));
        }
    }

    [Fact]
    public void PrivateKeyProtobufFormats()
    {
        Ed25519PrivateKey key = Ed25519PrivateKey.Generate();
        byte[] proto = key.ToProtobuf();
        Assert.Equal("08011240", ToHex(proto.AsSpan(0, 4)));
        Assert.Equal(68, proto.Length);
        Assert.Equal(key.Seed.ToArray(), Ed25519PrivateKey.FromProtobuf(proto).Seed.ToArray());

        byte[] pub = key.PublicKey.Raw.ToArray();
        byte[] legacy = PublicKey.EncodeProtobuf(KeyType.Ed25519, [.. key.Seed, .. pub, .. pub]);
        Assert.Equal(key.PublicKey, Ed25519PrivateKey.FromProtobuf(legacy).PublicKey);

        byte[] seedOnly = PublicKey.EncodeProtobuf(KeyType.Ed25519, key.Seed);
        Assert.Equal(key.PublicKey, Ed25519PrivateKey.FromProtobuf(seedOnly).PublicKey);

        byte[] otherPub = Ed25519PrivateKey.Generate().PublicKey.Raw.ToArray();
        Assert.Throws<ProtocolViolationException>(() => Ed25519PrivateKey.FromProtobuf(PublicKey.EncodeProtobuf(KeyType.Ed25519, [.. key.Seed, .. otherPub])));
        Assert.Throws<ProtocolViolationException>(() => Ed25519PrivateKey.FromProtobuf(PublicKey.EncodeProtobuf(KeyType.Ed25519, [.. key.Seed, .. pub, .. otherPub])));
        Assert.Throws<ProtocolViolationException>(() => Ed25519PrivateKey.FromProtobuf(PublicKey.EncodeProtobuf(KeyType.Ed25519, new byte[33])));
        Assert.Throws<ProtocolViolationException>(() => Ed25519PrivateKey.FromProtobuf(PublicKey.EncodeProtobuf(KeyType.Secp256k1, new byte[32])));
        Assert.Throws<ProtocolViolationException>(() => Ed25519PrivateKey.FromProtobuf([0x08]));
        Assert.Throws<ArgumentException>(() => Ed25519PrivateKey.FromSeed(new byte[31]));
    }

    [Fact]
    public void GeneratedKeysDiffer()
    {
        Assert.NotEqual(Ed25519PrivateKey.Generate().PeerId, Ed25519PrivateKey.Generate().PeerId);
    }
}
