using Weft.Mesh.Identity;

namespace Weft.Mesh.Tests.Identity;

public class GoMathRandTests
{
    // Go: rand.New(rand.NewSource(1)).Int63() — the classic pre-Go-1.20 rand.Int() sequence.
    [Fact]
    public void Seed1_Int63_MatchesGo()
    {
        var r = new GoMathRand(1);
        Assert.Equal(5577006791947779410L, r.Int63());
        Assert.Equal(8674665223082153551L, r.Int63());
        Assert.Equal(6129484611666145821L, r.Int63());
    }

    // Golden values of golang/go src/math/rand/regress_test.go (rand.New(rand.NewSource(0)), Int63()).
    private static readonly long[] Seed0Int63 =
    [
        8717895732742165505, 2259404117704393152, 6050128673802995827, 501233450539197794,
        3390393562759376202, 2669985732393126063, 1774932891286980153, 6044372234677422456,
        8274930044578894929, 1543572285742637646, 2661732831099943416, 8325060299420976708,
        7837839688282259259, 2518412263346885298, 5617773211005988520, 2339563716805116249,
        7144924247938981575, 161231572858529631, 7259475919510918339, 7373105480197164748,
    ];

    // Same file, Uint64(): differs from Int63() exactly in bit 63, which checks the sign bits of the cooked table.
    private static readonly ulong[] Seed0Uint64 =
    [
        8717895732742165505, 2259404117704393152, 6050128673802995827, 9724605487393973602,
        12613765599614152010, 11893357769247901871, 1774932891286980153, 15267744271532198264,
        17498302081433670737, 1543572285742637646, 11885104867954719224, 17548432336275752516,
        7837839688282259259, 2518412263346885298, 5617773211005988520, 11562935753659892057,
        16368296284793757383, 161231572858529631, 16482847956365694147, 16596477517051940556,
    ];

    // Same file, Read(): 20 consecutive calls on one Rand with buffer sizes 1,7,8,9,10 repeating,
    // so leftover bytes carry over between calls.
    private static readonly string[] Seed0Reads =
    [
        "01", "94fdc2fa2ffcc0", "41d3ff12045b73c8", "6e4ff95ff662a5eee8", "2abdf44a2d0b75fb180d",
        "af", "48a79ee0b10d39", "4651850fd4a17889", "2ee285ece151145578", "0875d64ee2d3d0d0de6b",
        "f8", "f9b44ce85ff044", "c6b1f83b8e883bbf", "857aab99c5b252c742", "9c32f3a8aeb79ef856f6",
        "59", "c18f0dcecc77c7", "5e7a81bfde275f67", "cfe242cf3cc354f3ed", "e2d6becc4ea3ae5e8852",
    ];

    [Fact]
    public void Seed0_Int63_MatchesGoRegressionGolden()
    {
        var r = new GoMathRand(0);
        foreach (var expected in Seed0Int63)
        {
            Assert.Equal(expected, r.Int63());
        }
    }

    [Fact]
    public void Seed0_Uint64_MatchesGoRegressionGolden()
    {
        var r = new GoMathRand(0);
        foreach (var expected in Seed0Uint64)
        {
            Assert.Equal(expected, r.Uint64());
        }
    }

    [Fact]
    public void Seed0_Read_MatchesGoRegressionGolden()
    {
        var r = new GoMathRand(0);
        foreach (var hex in Seed0Reads)
        {
            var expected = Convert.FromHexString(hex);
            var buffer = new byte[expected.Length];
            r.Read(buffer);
            Assert.Equal(expected, buffer);
        }
    }

    [Fact]
    public void Read_TakesSevenBytesLsbFirstPerInt63()
    {
        var values = new GoMathRand(42);
        var bytes = new GoMathRand(42);
        Span<byte> buffer = stackalloc byte[7 * 5];
        bytes.Read(buffer);
        for (var i = 0; i < 5; i++)
        {
            var v = values.Int63();
            for (var b = 0; b < 7; b++)
            {
                Assert.Equal((byte)(v >> (8 * b)), buffer[(i * 7) + b]);
            }
        }
    }

    [Fact]
    public void Read_SplitAtEveryPosition_EqualsSingleRead()
    {
        const int Total = 64;
        var whole = new byte[Total];
        new GoMathRand(-7).Read(whole);

        for (var split = 0; split <= Total; split++)
        {
            var r = new GoMathRand(-7);
            var parts = new byte[Total];
            r.Read(parts.AsSpan(0, split));
            r.Read(parts.AsSpan(split));
            Assert.Equal(whole, parts);
        }

        var oneByOne = new GoMathRand(-7);
        var bytewise = new byte[Total];
        for (var i = 0; i < Total; i++)
        {
            oneByOne.Read(bytewise.AsSpan(i, 1));
        }

        Assert.Equal(whole, bytewise);
    }

    [Fact]
    public void Read_Empty_ConsumesNothing()
    {
        var a = new GoMathRand(5);
        var b = new GoMathRand(5);
        a.Read([]);
        Assert.Equal(b.Int63(), a.Int63());
    }

    [Fact]
    public void Seed_ResetsStateAndBufferedBytes()
    {
        var r = new GoMathRand(0);
        var first = new byte[3];
        r.Read(first);
        r.Int63();
        r.Seed(0);
        var again = new byte[Seed0Reads[0].Length / 2];
        r.Read(again);
        Assert.Equal(Convert.FromHexString(Seed0Reads[0]), again);
        Assert.Equal(Seed0Int63[1], r.Int63()); // the first value was consumed by the 1-byte read
    }

    [Theory]
    [InlineData(0L, GoMathRand.ZeroSeedReplacement)]
    [InlineData(GoMathRand.SeedModulus, 0L)]
    [InlineData(-1L, GoMathRand.SeedModulus - 1)]
    [InlineData(-GoMathRand.SeedModulus - 5, GoMathRand.SeedModulus - 5)]
    [InlineData(GoMathRand.SeedModulus + 12345, 12345L)]
    [InlineData(long.MinValue, long.MinValue % GoMathRand.SeedModulus + GoMathRand.SeedModulus)]
    [InlineData(long.MaxValue, long.MaxValue % GoMathRand.SeedModulus)]
    public void Seed_IsReducedModuloLikeGo(long seed, long equivalent)
    {
        var a = new GoMathRand(seed);
        var b = new GoMathRand(equivalent);
        for (var i = 0; i < 1000; i++)
        {
            Assert.Equal(b.Uint64(), a.Uint64());
        }
    }

    [Fact]
    public void DifferentSeeds_GiveDifferentStreams()
    {
        Assert.NotEqual(new GoMathRand(1).Int63(), new GoMathRand(2).Int63());
    }

    [Fact]
    public void Int63_IsNonNegative_OverManyWraps()
    {
        var r = new GoMathRand(123456789);
        for (var i = 0; i < GoMathRand.Length * 5; i++)
        {
            Assert.True(r.Int63() >= 0);
        }
    }
}
