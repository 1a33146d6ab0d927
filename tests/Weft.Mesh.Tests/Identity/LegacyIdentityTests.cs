using Org.BouncyCastle.Crypto.Parameters;
using Weft.Mesh.Identity;
using Weft.Wire.Identity;

namespace Weft.Mesh.Tests.Identity;

public class LegacyIdentityTests
{
    // EdgeMesh pkg/tunnel/util_test.go TestGenerateKeyPairWithString (edgemesh.md §2.3), plus the
    // intermediate Ed25519 seed (independently recomputed) to localise failures.
    public static TheoryData<string, string, string> Vectors => new()
    {
        { "k8s-master", "a58a62add392dcc52ed5fb5d2a0a9f13249500dfb994ee1b31499254d5204176", "12D3KooWB5qVCMrMNLpBDfMu6o4dy6ci2UqDVsFVomcd2PfYVzfW" },
        { "k8s-node1", "68e922d61a87c70f5e944c3a9670fa5f39baafdf9d33e79a80d722700d791bef", "12D3KooWErZ4m27CEinjcnXNvem2KFUJUFRBcd9NdcWnYRqyr1Sn" },
        { "ke-edge1", "9b799f5e98f58c7502979e0b371a45111e4bef55ac03b0aa91a1d169278d01d3", "12D3KooWF3RB8SoMRZht7MDqF6GoipSPdFxVb9ESRLU7NuPX6ifH" },
        { "ke-edge2", "2af926ba2db3d2db3d6d2790f4be48e1ca92146e64a05d10e76637ca40d326ac", "12D3KooWSD4f5fZb5c9PQ6FPVd8Em4eKX3mRezcyqXSHUyomoy8S" },
        { "k8s-Master", "02a8ec104f672f3b4c6b9bb015aeef8d8c8fb91a95af72ee1bcd60e6b9caaeee", "12D3KooWA9AvBpYt17yctznPFxDvR6NFXfyu8kY72jnVLC9SKUG4" },
        { "m\uFF41ste\uFF52", "198134378f0856f7ef868fb0b88bbf26a5b9b87356ae78eda1102f38b88fa4f2", "12D3KooWAZ7jrUXyHuTZ7rT1uUnqXZPY88HjdhvDaQjivD5M35nw" },
        { "ke-node1\n", "7d8e2732f9e7ae21891dd6bcd51fb3c288215230db5b7f5c742ca920d6fec790", "12D3KooWFP7gZfX1n1HLQAZt7rCZpffRvqXf7QYASxbz9mrEkAVi" },
    };

    [Theory]
    [MemberData(nameof(Vectors))]
    public void DeriveEd25519Seed_MatchesRecomputedSeed(string nodeName, string seedHex, string peerId)
    {
        _ = peerId;
        Assert.Equal(Convert.FromHexString(seedHex), LegacyIdentity.DeriveEd25519Seed(nodeName));
    }

    [Theory]
    [MemberData(nameof(Vectors))]
    public void DeriveEd25519Seed_GivesEdgeMeshPeerId_ViaBouncyCastle(string nodeName, string seedHex, string peerId)
    {
        _ = seedHex;
        var seed = LegacyIdentity.DeriveEd25519Seed(nodeName);
        Assert.Equal(peerId, PeerIdOf(seed));
    }

    [Theory]
    [MemberData(nameof(Vectors))]
    public void DerivePeerId_MatchesEdgeMesh(string nodeName, string seedHex, string peerId)
    {
        _ = seedHex;
        var id = LegacyIdentity.DerivePeerId(nodeName);
        Assert.Equal(peerId, id.ToString());
        Assert.Equal(PeerId.Parse(peerId), id);
    }

    [Theory]
    [MemberData(nameof(Vectors))]
    public void DeriveKey_HasDerivedSeedAndMatchingPeerId(string nodeName, string seedHex, string peerId)
    {
        var key = LegacyIdentity.DeriveKey(nodeName);
        Assert.Equal(Convert.FromHexString(seedHex), key.Seed.ToArray());
        Assert.Equal(peerId, key.PeerId.ToString());
        Assert.True(key.PeerId.Matches(key.PublicKey));
    }

    [Fact]
    public void DerivedKey_SignaturesVerify()
    {
        var key = LegacyIdentity.DeriveKey("k8s-master");
        byte[] data = [1, 2, 3, 4];
        var signature = key.Sign(data);
        Assert.True(key.PublicKey.Verify(data, signature));
        var extracted = LegacyIdentity.DerivePeerId("k8s-master").TryExtractPublicKey();
        Assert.NotNull(extracted);
        Assert.True(extracted.Verify(data, signature));
    }

    [Fact]
    public void EmptyName_IsRejected_ByKeyAndPeerId()
    {
        Assert.Throws<ArgumentException>(() => LegacyIdentity.DeriveKey(string.Empty));
        Assert.Throws<ArgumentException>(() => LegacyIdentity.DerivePeerId(string.Empty));
    }

    [Fact]
    public void FullWidthName_IsNotNormalised()
    {
        Assert.NotEqual(LegacyIdentity.DeriveEd25519Seed("master"), LegacyIdentity.DeriveEd25519Seed("m\uFF41ste\uFF52"));
        Assert.NotEqual(LegacyIdentity.DeriveEd25519Seed("ke-node1"), LegacyIdentity.DeriveEd25519Seed("ke-node1\n"));
        Assert.NotEqual(LegacyIdentity.DeriveEd25519Seed("k8s-master"), LegacyIdentity.DeriveEd25519Seed("k8s-Master"));
    }

    [Fact]
    public void DeriveEd25519Seed_IsDeterministicAndFreshArray()
    {
        var a = LegacyIdentity.DeriveEd25519Seed("edge-42");
        var b = LegacyIdentity.DeriveEd25519Seed("edge-42");
        Assert.Equal(a, b);
        Assert.NotSame(a, b);
        Assert.Equal(LegacyIdentity.SeedLength, a.Length);
    }

    [Fact]
    public void EmptyName_IsRejected()
    {
        var ex = Assert.Throws<ArgumentException>(() => LegacyIdentity.DeriveEd25519Seed(string.Empty));
        Assert.Equal("nodeName", ex.ParamName);
    }

    [Fact]
    public void NullName_IsRejected()
    {
        Assert.Throws<ArgumentNullException>(() => LegacyIdentity.DeriveEd25519Seed(null!));
    }

    [Fact]
    public void LoneSurrogate_IsRejected()
    {
        Assert.Throws<ArgumentException>(() => LegacyIdentity.DeriveEd25519Seed("node\uD800"));
    }

    [Fact]
    public void OverlongName_IsRejected()
    {
        Assert.Throws<ArgumentException>(() => LegacyIdentity.DeriveEd25519Seed(new string('a', LegacyIdentity.MaxNodeNameBytes + 1)));
        Assert.Equal(LegacyIdentity.SeedLength, LegacyIdentity.DeriveEd25519Seed(new string('a', LegacyIdentity.MaxNodeNameBytes)).Length);
    }

    /// <summary>identity multihash (0x00, 0x24) of PublicKey{Type=Ed25519, Data=pub}, base58btc.</summary>
    internal static string PeerIdOf(byte[] seed)
    {
        var pub = new Ed25519PrivateKeyParameters(seed, 0).GeneratePublicKey().GetEncoded();
        byte[] prefix = [0x00, 0x24, 0x08, 0x01, 0x12, 0x20];
        return TestBase58.Encode([.. prefix, .. pub]);
    }
}
