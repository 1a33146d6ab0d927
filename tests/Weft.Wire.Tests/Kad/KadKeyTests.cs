using System.Text;
using Weft.Wire.Identity;
using Weft.Wire.Kad;
using Weft.Wire.Multiformats;

namespace Weft.Wire.Tests.Kad;

public class KadKeyTests
{
    [Fact]
    public void EdgeMesh_rendezvous_key_is_the_raw_cid_of_its_sha256()
    {
        // reference/edgemesh.md §5.2: CID v1 raw sha2-256("EDGEMESH_PLAYGOUND").
        var key = ContentKey.ForText("EDGEMESH_PLAYGOUND");
        Assert.Equal("bafkreie777rtklljkfpo24tqxwvftflojq2hhig5etpzason3vxaw3r4oi", key.ToCidString());
        Assert.Equal(Multihash.Sha256(Encoding.UTF8.GetBytes("EDGEMESH_PLAYGOUND")), key.Multihash.ToArray());
        Assert.Equal(key, ContentKey.Parse("bafkreie777rtklljkfpo24tqxwvftflojq2hhig5etpzason3vxaw3r4oi"));
        Assert.Equal(key, ContentKey.Parse("EDGEMESH_PLAYGOUND"));
    }

    [Fact]
    public void Wire_keys_may_be_multihashes_or_cids()
    {
        var key = ContentKey.ForText("x");
        var mh = key.Multihash.ToArray();
        Assert.True(ContentKey.TryFromWire(mh, out var a));
        Assert.Equal(key, a);
        Assert.True(ContentKey.TryFromWire([1, 0x55, .. mh], out var b));
        Assert.Equal(key, b);
        Assert.False(ContentKey.TryFromWire([], out _));
        Assert.False(ContentKey.TryFromWire([0x12, 0x20, 1, 2], out _));
        // CID v0: the base58 multihash.
        Assert.Equal(key, ContentKey.Parse(Base58.Encode(mh)));
    }

    [Fact]
    public void Distance_prefix_and_order()
    {
        var a = KadId.FromKey([1]);
        Assert.Equal(256, a.CommonPrefixLength(a));
        Assert.Equal(0, a.Xor(a).CompareTo(KadId.FromDigest(new byte[32])));
        var zero = KadId.FromDigest(new byte[32]);
        byte[] one = new byte[32];
        one[31] = 1;
        byte[] top = new byte[32];
        top[0] = 0x80;
        Assert.Equal(255, zero.CommonPrefixLength(KadId.FromDigest(one)));
        Assert.Equal(0, zero.CommonPrefixLength(KadId.FromDigest(top)));
        Assert.True(KadId.FromDigest(one).CompareTo(KadId.FromDigest(top)) < 0);
        var peer = Ed25519PrivateKey.Generate().PeerId;
        Assert.Equal(KadId.FromKey(peer.Bytes.Span), KadId.FromPeer(peer));
        var rng = new Random(7);
        for (var cpl = 0; cpl < 256; cpl += 17)
            Assert.Equal(cpl, a.CommonPrefixLength(a.RandomWithPrefix(cpl, rng)));
    }

    [Fact]
    public void Public_key_records_are_checked_against_their_key()
    {
        var k = Ed25519PrivateKey.Generate();
        byte[] key = [.. "/pk/"u8, .. k.PeerId.Bytes.Span];
        var value = k.PublicKey.ToProtobuf();
        var v = RecordValidators.Default;
        Assert.Null(v.Validate(key, value));
        Assert.Equal("public key does not match the key", v.Validate(key, Ed25519PrivateKey.Generate().PublicKey.ToProtobuf()));
        Assert.Equal("value is not a public key", v.Validate(key, [1, 2]));
        Assert.Equal("no validator for namespace \"weft\"", v.Validate("/weft/a"u8, [1]));
        Assert.Equal("record key has no namespace (/NS/...)", v.Validate("weft"u8, [1]));
        Assert.Equal("record key has no namespace (/NS/...)", v.Validate("/weft"u8, [1]));
        var w = v.With("weft", new OpaqueRecordValidator(4));
        Assert.Null(w.Validate("/weft/a"u8, [1, 2, 3, 4]));
        Assert.Equal("value of 5 bytes exceeds 4", w.Validate("/weft/a"u8, [1, 2, 3, 4, 5]));
        Assert.Equal(0, w.Select("/weft/a"u8, [[1], [2]]));
        Assert.Equal(["pk"], v.Namespaces);
    }
}
