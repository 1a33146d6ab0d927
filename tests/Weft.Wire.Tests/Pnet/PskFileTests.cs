using System.Security.Cryptography;
using System.Text;
using Weft.Wire.Pnet;

namespace Weft.Wire.Tests.Pnet;

public class PskFileTests
{
    private static readonly byte[] Key = Convert.FromHexString("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f");

    private static byte[] A(string s) => Encoding.ASCII.GetBytes(s);

    [Theory]
    [InlineData("/key/swarm/psk/1.0.0/\n/base16/\n000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")]
    [InlineData("/key/swarm/psk/1.0.0/\n/base16/\n000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n")]
    [InlineData("/key/swarm/psk/1.0.0/\r\n/base16/\r\n000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F\r\n")]
    [InlineData("/key/swarm/psk/1.0.0/\n/base64/\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n")]
    [InlineData("/key/swarm/psk/1.0.0/\n/base64/\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8")]
    public void Standard_text_formats(string file)
    {
        Assert.Equal(Key, PskFile.ParseKey(A(file)));
    }

    [Fact]
    public void Binary_format()
    {
        var file = A("/key/swarm/psk/1.0.0/\n/bin/\n").Concat(Key).ToArray();
        Assert.Equal(Key, PskFile.ParseKey(file));
        Assert.Equal(Key, PskFile.ParseKey(file.Concat(A("\n")).ToArray()));
        Assert.Throws<FormatException>(() => PskFile.ParseKey(file[..^1]));
        Assert.Throws<FormatException>(() => PskFile.ParseKey(file.Concat(A("xx")).ToArray()));
    }

    [Fact]
    public void EdgeMesh_sample_psk_derivation()
    {
        // EdgeMesh's sample PSK (edgemesh-agent-psk ConfigMap, no trailing newline): sha256 hex 701f220b…613d61b1,
        // fed to the /base64/ decoder → the first 32 bytes of base64decode(hex).
        var key = PskFile.ParseKey(A("JugH9HP1XBouyO5pWGeZa8LtipDURrf17EJvUHcJGuQ="));
        Assert.Equal("ef4d5fdb6d1b75ad1b7bc79a7b7f5e69ed77ddfdf8ddee3579de5bf35d1b7bdd", Convert.ToHexStringLower(key));
    }

    [Fact]
    public void EdgeMesh_derivation_counts_every_byte()
    {
        var a = PskFile.ParseKey(A("secret"));
        var b = PskFile.ParseKey(A("secret\n"));
        Assert.NotEqual(a, b);
        var hex = Convert.ToHexStringLower(SHA256.HashData(A("secret\n")));
        Assert.Equal(Convert.FromBase64String(hex)[..32], b);
        Assert.Equal(32, a.Length);
    }

    [Theory]
    [InlineData("", "empty")]
    [InlineData("/key/swarm/psk/1.0.0/", "header")]                                // no newline after the header
    [InlineData("/key/swarm/psk/1.0.0/x\n/base16/\n00", "first line")]             // header line with junk
    [InlineData("/key/swarm/psk/1.0.0/\n/base32/\nabc", "second line")]           // unknown encoding
    [InlineData("/key/swarm/psk/1.0.0/\n/base16/", "encoding")]                    // no newline after the encoding
    [InlineData("/key/swarm/psk/1.0.0/\n/base16/\n0001", "64 hex digits")]         // too short
    [InlineData("/key/swarm/psk/1.0.0/\n/base16/\n000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f00", "64 hex digits")]
    [InlineData("/key/swarm/psk/1.0.0/\n/base16/\n000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1g", "non-hex")]
    [InlineData("/key/swarm/psk/1.0.0/\n/base64/\n!!!!", "not valid base64")]
    [InlineData("/key/swarm/psk/1.0.0/\n/base64/\nAAEC", "at least 32")]
    [InlineData("/key/swarm/psk/1.0.0/\n/base64/\n", "not valid base64")]
    public void Bad_files_say_what_is_wrong(string file, string expectedText)
    {
        var ex = Assert.Throws<FormatException>(() => PskFile.ParseKey(A(file)));
        Assert.Contains(expectedText, ex.Message, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public void Oversized_files_are_refused()
    {
        Assert.Throws<FormatException>(() => PskFile.ParseKey(new byte[PskFile.MaxFileLength + 1]));
    }
}
