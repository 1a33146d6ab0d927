using System.Text;
using Weft.Wire.Multiformats;
using static Weft.Wire.Tests.Multiformats.TestBytes;

namespace Weft.Wire.Tests.Multiformats;

public class Base58Tests
{
    [Theory]
    [InlineData("", "")]
    [InlineData("00", "1")]
    [InlineData("0000", "11")]
    [InlineData("61", "2g")]
    [InlineData("626262", "a3gV")]
    [InlineData("636363", "aPEr")]
    [InlineData("000000287fb4cd", "111233QC4")]
    [InlineData("572e4794", "3EFU7m")]
    [InlineData("ecac89cad93923c02321", "EJDM8drfXA6uyA")]
    [InlineData("10c8511e", "Rt5zm")]
    public void MatchesBitcoinVectors(string hex, string text)
    {
        byte[] data = Hex(hex);
        Assert.Equal(text, Base58.Encode(data));
        Assert.Equal(data, Base58.Decode(text));
    }

    [Theory]
    [InlineData("Hello World!", "2NEpo7TZRRrLZSi2U")]
    [InlineData("The quick brown fox jumps over the lazy dog.", "USm3fpXnKG5EUBx2ndxBDMPVciP5hGey2Jh4NDv6gmeo1LkMeiKrLJUUBk6Z")]
    public void MatchesDraftVectors(string input, string text)
    {
        Assert.Equal(text, Base58.Encode(Encoding.UTF8.GetBytes(input)));
        Assert.Equal(input, Encoding.UTF8.GetString(Base58.Decode(text)));
    }

    [Theory]
    [InlineData("0")]
    [InlineData("O")]
    [InlineData("I")]
    [InlineData("l")]
    [InlineData("abc+")]
    [InlineData("12D3Koo é")]
    public void RejectsCharactersOutsideTheAlphabet(string text)
    {
        Assert.Throws<FormatException>(() => Base58.Decode(text));
        Assert.False(Base58.TryDecode(text, out _));
    }

    [Fact]
    public void RoundTripsRandomData()
    {
        foreach (byte[] data in TestBytes.Random(300, 600, seed: 2))
        {
            if (data.Length > 0 && data.Length % 3 == 0)
            {
                data[0] = 0;
            }

            string text = Base58.Encode(data);
            Assert.True(Base58.TryDecode(text, out byte[]? decoded));
            Assert.Equal(data, decoded);
        }
    }
}
