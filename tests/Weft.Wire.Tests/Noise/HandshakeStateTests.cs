using Weft.Wire.Noise;

namespace Weft.Wire.Tests.Noise;

public class HandshakeStateTests
{
    private sealed class Pair : IDisposable
    {
        public readonly X25519Key InitiatorStatic = X25519Key.Generate();
        public readonly X25519Key ResponderStatic = X25519Key.Generate();
        public readonly HandshakeState Initiator;
        public readonly HandshakeState Responder;

        public Pair()
        {
            Initiator = new HandshakeState(true, InitiatorStatic);
            Responder = new HandshakeState(false, ResponderStatic);
        }

        public void Dispose()
        {
            Initiator.Dispose();
            Responder.Dispose();
            InitiatorStatic.Dispose();
            ResponderStatic.Dispose();
        }
    }

    private static byte[] Write(HandshakeState hs, byte[] payload)
    {
        var buf = new byte[payload.Length + HandshakeState.MessageOverhead(hs.MessageIndex)];
        Assert.Equal(buf.Length, hs.WriteMessage(payload, buf));
        return buf;
    }

    private static byte[] Read(HandshakeState hs, byte[] message)
    {
        var buf = new byte[message.Length];
        var n = hs.ReadMessage(message, buf);
        return buf.AsSpan(0, n).ToArray();
    }

    [Fact]
    public void Two_peers_complete_XX_and_split_into_matching_cipher_states()
    {
        using var p = new Pair();
        Assert.Empty(Read(p.Responder, Write(p.Initiator, [])));
        Assert.Equal("resp"u8.ToArray(), Read(p.Initiator, Write(p.Responder, "resp"u8.ToArray())));
        Assert.Equal("init"u8.ToArray(), Read(p.Responder, Write(p.Initiator, "init"u8.ToArray())));
        Assert.True(p.Initiator.IsCompleted && p.Responder.IsCompleted);
        Assert.Equal(p.Initiator.HandshakeHash.ToArray(), p.Responder.HandshakeHash.ToArray());
        Assert.Equal(p.ResponderStatic.PublicKey.ToArray(), p.Initiator.RemoteStaticKey.ToArray());
        Assert.Equal(p.InitiatorStatic.PublicKey.ToArray(), p.Responder.RemoteStaticKey.ToArray());

        var (iSend, iReceive) = p.Initiator.Split();
        var (rSend, rReceive) = p.Responder.Split();
        var ct = new byte[21];
        iSend.EncryptWithAd(default, "hello"u8, ct);
        var pt = new byte[5];
        rReceive.DecryptWithAd(default, ct, pt);
        Assert.Equal("hello"u8.ToArray(), pt);
        rSend.EncryptWithAd(default, "world"u8, ct);
        iReceive.DecryptWithAd(default, ct, pt);
        Assert.Equal("world"u8.ToArray(), pt);
        foreach (var c in new[] { iSend, iReceive, rSend, rReceive }) c.Dispose();
    }

    [Fact]
    public void Message_sizes_are_the_xx_overheads()
    {
        Assert.Equal(32, HandshakeState.MessageOverhead(0));
        Assert.Equal(32 + 48 + 16, HandshakeState.MessageOverhead(1));
        Assert.Equal(48 + 16, HandshakeState.MessageOverhead(2));
    }

    [Theory]
    [InlineData(1, 0)]   // responder's ephemeral key
    [InlineData(1, 40)]  // responder's encrypted static key
    [InlineData(1, 95)]  // last byte of the payload tag
    [InlineData(2, 0)]   // initiator's encrypted static key
    [InlineData(2, 70)]  // initiator's payload
    public void Any_flipped_bit_in_messages_2_and_3_is_a_violation(int index, int position)
    {
        using var p = new Pair();
        Read(p.Responder, Write(p.Initiator, []));
        var m2 = Write(p.Responder, "payload"u8.ToArray());
        if (index == 1)
        {
            m2[position] ^= 0x04;
            var ex = Assert.ThrowsAny<Exception>(() => Read(p.Initiator, m2));
            Assert.IsType<ProtocolViolationException>(ex);
            Assert.Throws<InvalidOperationException>(() => Read(p.Initiator, m2)); // unusable after a failure
            return;
        }
        Read(p.Initiator, m2);
        var m3 = Write(p.Initiator, "payload"u8.ToArray());
        m3[position] ^= 0x04;
        Assert.Throws<ProtocolViolationException>(() => Read(p.Responder, m3));
    }

    [Fact]
    public void Truncated_messages_are_violations()
    {
        using var p = new Pair();
        var m1 = Write(p.Initiator, []);
        Assert.Throws<ProtocolViolationException>(() => Read(p.Responder, m1[..31]));

        using var q = new Pair();
        Read(q.Responder, Write(q.Initiator, []));
        var m2 = Write(q.Responder, [1, 2, 3]);
        Assert.Throws<ProtocolViolationException>(() => Read(q.Initiator, m2[..^1]));

        using var shortRead = new HandshakeState(true, q.InitiatorStatic);
        Write(shortRead, []);
        Assert.Throws<ProtocolViolationException>(() => Read(shortRead, m2[..50]));
    }

    [Fact]
    public void Turn_order_is_enforced()
    {
        using var p = new Pair();
        Assert.Throws<InvalidOperationException>(() => p.Responder.WriteMessage([], new byte[100]));
        Assert.Throws<InvalidOperationException>(() => p.Initiator.ReadMessage(new byte[100], new byte[100]));
        Assert.Throws<InvalidOperationException>(() => p.Initiator.Split());
    }

    [Fact]
    public void Random_garbage_as_message_2_never_throws_anything_but_a_violation()
    {
        var rng = new Random(11);
        for (var i = 0; i < 200; i++)
        {
            using var p = new Pair();
            Write(p.Initiator, []);
            var garbage = new byte[rng.Next(0, 300)];
            rng.NextBytes(garbage);
            Assert.Throws<ProtocolViolationException>(() => Read(p.Initiator, garbage));
        }
    }
}
