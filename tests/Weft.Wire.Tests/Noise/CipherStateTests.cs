using System.Buffers.Binary;
using System.Security.Cryptography;
using Weft.Wire.Noise;

namespace Weft.Wire.Tests.Noise;

public class CipherStateTests
{
    private static CipherState Keyed(byte fill = 1)
    {
        var cs = new CipherState();
        cs.InitializeKey(Enumerable.Repeat(fill, 32).ToArray());
        return cs;
    }

    [Fact]
    public void Nonce_is_four_zero_bytes_then_little_endian_counter()
    {
        using var cs = Keyed();
        cs.SetNonce(0x0102030405060708);
        var plaintext = "hello"u8.ToArray();
        var ct = new byte[plaintext.Length];
        var tag = new byte[16];
        cs.Encrypt(plaintext, ct, tag);

        var nonce = new byte[12];
        BinaryPrimitives.WriteUInt64LittleEndian(nonce.AsSpan(4), 0x0102030405060708);
        using var raw = new ChaCha20Poly1305(Enumerable.Repeat((byte)1, 32).ToArray());
        var expected = new byte[plaintext.Length];
        var expectedTag = new byte[16];
        raw.Encrypt(nonce, plaintext, expected, expectedTag);
        Assert.Equal(expected, ct);
        Assert.Equal(expectedTag, tag);
        Assert.Equal(0x0102030405060709UL, cs.Nonce);
    }

    [Fact]
    public void Without_a_key_payloads_pass_through()
    {
        using var cs = new CipherState();
        var dest = new byte[3];
        Assert.False(cs.HasKey);
        Assert.Equal(3, cs.EncryptWithAd([9], [1, 2, 3], dest));
        Assert.Equal(new byte[] { 1, 2, 3 }, dest);
        Assert.Equal(3, cs.DecryptWithAd([9], [4, 5, 6], dest));
        Assert.Equal(new byte[] { 4, 5, 6 }, dest);
    }

    [Fact]
    public void Round_trip_in_place_and_tamper_detection_keeps_the_counter()
    {
        using var a = Keyed(3);
        using var b = Keyed(3);
        var data = new byte[1000];
        new Random(1).NextBytes(data);
        var buf = (byte[])data.Clone();
        var tag = new byte[16];
        a.Encrypt(buf, buf, tag);
        Assert.NotEqual(data, buf);

        var tampered = (byte[])buf.Clone();
        tampered[500] ^= 1;
        var ex = Assert.Throws<ProtocolViolationException>(() => b.Decrypt(tampered, tag, new byte[1000]));
        Assert.Equal("noise", ex.Protocol);
        Assert.Contains("decryption failed", ex.Message);
        Assert.Equal(0UL, b.Nonce);

        b.Decrypt(buf, tag, buf);
        Assert.Equal(data, buf);
        Assert.Equal(1UL, b.Nonce);
    }

    [Fact]
    public void Ciphertext_shorter_than_a_tag_is_a_violation()
    {
        using var cs = Keyed();
        Assert.Throws<ProtocolViolationException>(() => cs.DecryptWithAd(default, new byte[15], new byte[15]));
    }

    [Fact]
    public void Nonce_space_ends_before_two_to_the_64_minus_one()
    {
        using var cs = Keyed();
        cs.SetNonce(CipherState.MaxNonce);
        var tag = new byte[16];
        cs.Encrypt([1], new byte[1], tag);
        Assert.Equal(ulong.MaxValue, cs.Nonce);
        var ex = Assert.Throws<ProtocolViolationException>(() => cs.Encrypt([1], new byte[1], tag));
        Assert.Contains("nonce", ex.Message);
        Assert.Throws<ProtocolViolationException>(() => cs.Decrypt([1], tag, new byte[1]));
    }

    [Fact]
    public void Keys_must_be_32_bytes()
    {
        using var cs = new CipherState();
        Assert.Throws<ArgumentException>(() => cs.InitializeKey(new byte[16]));
    }
}
