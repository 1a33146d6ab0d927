using System.Buffers;
using System.Net;
using Weft.Wire.Dns;
using static Weft.Wire.Tests.Multiformats.TestBytes;

namespace Weft.Wire.Tests.Dns;

public class DnsMessageTests
{
    /// <summary>js-libp2p's mDNS query as tcpdump shows it: id 0, no flags, one question "_p2p._udp.local PTR IN".</summary>
    private static readonly byte[] JsQuery = Hex("0000 0000 0001 0000 0000 0000 045f703270 045f756470 056c6f63616c 00 000c 0001");

    /// <summary>
    /// A response built by hand from RFC 1035 §4.1.4: the PTR's target "abc._p2p._udp.local" ends in a pointer to the
    /// answer's name (offset 12), and the TXT record's name is one pointer to "abc" (offset 39).
    /// </summary>
    private static readonly byte[] CompressedResponse = Hex(
        "0000 8400 0000 0001 0000 0001" +
        "045f703270 045f756470 056c6f63616c 00 000c 0001 00000078 0006 03616263 c00c" +
        "c027 0010 0001 00000078 0006 0568656c6c6f");

    private static readonly DnsName Service = DnsName.Parse("_p2p._udp.local");

    [Fact]
    public void Decodes_and_encodes_the_js_query()
    {
        var m = DnsMessage.Parse(JsQuery);
        Assert.False(m.IsResponse);
        var q = Assert.Single(m.Questions);
        Assert.Equal(Service, q.Name);
        Assert.Equal(DnsType.PTR, q.Type);
        Assert.Equal(DnsClass.Internet, q.Class);
        Assert.False(q.UnicastResponse);
        Assert.Equal(JsQuery, new DnsMessage { Questions = [new DnsQuestion(Service, DnsType.PTR)] }.ToArray());
    }

    [Fact]
    public void Reads_compressed_names_and_writes_them_compressed_the_same_way()
    {
        var m = DnsMessage.Parse(CompressedResponse);
        Assert.True(m.IsResponse);
        Assert.True(m.Authoritative);
        var ptr = Assert.IsType<PtrRecord>(Assert.Single(m.Answers));
        Assert.Equal(Service, ptr.Name);
        Assert.Equal(DnsName.Parse("abc._p2p._udp.local"), ptr.Target);
        Assert.Equal(120u, ptr.Ttl);
        var txt = Assert.IsType<TxtRecord>(Assert.Single(m.Additionals));
        Assert.Equal(ptr.Target, txt.Name);
        Assert.Equal(["hello"], txt.Texts);
        Assert.Equal(CompressedResponse, m.ToArray());
    }

    [Fact]
    public void Every_record_type_round_trips_with_mdns_bits()
    {
        var host = DnsName.Parse("Peer1.local");
        var m = new DnsMessage
        {
            Id = 0xBEEF,
            IsResponse = true,
            Opcode = 2,
            Authoritative = true,
            Truncated = true,
            RecursionDesired = true,
            RecursionAvailable = true,
            AuthenticData = true,
            CheckingDisabled = true,
            ResponseCode = DnsResponseCode.NameError,
            Questions = [new DnsQuestion(host, DnsType.ANY, DnsClass.Any) { UnicastResponse = true }],
            Answers =
            [
                new ARecord { Name = host, Address = IPAddress.Parse("192.168.1.11"), Ttl = 120, CacheFlush = true },
                new AaaaRecord { Name = host, Address = IPAddress.Parse("fe80::1"), Ttl = 120 },
                new SrvRecord { Name = Service.Prepend("abc"), Priority = 1, Weight = 2, Port = 4001, Target = host, Ttl = 0 },
                new CnameRecord { Name = DnsName.Parse("www.example"), Target = host },
            ],
            Authorities = [new UnknownRecord { Name = DnsName.Root, RecordType = (DnsType)99, Data = [1, 2, 3] }],
            Additionals =
            [
                TxtRecord.FromStrings(Service.Prepend("abc"), ["dnsaddr=/ip4/192.168.1.11/tcp/4001", ""], 4500),
                new TxtRecord { Name = host, Strings = [] },
                new PtrRecord { Name = Service, Target = Service.Prepend("abc"), Class = 3 },
            ],
        };
        var bytes = m.ToArray();
        var back = DnsMessage.Parse(bytes);
        Assert.Equal(m, back);
        Assert.Equal(bytes, back.ToArray());
        // Case is kept (go's zeroconf matches names case-sensitively) but does not count in comparisons.
        Assert.Equal("Peer1", back.Answers[0].Name.Labels[0]);
        Assert.Equal(DnsName.Parse("peer1.LOCAL"), back.Answers[0].Name);
    }

    [Fact]
    public void Tcp_frames_read_with_every_split_and_byte_by_byte()
    {
        var m = DnsMessage.Parse(CompressedResponse);
        var frame = m.ToTcpFrame();
        Assert.Equal(CompressedResponse.Length, (frame[0] << 8) | frame[1]);
        byte[] two = [.. frame, .. frame];
        for (var cut = 0; cut <= two.Length; cut++)
        {
            var seq = Split(two, cut);
            Assert.True(DnsMessage.TryRead(ref seq, null, out var first));
            Assert.Equal(m, first);
            Assert.True(DnsMessage.TryRead(ref seq, null, out var second));
            Assert.Equal(m, second);
            Assert.Equal(0, seq.Length);
        }
        var bytes = ByteByByte(frame);
        Assert.True(DnsMessage.TryRead(ref bytes, null, out var one));
        Assert.Equal(m, one);
        for (var n = 0; n < frame.Length; n++)
        {
            var partial = new ReadOnlySequence<byte>(frame, 0, n);
            Assert.False(DnsMessage.TryRead(ref partial, null, out _));
            Assert.Equal(n, partial.Length);
        }
    }

    [Fact]
    public void Over_long_tcp_frame_is_rejected_before_its_body_arrives()
    {
        var seq = new ReadOnlySequence<byte>(Hex("2329"));
        var ex = Assert.Throws<ProtocolViolationException>(() => DnsMessage.TryRead(ref seq, DnsLimits.Mdns, out _));
        Assert.Equal("dns", ex.Protocol);
    }

    [Theory]
    [InlineData("0000 0000 0001 0000 0000 0000 c00c 000c 0001", "does not point backwards")] // pointer to itself
    [InlineData("0000 0000 0001 0000 0000 0000 c00e 00 000c 0001", "does not point backwards")] // pointer forwards
    [InlineData("0000 0000 0001 0000 0000 0000 40 00 000c 0001", "label type")] // extended label
    [InlineData("0000 0000 0001 0000 0000 0000 80 00 000c 0001", "label type")]
    [InlineData("0000 0000 0001 0000 0000 0000 05 6c6f63 00", "runs past")] // label past the end
    [InlineData("0000 0000 0001 0000 0000 0000 01 ff 00 000c 0001", "UTF-8")]
    [InlineData("0000 0000 0001 0000 0000 0000 00 000c", "only 3 bytes follow")] // no class
    [InlineData("0000 8400 0000 0001 0000 0000 00 0001 0001 00000078 0005 0102030405", "A record with 5 bytes")]
    [InlineData("0000 8400 0000 0001 0000 0000 00 001c 0001 00000078 0004 01020304", "AAAA record with 4 bytes")]
    [InlineData("0000 8400 0000 0001 0000 0000 00 0010 0001 00000078 0009 0568656c6c6f", "truncated record data")]
    [InlineData("0000 8400 0000 0001 0000 0000 00 0010 0001 00000078 0003 0568656c", "TXT string runs past")]
    [InlineData("0000 8400 0000 0001 0000 0000 00 000c 0001 00000078 0002 0000", "record data is 2 bytes but 1 were used")]
    [InlineData("0000 8400 0000 0002 0000 0000 00 0001 0001 00000078 0004 01020304", "only 15 bytes follow")]
    [InlineData("0000 0000 ffff 0000 0000 0000 00 0001 0001", "more than the limit")]
    [InlineData("0000 0000 0001", "shorter than the header")]
    public void Malformed_messages_are_dns_violations(string hex, string detail)
    {
        var ex = Assert.Throws<ProtocolViolationException>(() => DnsMessage.Parse(Hex(hex)));
        Assert.Equal("dns", ex.Protocol);
        Assert.Contains(detail, ex.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public void A_chain_of_backward_pointers_is_cut_at_the_jump_limit()
    {
        var ex = Assert.Throws<ProtocolViolationException>(() => DnsMessage.Parse(ChainMessage(40)));
        Assert.Contains("more than 32 compression pointers", ex.Detail, StringComparison.Ordinal);
        var ok = DnsMessage.Parse(ChainMessage(20));
        Assert.Equal(21, ok.Questions.Count);
        Assert.All(ok.Questions, q => Assert.Equal(DnsName.Parse("a"), q.Name));
    }

    /// <summary>
    /// Question 1 is "a" with a record type and class; then <paramref name="hops"/> questions, each named by a
    /// pointer to the name of the question before it, so the last question's name takes <paramref name="hops"/> jumps.
    /// </summary>
    private static byte[] ChainMessage(int hops)
    {
        var m = new List<byte>(Hex("0000 0000"));
        m.Add((byte)((hops + 1) >> 8));
        m.Add((byte)(hops + 1));
        m.AddRange(Hex("0000 0000 0000"));
        var previous = m.Count;
        m.AddRange(Hex("0161 00 0001 0001"));
        for (var i = 0; i < hops; i++)
        {
            var at = m.Count;
            m.Add((byte)(0xC0 | (previous >> 8)));
            m.Add((byte)previous);
            m.AddRange(Hex("0001 0001"));
            previous = at;
        }
        return m.ToArray();
    }

    [Fact]
    public void Names_longer_than_255_bytes_through_pointers_are_rejected()
    {
        // Question 1: four 62-byte labels (253 bytes with the root: fine). Question 2: one more label, then a
        // pointer to question 1's name: 256 bytes in total.
        var label = new string('x', 62);
        var longName = DnsName.Parse(string.Join('.', label, label, label, label));
        Assert.Equal(253, longName.WireLength);
        var m = new List<byte>(Hex("0000 0000 0002 0000 0000 0000"));
        m.AddRange(new DnsMessage { Questions = [new DnsQuestion(longName, DnsType.A)] }.ToArray().AsSpan(12).ToArray());
        m.AddRange(Hex("03616263 c00c 0001 0001"));
        var ex = Assert.Throws<ProtocolViolationException>(() => DnsMessage.Parse(m.ToArray()));
        Assert.Contains("longer than 255", ex.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public void Label_count_and_message_size_limits_apply()
    {
        var many = new DnsMessage { Questions = [new DnsQuestion(DnsName.Parse("a.b.c.d.e.f"), DnsType.A)] }.ToArray();
        Assert.Single(DnsMessage.Parse(many).Questions);
        var ex = Assert.Throws<ProtocolViolationException>(() => DnsMessage.Parse(many, new DnsLimits { MaxLabels = 5 }));
        Assert.Contains("more than 5 labels", ex.Detail, StringComparison.Ordinal);
        ex = Assert.Throws<ProtocolViolationException>(() => DnsMessage.Parse(new byte[9001], DnsLimits.Mdns));
        Assert.Contains("exceeds the limit of 9000", ex.Detail, StringComparison.Ordinal);
        ex = Assert.Throws<ProtocolViolationException>(() => DnsMessage.Parse(many, new DnsLimits { MaxRecords = 0 }));
        Assert.Contains("more than the limit of 0", ex.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public void Random_truncated_and_mutated_input_parses_or_is_a_violation()
    {
        foreach (var buffer in Random(5000, 200, seed: 4401))
        {
            ParsesOrViolates(() => DnsMessage.Parse(buffer));
            ParsesOrViolates(() =>
            {
                var seq = new ReadOnlySequence<byte>(buffer);
                while (DnsMessage.TryRead(ref seq, null, out _))
                {
                }
            });
        }
        for (var n = 0; n < CompressedResponse.Length; n++)
            Assert.Throws<ProtocolViolationException>(() => DnsMessage.Parse(CompressedResponse.AsSpan(0, n)));
        var rng = new Random(4402);
        for (var i = 0; i < 5000; i++)
        {
            var mutated = (byte[])CompressedResponse.Clone();
            for (var k = rng.Next(1, 4); k > 0; k--) mutated[rng.Next(mutated.Length)] = (byte)rng.Next(256);
            ParsesOrViolates(() => DnsMessage.Parse(mutated));
        }
    }
}
