using System.Text;
using Weft.Wire.Multiformats;
using static Weft.Wire.Tests.Multiformats.TestBytes;

namespace Weft.Wire.Tests.Multiformats;

public class MultihashTests
{
    [Fact]
    public void Sha256OfKnownInputs()
    {
        Assert.Equal("1220e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", ToHex(Multihash.Sha256([])));
        Assert.Equal(
            "1220b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9",
            ToHex(Multihash.Sha256(Encoding.ASCII.GetBytes("hello world"))));
    }

    [Fact]
    public void EncodeAndDecodeRoundTrip()
    {
        byte[] mh = Multihash.Encode(Multihash.Identity, [1, 2, 3]);
        Assert.Equal("0003010203", ToHex(mh));
        Assert.True(Multihash.TryDecode(mh, out ulong code, out ReadOnlySpan<byte> digest));
        Assert.Equal(Multihash.Identity, code);
        Assert.Equal([1, 2, 3], digest.ToArray());

        byte[] big = Multihash.Encode(0x1b, new byte[200]);
        Assert.Equal(0x1bUL, Multihash.Decode(big, out ReadOnlySpan<byte> bigDigest));
        Assert.Equal(200, bigDigest.Length);
    }

    [Theory]
    [InlineData("")]
    [InlineData("12")]
    [InlineData("1220")]
    [InlineData("120301")]
    [InlineData("12010102")]
    [InlineData("8000")]
    [InlineData("ffffffffffffffffffff01")]
    public void RejectsMalformedMultihashes(string hex)
    {
        byte[] data = Hex(hex);
        Assert.False(Multihash.TryDecode(data, out _, out _));
        var e = Assert.Throws<ProtocolViolationException>(() => Multihash.Decode(data, out _));
        Assert.Equal("multihash", e.Protocol);
    }

    [Fact]
    public void ReadPrefixAllowsTrailingData()
    {
        byte[] data = [.. Multihash.Sha256([]), 0xFF];
        Assert.Equal(34, Multihash.ReadPrefix(data, out ulong code, out ReadOnlySpan<byte> digest));
        Assert.Equal(Multihash.Sha2_256, code);
        Assert.Equal(32, digest.Length);
        Assert.Throws<ProtocolViolationException>(() => Multihash.ReadPrefix(data.AsSpan(0, 20), out _, out _));
    }

    [Fact]
    public void RandomInputNeverThrowsFromTryDecode()
    {
        foreach (byte[] data in TestBytes.Random(2000, 40, seed: 4))
        {
            Multihash.TryDecode(data, out _, out _);
            ParsesOrViolates(() => Multihash.ReadPrefix(data, out _, out _));
        }
    }
}
