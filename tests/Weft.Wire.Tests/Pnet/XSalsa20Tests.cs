using System.Text;
using Org.BouncyCastle.Crypto.Engines;
using Org.BouncyCastle.Crypto.Parameters;
using Weft.Wire.Pnet;

namespace Weft.Wire.Tests.Pnet;

public class XSalsa20Tests
{
    public static TheoryData<string> Kernels()
    {
        var data = new TheoryData<string>();
        foreach (var k in Enum.GetValues<XSalsa20.Kernel>())
            if (XSalsa20.IsSupported(k)) data.Add(k.ToString());
        return data;
    }

    private static XSalsa20 Create(string kernel, byte[] key, byte[] nonce) => new(key, nonce, Enum.Parse<XSalsa20.Kernel>(kernel));

    private static readonly byte[] GoKey = Encoding.ASCII.GetBytes("this is 32-byte key for xsalsa20");
    private static readonly byte[] GoNonce = Encoding.ASCII.GetBytes("24-byte nonce for xsalsa");

    [Theory]
    [MemberData(nameof(Kernels))]
    public void Matches_the_go_x_crypto_vectors(string kernel)
    {
        // golang.org/x/crypto/salsa20 xSalsa20TestData
        var hello = Encoding.ASCII.GetBytes("Hello world!");
        Create(kernel, GoKey, GoNonce).Xor(hello);
        Assert.Equal("002d4513843fc240c401e541", Convert.ToHexStringLower(hello));

        var zeros = new byte[64];
        Create(kernel, GoKey, GoNonce).Xor(zeros);
        Assert.Equal("4848297feb1fb52fb66d81609bd547fabcbe7026edc8b5e5e449d088bfa69c08" +
                     "8f5d8da1d791267c2c195a7f8cae9c4b4050d08ce6d3a151ec265f3a58e47648", Convert.ToHexStringLower(zeros));
    }

    [Theory]
    [MemberData(nameof(Kernels))]
    public void Matches_the_libsodium_crypto_stream_vector(string kernel)
    {
        // libsodium crypto_stream_xsalsa20 with key "k" x 32 and nonce "n" x 24 (its PHP/Nim binding tests)
        var key = Enumerable.Repeat((byte)'k', 32).ToArray();
        var nonce = Enumerable.Repeat((byte)'n', 24).ToArray();
        var stream = new byte[64];
        Create(kernel, key, nonce).Xor(stream);
        Assert.Equal("91172bd584998fa76d97a543eccf9eafdde4107708b45dda53ad660ebfc44656" +
                     "c8c850d59229d2a15e54fb6a1119be624e1880c0916eb6e08b2557e1d03db9da", Convert.ToHexStringLower(stream));
        var msg = Encoding.ASCII.GetBytes("hello there");
        Create(kernel, key, nonce).Xor(msg);
        Assert.Equal("f97247b9ebb9fbcf08e5c0", Convert.ToHexStringLower(msg));
    }

    [Theory]
    [MemberData(nameof(Kernels))]
    public void Streaming_in_random_pieces_equals_bouncy_castle(string kernel)
    {
        var rng = new Random(kernel.GetHashCode(StringComparison.Ordinal) & 0xffff);
        for (var round = 0; round < 20; round++)
        {
            var key = new byte[32];
            var nonce = new byte[24];
            rng.NextBytes(key);
            rng.NextBytes(nonce);
            var reference = new XSalsa20Engine();
            reference.Init(true, new ParametersWithIV(new KeyParameter(key), nonce));
            var ours = Create(kernel, key, nonce);
            for (var piece = 0; piece < 40; piece++)
            {
                var n = rng.Next(4) switch { 0 => rng.Next(0, 70), 1 => rng.Next(500, 600), 2 => 512 * rng.Next(1, 4), _ => rng.Next(0, 5000) };
                var data = new byte[n];
                rng.NextBytes(data);
                var expected = new byte[n];
                reference.ProcessBytes(data, 0, n, expected, 0);
                var output = new byte[n];
                ours.Xor(data, output); // separate buffers
                Assert.Equal(expected, output);
            }
        }
    }

    [Fact]
    public void All_kernels_agree_across_the_32_bit_carry_of_the_block_counter()
    {
        var key = new byte[32];
        var nonce = new byte[24];
        new Random(9).NextBytes(key);
        new Random(10).NextBytes(nonce);
        const ulong start = (1UL << 32) - 5; // the 8-block and 4-block steps straddle 2^32
        var expected = new byte[70_000];
        var scalar = new XSalsa20(key, nonce, XSalsa20.Kernel.Scalar);
        scalar.SetBlockCounter(start);
        scalar.Xor(expected);
        foreach (var k in Enum.GetValues<XSalsa20.Kernel>())
        {
            if (!XSalsa20.IsSupported(k)) continue;
            var got = new byte[70_000];
            var x = new XSalsa20(key, nonce, k);
            x.SetBlockCounter(start);
            x.Xor(got);
            Assert.Equal(expected, got);
        }
        // and the scalar code itself matches the reference at the start of the stream
        var fromZero = new byte[128];
        new XSalsa20(key, nonce, XSalsa20.Kernel.Scalar).Xor(fromZero);
        var reference = new XSalsa20Engine();
        reference.Init(true, new ParametersWithIV(new KeyParameter(key), nonce));
        var expectedZero = new byte[128];
        reference.ProcessBytes(new byte[128], 0, 128, expectedZero, 0);
        Assert.Equal(expectedZero, fromZero);
    }

    [Fact]
    public void Rejects_wrong_key_and_nonce_sizes()
    {
        Assert.Throws<ArgumentException>(() => new XSalsa20(new byte[31], new byte[24]));
        Assert.Throws<ArgumentException>(() => new XSalsa20(new byte[32], new byte[8]));
    }
}
