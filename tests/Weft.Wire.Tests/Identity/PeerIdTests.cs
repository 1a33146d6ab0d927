using Weft.Wire.Identity;
using Weft.Wire.Multiformats;
using Weft.Wire.Tests.Multiformats;
using static Weft.Wire.Tests.Multiformats.TestBytes;

namespace Weft.Wire.Tests.Identity;

public class PeerIdTests
{
    private const string Ed = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA";
    private const string Qm = "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N";
    private const string Cid = "bafzbeie5745rpv2m6tjyuugywy4d5ewrqgqqhfnf445he3omzpjbx5xqxe";

    [Fact]
    public void ParsesTheSpecExamples()
    {
        PeerId ed = PeerId.Parse(Ed);
        Assert.Equal(Ed, ed.ToString());
        Assert.Equal(0x00, ed.Bytes.Span[0]);
        Assert.Equal(38, ed.Bytes.Length);
        PublicKey? key = ed.TryExtractPublicKey();
        Assert.NotNull(key);
        Assert.Equal(KeyType.Ed25519, key.Type);
        Assert.True(ed.Matches(key));

        PeerId qm = PeerId.Parse(Qm);
        Assert.Equal(Qm, qm.ToString());
        Assert.Equal("1220", ToHex(qm.Bytes.Span[..2]));
        Assert.Null(qm.TryExtractPublicKey());

        PeerId cid = PeerId.Parse(Cid);
        Assert.Equal(Cid, cid.ToCidString());
        Assert.StartsWith("Qm", cid.ToString(), StringComparison.Ordinal);
        Assert.Equal(cid, PeerId.Parse(cid.ToString()));
    }

    [Fact]
    public void CidFormRoundTripsForEveryKind()
    {
        foreach (PeerId id in new[] { PeerId.Parse(Ed), PeerId.Parse(Qm), Ed25519PrivateKey.Generate().PeerId })
        {
            string cid = id.ToCidString();
            Assert.StartsWith("b", cid, StringComparison.Ordinal);
            Assert.Equal(id, PeerId.Parse(cid));
            Assert.Equal(id, PeerId.Parse(cid.ToUpperInvariant()));
            Assert.Equal(id, PeerId.Parse("z" + Base58.Encode(Base32.Decode(cid[1..]))));
        }

        // Ed25519 peer IDs in CID form start with "bafzaa" (identity multihash), RSA ones with "bafzbe".
        Assert.StartsWith("bafzaa", PeerId.Parse(Ed).ToCidString(), StringComparison.Ordinal);
    }

    [Fact]
    public void KeyTypeDecidesInlineOrHashed()
    {
        PublicKey secp = PublicKey.FromProtobuf(Hex(KeyVectors.Secp256k1Public));
        PeerId secpId = secp.ToPeerId();
        Assert.StartsWith("16Uiu2", secpId.ToString(), StringComparison.Ordinal);
        Assert.Equal(secp, secpId.TryExtractPublicKey());

        PublicKey ecdsa = PublicKey.FromProtobuf(Hex(KeyVectors.EcdsaPublic));
        PeerId ecdsaId = ecdsa.ToPeerId();
        Assert.Equal(Multihash.Sha256(ecdsa.ToProtobuf()), ecdsaId.Bytes.ToArray());
        Assert.True(ecdsaId.Matches(ecdsa));
        Assert.False(ecdsaId.Matches(secp));
    }

    [Theory]
    [InlineData("")]
    [InlineData("x")]
    [InlineData("Qm")]
    [InlineData("QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5")]
    [InlineData("QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N1")]
    [InlineData("12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5S0")]
    [InlineData("bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi")]
    [InlineData("bafzbeie5745rpv2m6tjyuugywy4d5ewrqgqqhfnf445he3omzpjbx5xqx")]
    [InlineData("b")]
    [InlineData("z")]
    [InlineData("f01720020")]
    public void RejectsInvalidText(string text)
    {
        Assert.Throws<FormatException>(() => PeerId.Parse(text));
        Assert.False(PeerId.TryParse(text, out _));
    }

    [Fact]
    public void TooLongTextIsRejected()
    {
        Assert.Throws<FormatException>(() => PeerId.Parse("1" + new string('2', PeerId.MaxTextLength)));
    }

    [Theory]
    [InlineData("")]
    [InlineData("00")]
    [InlineData("1220")]
    [InlineData("122000")]
    [InlineData("1221000000000000000000000000000000000000000000000000000000000000000000")]
    [InlineData("1320e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")]
    [InlineData("002b" + "00000000000000000000000000000000000000000000000000000000000000000000000000000000000000")]
    public void FromBytesRejectsInvalidMultihashes(string hex)
    {
        var e = Assert.Throws<ProtocolViolationException>(() => PeerId.FromBytes(Hex(hex)));
        Assert.Equal("peerid", e.Protocol);
        Assert.False(PeerId.TryFromBytes(Hex(hex), out _));
    }

    [Fact]
    public void FromBytesAcceptsIdentityUpTo42Bytes()
    {
        PeerId id = PeerId.FromBytes(Multihash.Encode(Multihash.Identity, new byte[42]));
        Assert.Null(id.TryExtractPublicKey());
        Assert.Equal(44, id.Bytes.Length);
    }

    [Fact]
    public void RandomAndTruncatedBytesParseOrViolate()
    {
        byte[] good = PeerId.Parse(Ed).Bytes.ToArray();
        for (int length = 0; length <= good.Length; length++)
        {
            byte[] prefix = good[..length];
            ParsesOrViolates(() => PeerId.FromBytes(prefix));
        }

        foreach (byte[] data in TestBytes.Random(2000, 50, seed: 10))
        {
            ParsesOrViolates(() =>
            {
                PeerId id = PeerId.FromBytes(data);
                Assert.Equal(id, PeerId.Parse(id.ToString()));
                Assert.Equal(id, PeerId.Parse(id.ToCidString()));
                id.TryExtractPublicKey();
            });
        }
    }

    [Fact]
    public void EqualityAndHashing()
    {
        PeerId a = PeerId.Parse(Ed);
        PeerId b = PeerId.FromBytes(a.Bytes.Span);
        Assert.True(a == b);
        Assert.False(a != b);
        Assert.Equal(a.GetHashCode(), b.GetHashCode());
        Assert.NotEqual(a, PeerId.Parse(Qm));
        Assert.False(a.Equals(null));
        Assert.True((PeerId?)null == null);
        Assert.Single(new HashSet<PeerId> { a, b });
    }
}
