using System.Text;
using Weft.Wire.Multiformats;

namespace Weft.Wire.Tests.Multiformats;

public class Base32Tests
{
    [Theory]
    [InlineData("", "")]
    [InlineData("f", "my")]
    [InlineData("fo", "mzxq")]
    [InlineData("foo", "mzxw6")]
    [InlineData("foob", "mzxw6yq")]
    [InlineData("fooba", "mzxw6ytb")]
    [InlineData("foobar", "mzxw6ytboi")]
    public void MatchesRfc4648Vectors(string input, string text)
    {
        Assert.Equal(text, Base32.Encode(Encoding.ASCII.GetBytes(input)));
        Assert.Equal(input, Encoding.ASCII.GetString(Base32.Decode(text)));
        Assert.Equal(input, Encoding.ASCII.GetString(Base32.Decode(text.ToUpperInvariant())));
    }

    [Theory]
    [InlineData("m")]
    [InlineData("mzx")]
    [InlineData("mzxw6y")]
    [InlineData("my======")]
    [InlineData("mz")]
    [InlineData("m1")]
    [InlineData("mzxw6yt8")]
    public void RejectsInvalidText(string text)
    {
        Assert.Throws<FormatException>(() => Base32.Decode(text));
        Assert.False(Base32.TryDecode(text, out _));
    }

    [Fact]
    public void RoundTripsRandomData()
    {
        foreach (byte[] data in TestBytes.Random(300, 700, seed: 3))
        {
            string text = Base32.Encode(data);
            Assert.Equal(text.ToLowerInvariant(), text);
            Assert.Equal(data, Base32.Decode(text));
        }
    }
}
