using System.Text;
using Weft.Wire.Identity;
using Weft.Wire.Multiformats;
using Weft.Wire.Protobuf;
using Weft.Wire.Tests.Multiformats;
using static Weft.Wire.Tests.Multiformats.TestBytes;

namespace Weft.Wire.Tests.Identity;

public class SignedEnvelopeTests
{
    private static readonly Ed25519PrivateKey Key = Ed25519PrivateKey.FromSeed(new byte[32]);
    private static readonly byte[] PayloadType = [0x03, 0x01];
    private static readonly byte[] Payload = Encoding.UTF8.GetBytes("the payload");

    [Fact]
    public void SealAndOpenRoundTrip()
    {
        SignedEnvelope sealedEnvelope = SignedEnvelope.Seal(Key, "test-domain", PayloadType, Payload);
        byte[] bytes = sealedEnvelope.ToProtobuf();
        SignedEnvelope opened = SignedEnvelope.Open(bytes, "test-domain");
        Assert.Equal(Key.PublicKey, opened.PublicKey);
        Assert.Equal(PayloadType, opened.PayloadType.ToArray());
        Assert.Equal(Payload, opened.Payload.ToArray());
        Assert.Equal(sealedEnvelope.Signature.ToArray(), opened.Signature.ToArray());
        Assert.Equal(Key.PeerId, opened.PeerId);
        Assert.Equal(bytes, opened.ToProtobuf());
    }

    [Fact]
    public void SignatureCoversVarintPrefixedDomainTypeAndPayload()
    {
        SignedEnvelope env = SignedEnvelope.Seal(Key, "dom", PayloadType, Payload);
        byte[] expected = [3, .. "dom"u8, 2, .. PayloadType, (byte)Payload.Length, .. Payload];
        Assert.True(Key.PublicKey.Verify(expected, env.Signature.Span));
        Assert.Equal(expected, SignedEnvelope.BuildSignedData("dom", PayloadType, Payload));

        // An envelope built by hand (as another implementation would) opens.
        using var w = new ProtoWriter();
        w.WriteBytes(1, Key.PublicKey.ToProtobuf());
        w.WriteBytes(2, PayloadType);
        w.WriteBytes(3, Payload);
        w.WriteBytes(5, Key.Sign(expected));
        Assert.Equal(Payload, SignedEnvelope.Open(w.WrittenSpan, "dom").Payload.ToArray());
    }

    [Fact]
    public void WrongDomainIsRejected()
    {
        byte[] bytes = SignedEnvelope.Seal(Key, "one", PayloadType, Payload).ToProtobuf();
        var e = Assert.Throws<ProtocolViolationException>(() => SignedEnvelope.Open(bytes, "two"));
        Assert.Equal("envelope", e.Protocol);
    }

    [Fact]
    public void EveryTamperedByteIsRejected()
    {
        byte[] bytes = SignedEnvelope.Seal(Key, "d", PayloadType, Payload).ToProtobuf();
        for (int i = 0; i < bytes.Length; i++)
        {
            foreach (byte mask in new byte[] { 0x01, 0x80, 0xFF })
            {
                byte[] tampered = (byte[])bytes.Clone();
                tampered[i] ^= mask;
                var e = Assert.Throws<ProtocolViolationException>(() => SignedEnvelope.Open(tampered, "d"));
                Assert.Equal("envelope", e.Protocol);
            }
        }
    }

    [Fact]
    public void EnvelopeSignedByAnotherKeyIsRejected()
    {
        SignedEnvelope env = SignedEnvelope.Seal(Key, "d", PayloadType, Payload);
        using var w = new ProtoWriter();
        w.WriteBytes(1, Ed25519PrivateKey.Generate().PublicKey.ToProtobuf());
        w.WriteBytes(2, PayloadType);
        w.WriteBytes(3, Payload);
        w.WriteBytes(5, env.Signature.Span);
        Assert.Throws<ProtocolViolationException>(() => SignedEnvelope.Open(w.WrittenSpan, "d"));
    }

    [Fact]
    public void MissingFieldsAndOversizeAreRejected()
    {
        using var noSig = new ProtoWriter();
        noSig.WriteBytes(1, Key.PublicKey.ToProtobuf());
        noSig.WriteBytes(3, Payload);
        Assert.Throws<ProtocolViolationException>(() => SignedEnvelope.Open(noSig.WrittenSpan, "d"));

        using var noKey = new ProtoWriter();
        noKey.WriteBytes(3, Payload);
        noKey.WriteBytes(5, new byte[64]);
        Assert.Throws<ProtocolViolationException>(() => SignedEnvelope.Open(noKey.WrittenSpan, "d"));

        Assert.Throws<ProtocolViolationException>(() => SignedEnvelope.Open(new byte[SignedEnvelope.MaxLength + 1], "d"));
    }

    [Fact]
    public void RandomAndTruncatedInputParsesOrViolates()
    {
        byte[] bytes = SignedEnvelope.Seal(Key, "d", PayloadType, Payload).ToProtobuf();
        for (int length = 0; length < bytes.Length; length++)
        {
            byte[] prefix = bytes[..length];
            Assert.Throws<ProtocolViolationException>(() => SignedEnvelope.Open(prefix, "d"));
        }

        foreach (byte[] data in TestBytes.Random(1500, 150, seed: 11))
        {
            ParsesOrViolates(() => SignedEnvelope.Open(data, "d"));
            byte[] keyed = [0x0a, 0x24, .. Key.PublicKey.ToProtobuf(), .. data];
            ParsesOrViolates(() => SignedEnvelope.Open(keyed, "d"));
        }
    }
}
