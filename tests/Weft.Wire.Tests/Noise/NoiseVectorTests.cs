using System.Security.Cryptography;
using Weft.Wire.Noise;

namespace Weft.Wire.Tests.Noise;

public class NoiseVectorTests
{
    private static byte[] H(string hex) => Convert.FromHexString(hex);

    // Noise_XX_25519_ChaChaPoly_SHA256 from the cacophony test vectors (as shipped in mcginty/snow,
    // tests/vectors/cacophony.txt): fixed keys, prologue "John Galt", three handshake messages with payloads,
    // then three transport messages (responder, initiator, responder).
    private const string Prologue = "4a6f686e2047616c74";
    private const string InitStatic = "e61ef9919cde45dd5f82166404bd08e38bceb5dfdfded0a34c8df7ed542214d1";
    private const string InitEphemeral = "893e28b9dc6ca8d611ab664754b8ceb7bac5117349a4439a6b0569da977c464a";
    private const string RespStatic = "4a3acbfdb163dec651dfa3194dece676d437029c62a408b4c5ea9114246e4893";
    private const string RespEphemeral = "bbdb4cdbd309f1a1f2e1456967fe288cadd6f712d65dc7b7793d5e63da6b375b";
    private const string HandshakeHash = "c8e5f64e846193be2a834104c2a009868d6c9f3bd3c186299888b488b2f1f58e";

    private static readonly (string Payload, string Ciphertext)[] Messages =
    [
        ("4c756477696720766f6e204d69736573",
            "ca35def5ae56cec33dc2036731ab14896bc4c75dbb07a61f879f8e3afa4c79444c756477696720766f6e204d69736573"),
        ("4d757272617920526f746862617264",
            "95ebc60d2b1fa672c1f46a8aa265ef51bfe38e7ccb39ec5be34069f14480884381cbad1f276e038c48378ffce2b65285e08d6b68aaa3629a5a8639392490e5b9bd5269c2f1e4f488ed8831161f19b7815528f8982ffe09be9b5c412f8a0db50f8814c7194e83f23dbd8d162c9326ad"),
        ("462e20412e20486179656b",
            "c7195ffacac1307ff99046f219750fc47693e23c3cb08b89c2af808b444850a80ae475b9df0f169ae80a89be0865b57f58c9fea0d4ec82a286427402f113e4b6ae769a1d95941d49b25030"),
        ("4361726c204d656e676572", "96763ed773f8e47bb3712f0e29b3060ffc956ffc146cee53d5e1df"),
        ("4a65616e2d426170746973746520536179", "3e40f15f6f3a46ae446b253bf8b1d9ffb6ed9b174d272328ff91a7e2e5c79c07f5"),
        ("457567656e2042f6686d20766f6e2042617765726b", "eb3f3515110702e047a6c9da4478b6ead94873c11c0f2d710ddb3f09fce024b3a58502ae3f"),
    ];

    [Fact]
    public void Cacophony_XX_transcript_matches_byte_for_byte()
    {
        using var initStatic = X25519Key.FromPrivateKey(H(InitStatic));
        using var respStatic = X25519Key.FromPrivateKey(H(RespStatic));
        using var initiator = new HandshakeState(true, initStatic, H(Prologue), X25519Key.FromPrivateKey(H(InitEphemeral)));
        using var responder = new HandshakeState(false, respStatic, H(Prologue), X25519Key.FromPrivateKey(H(RespEphemeral)));
        var message = new byte[NoiseFrame.MaxMessageLength];
        var payload = new byte[NoiseFrame.MaxMessageLength];

        for (var i = 0; i < 3; i++)
        {
            var (writer, reader) = i % 2 == 0 ? (initiator, responder) : (responder, initiator);
            Assert.True(writer.IsMyTurn);
            var n = writer.WriteMessage(H(Messages[i].Payload), message);
            Assert.Equal(Messages[i].Ciphertext, Convert.ToHexStringLower(message.AsSpan(0, n)));
            var p = reader.ReadMessage(message.AsSpan(0, n), payload);
            Assert.Equal(Messages[i].Payload, Convert.ToHexStringLower(payload.AsSpan(0, p)));
        }
        Assert.True(initiator.IsCompleted);
        Assert.True(responder.IsCompleted);
        Assert.Equal(HandshakeHash, Convert.ToHexStringLower(initiator.HandshakeHash));
        Assert.Equal(HandshakeHash, Convert.ToHexStringLower(responder.HandshakeHash));
        Assert.Equal(respStatic.PublicKey.ToArray(), initiator.RemoteStaticKey.ToArray());
        Assert.Equal(initStatic.PublicKey.ToArray(), responder.RemoteStaticKey.ToArray());

        var (iSend, iReceive) = initiator.Split();
        var (rSend, rReceive) = responder.Split();
        for (var i = 3; i < Messages.Length; i++)
        {
            var initiatorSends = i % 2 == 0;
            var (send, receive) = initiatorSends ? (iSend, rReceive) : (rSend, iReceive);
            var n = send.EncryptWithAd(default, H(Messages[i].Payload), message);
            Assert.Equal(Messages[i].Ciphertext, Convert.ToHexStringLower(message.AsSpan(0, n)));
            var p = receive.DecryptWithAd(default, message.AsSpan(0, n), payload);
            Assert.Equal(Messages[i].Payload, Convert.ToHexStringLower(payload.AsSpan(0, p)));
        }
        foreach (var c in new[] { iSend, iReceive, rSend, rReceive }) c.Dispose();
    }

    [Fact]
    public void Protocol_name_is_exactly_one_hash_long_so_h_starts_as_the_name()
    {
        using var ss = new SymmetricState(HandshakeState.ProtocolName);
        Assert.Equal(32, HandshakeState.ProtocolName.Length);
        Assert.Equal("Noise_XX_25519_ChaChaPoly_SHA256"u8.ToArray(), ss.HandshakeHash.ToArray());
        Assert.Equal(ss.HandshakeHash.ToArray(), ss.ChainingKey.ToArray());
    }

    [Fact]
    public void Long_protocol_names_are_hashed()
    {
        const string name = "Noise_XXfallback_25519_ChaChaPoly_SHA256";
        using var ss = new SymmetricState(name);
        Assert.Equal(SHA256.HashData(System.Text.Encoding.ASCII.GetBytes(name)), ss.HandshakeHash.ToArray());
    }

    [Fact]
    public void Hkdf_matches_rfc5869_case_3_with_empty_salt_and_info()
    {
        // RFC 5869 A.3: IKM = 22 x 0x0b, no salt (HashLen zeros, the same HMAC key as empty), no info.
        var output = new byte[64];
        SymmetricState.Hkdf2(new byte[32], Enumerable.Repeat((byte)0x0b, 22).ToArray(), output);
        Assert.Equal("8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8",
            Convert.ToHexStringLower(output.AsSpan(0, 42)));
    }

    [Fact]
    public void Hkdf_equals_the_platform_hkdf_for_non_empty_input()
    {
        var rng = new Random(7);
        for (var i = 0; i < 20; i++)
        {
            var ck = new byte[32];
            var ikm = new byte[rng.Next(1, 100)];
            rng.NextBytes(ck);
            rng.NextBytes(ikm);
            var ours = new byte[64];
            SymmetricState.Hkdf2(ck, ikm, ours);
            var platform = HKDF.DeriveKey(HashAlgorithmName.SHA256, ikm, 64, ck, []);
            Assert.Equal(platform, ours);
        }
    }

    [Fact]
    public void X25519_matches_rfc7748_section_6_1()
    {
        using var alice = X25519Key.FromPrivateKey(H("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"));
        using var bob = X25519Key.FromPrivateKey(H("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb"));
        Assert.Equal("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a", Convert.ToHexStringLower(alice.PublicKey));
        Assert.Equal("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f", Convert.ToHexStringLower(bob.PublicKey));
        var shared = new byte[32];
        alice.Agree(bob.PublicKey, shared);
        Assert.Equal("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742", Convert.ToHexStringLower(shared));
    }

    [Fact]
    public void Low_order_remote_key_is_rejected()
    {
        using var k = X25519Key.Generate();
        var ex = Assert.Throws<ProtocolViolationException>(() => k.Agree(new byte[32], new byte[32]));
        Assert.Equal("noise", ex.Protocol);
    }
}
