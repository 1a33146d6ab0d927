using System.Buffers;
using Weft.Wire.Mqtt;

namespace Weft.Wire.Tests.Mqtt;

public class MqttPacketTests
{
    private const int Max = 1 << 20;

    public static IEnumerable<object[]> Cases()
    {
        MqttPacket[] packets =
        [
            new MqttConnect { ClientId = "c1", KeepAliveSeconds = 60 },
            new MqttConnect { ClientId = "c1", KeepAliveSeconds = 10, CleanSession = false, Username = "u", Password = "p"u8.ToArray(), WillTopic = "w", WillMessage = "m"u8.ToArray(), WillQos = 1, WillRetain = true },
            new MqttConnAck(true, 0),
            new MqttConnAck(false, 5),
            new MqttPublish { Topic = "a/b", Payload = "hi"u8.ToArray() },
            new MqttPublish { Topic = "t", Qos = 1, Dup = true, Retain = true, PacketId = 10, Payload = new byte[] { 1, 2 } },
            new MqttPacketId(MqttPacketType.PubAck, 10),
            new MqttPacketId(MqttPacketType.PubRec, 1),
            new MqttPacketId(MqttPacketType.PubRel, 1),
            new MqttPacketId(MqttPacketType.PubComp, 1),
            new MqttPacketId(MqttPacketType.UnsubAck, 2),
            new MqttSubscribe(1, [("a/+", 1), ("#", 0)]),
            new MqttSubAck(1, [1, 0x80]),
            new MqttUnsubscribe(2, ["a/#"]),
            MqttEmpty.PingReq,
            MqttEmpty.PingResp,
            MqttEmpty.Disconnect,
        ];
        return packets.Select(p => new object[] { p });
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Encoding_is_stable_and_decodes_back_at_every_split(MqttPacket packet)
    {
        var encoded = packet.ToArray();
        var withTrailer = encoded.Concat(new byte[] { 0xc0, 0x00 }).ToArray();
        for (var cut = 0; cut <= withTrailer.Length; cut++)
        {
            var seq = TestSequences.Split(withTrailer, cut);
            Assert.True(MqttPacket.TryRead(ref seq, Max, out var back));
            Assert.Equal(encoded, back.ToArray());
            Assert.True(MqttPacket.TryRead(ref seq, Max, out var ping));
            Assert.Equal(MqttPacketType.PingReq, ping.Type);
            Assert.True(seq.IsEmpty);
        }
        var bytewise = TestSequences.ByteByByte(encoded);
        Assert.True(MqttPacket.TryRead(ref bytewise, Max, out var b2));
        Assert.Equal(packet.Type, b2.Type);
        for (var n = 0; n < encoded.Length; n++)
        {
            var part = new ReadOnlySequence<byte>(encoded, 0, n);
            Assert.False(MqttPacket.TryRead(ref part, Max, out _));
            Assert.Equal(n, part.Length);
        }
    }

    [Fact]
    public void Spec_vectors_match_the_encoder()
    {
        Assert.Equal("100e00044d5154540402003c00026331", Hex(new MqttConnect { ClientId = "c1", KeepAliveSeconds = 60 }));
        Assert.Equal("3b07000174000a0102", Hex(new MqttPublish { Topic = "t", Qos = 1, Dup = true, Retain = true, PacketId = 10, Payload = new byte[] { 1, 2 } }));
        Assert.Equal("820c00010003612f2b01000123" + "00", Hex(new MqttSubscribe(1, [("a/+", 1), ("#", 0)])));
        Assert.Equal("4002000a", Hex(new MqttPacketId(MqttPacketType.PubAck, 10)));
        Assert.Equal("62020001", Hex(new MqttPacketId(MqttPacketType.PubRel, 1)));
        Assert.Equal("c000", Hex(MqttEmpty.PingReq));
        var c = (MqttConnect)Read("101a00044d51545404ec000a000263310001770001" + "6d000175000170");
        Assert.Equal(("c1", false, (ushort)10, "u", "w", (byte)1, true), (c.ClientId, c.CleanSession, c.KeepAliveSeconds, c.Username, c.WillTopic, c.WillQos, c.WillRetain));
        Assert.Equal("p"u8.ToArray(), c.Password);
        var p = (MqttPublish)Read("3007000361 2f62 6869".Replace(" ", ""));
        Assert.Equal(("a/b", (byte)0, "hi"), (p.Topic, p.Qos, System.Text.Encoding.UTF8.GetString(p.Payload.Span)));
    }

    [Fact]
    public void Remaining_length_uses_the_variable_encoding()
    {
        var payload = new byte[20_000];
        var encoded = new MqttPublish { Topic = "t", Payload = payload }.ToArray();
        Assert.Equal(0x30, encoded[0]);
        // 20,003 = 0x4E23 → a3 9c 01
        Assert.Equal(new byte[] { 0xa3, 0x9c, 0x01 }, encoded[1..4]);
        var seq = new ReadOnlySequence<byte>(encoded);
        Assert.True(MqttPacket.TryRead(ref seq, Max, out var back));
        Assert.Equal(20_000, ((MqttPublish)back).Payload.Length);
    }

    public static TheoryData<string, string> Malformed => new()
    {
        { "00 00", "reserved packet type" },
        { "f0 00", "reserved packet type" },
        { "30 ff ff ff ff 01", "more than 4 bytes" },
        { "36 03 00 01 74", "QoS 3" },
        { "38 03 00 01 74", "DUP" },
        { "32 03 00 01 74", "packet ends" },
        { "32 05 00 01 74 00 00", "identifier 0" },
        { "30 04 00 02 61 2b", "wildcard" },
        { "30 03 00 01 00", "U+0000" },
        { "30 03 00 01 ff", "UTF-8" },
        { "80 06 00 01 00 01 61 00", "flags" },
        { "82 02 00 01", "no topic filter" },
        { "82 07 00 01 00 02 61 23 00", "'#'" },
        { "82 07 00 01 00 02 61 2b 00", "'+'" },
        { "82 06 00 01 00 01 61 03", "QoS byte 3" },
        { "40 03 00 01 00", "after its last field" },
        { "41 02 00 01", "flags" },
        { "20 02 02 00", "acknowledge flags" },
        { "20 02 00 06", "reserved" },
        { "90 03 00 01 03", "reserved" },
        { "c0 01 00", "after its last field" },
        { "10 0c 00 04 4d 51 54 54 03 02 00 3c 00 00", "level" },
        { "10 0c 00 04 4d 51 54 58 04 02 00 3c 00 00", "protocol name" },
        { "10 0c 00 04 4d 51 54 54 04 03 00 3c 00 00", "reserved flag" },
        { "10 0c 00 04 4d 51 54 54 04 42 00 3c 00 00", "password flag" },
    };

    [Theory]
    [MemberData(nameof(Malformed))]
    public void Malformed_packets_throw_a_typed_violation(string hex, string why)
    {
        var ex = Assert.Throws<ProtocolViolationException>(() => Read(hex.Replace(" ", "")));
        Assert.Equal("mqtt", ex.Protocol);
        Assert.Contains(why, ex.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public void Size_limit_is_checked_before_the_body_arrives()
    {
        var seq = new ReadOnlySequence<byte>(new byte[] { 0x30, 0xff, 0x7f });
        var ex = Assert.Throws<ProtocolViolationException>(() => MqttPacket.TryRead(ref seq, 1000, out _));
        Assert.Contains("over the limit", ex.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public void Random_and_mutated_input_only_ever_throws_violations()
    {
        var rng = new Random(11);
        var seeds = Cases().Select(c => ((MqttPacket)c[0]).ToArray()).ToArray();
        for (var i = 0; i < 30_000; i++)
        {
            byte[] data;
            if (i % 2 == 0)
            {
                data = new byte[rng.Next(0, 40)];
                rng.NextBytes(data);
            }
            else
            {
                data = (byte[])seeds[rng.Next(seeds.Length)].Clone();
                for (var k = rng.Next(1, 3); k > 0; k--) data[rng.Next(data.Length)] = (byte)rng.Next(256);
            }
            var seq = TestSequences.Split(data, rng.Next(data.Length + 1));
            try
            {
                while (MqttPacket.TryRead(ref seq, 4096, out var p))
                {
                    var again = new ReadOnlySequence<byte>(p.ToArray());
                    Assert.True(MqttPacket.TryRead(ref again, 4096, out var q));
                    Assert.Equal(p.Type, q.Type);
                }
            }
            catch (ProtocolViolationException) { }
        }
    }

    private static MqttPacket Read(string hex)
    {
        var seq = new ReadOnlySequence<byte>(Convert.FromHexString(hex));
        Assert.True(MqttPacket.TryRead(ref seq, Max, out var p));
        return p;
    }

    private static string Hex(MqttPacket p) => Convert.ToHexString(p.ToArray()).ToLowerInvariant();
}
