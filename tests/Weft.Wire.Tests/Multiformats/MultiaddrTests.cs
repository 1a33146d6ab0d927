using System.Net;
using System.Net.Sockets;
using Weft.Wire.Identity;
using Weft.Wire.Multiformats;
using static Weft.Wire.Tests.Multiformats.TestBytes;

namespace Weft.Wire.Tests.Multiformats;

public class MultiaddrTests
{
    private const string QmPeer = "QmcgpsyWgH8Y8ajJz1Cu72KnS5uo2Aa2LpzU7kinSupNKC";
    private const string EdPeer = "12D3KooWBDUxGKAkwWmieaV6qsR3aH3jpCfD9tjUc5yGNuhRMWZh";

    /// <summary>Binary vectors (from go-multiaddr's test suite and the protocol table).</summary>
    [Theory]
    [InlineData("/ip4/127.0.0.1/udp/1234", "047f000001910204d2")]
    [InlineData("/ip4/127.0.0.1/tcp/4321", "047f0000010610e1")]
    [InlineData("/ip4/127.0.0.1/udp/1234/ip4/127.0.0.1/tcp/4321", "047f000001910204d2047f0000010610e1")]
    [InlineData("/ip6/2001:8a0:7ac5:4201:3ac9:86ff:fe31:7095/tcp/8000/ws/p2p/" + QmPeer,
        "29200108a07ac542013ac986fffe317095061f40dd03a503221220d52ebb89d85b02a284948203a62ff28389c57c9f42beec4ec20db76a68911c0b")]
    [InlineData("/onion/aaimaq4ygg2iegci:80", "bc030010c0439831b48218480050")]
    [InlineData("/dns4/example.com/tcp/443/wss", "360b6578616d706c652e636f6d0601bbde03")]
    [InlineData("/ip4/1.2.3.4/udp/4001/quic-v1", "040102030491020fa1cd03")]
    [InlineData("/ip4/1.2.3.4/udp/4001/quic", "040102030491020fa1cc03")]
    [InlineData("/ip4/1.2.3.4/tcp/1/p2p-circuit", "0401020304060001a202")]
    [InlineData("/tls/noise", "c003c603")]
    public void MatchesBinaryVectors(string text, string hex)
    {
        Multiaddr parsed = Multiaddr.Parse(text);
        Assert.Equal(hex, ToHex(parsed.ToBytes()));
        Multiaddr decoded = Multiaddr.FromBytes(Hex(hex));
        Assert.Equal(text, decoded.ToString());
        Assert.Equal(parsed, decoded);
        Assert.Equal(parsed.GetHashCode(), decoded.GetHashCode());
    }

    public static TheoryData<string> EveryProtocol => new()
    {
        "/ip4/0.0.0.0",
        "/ip4/255.255.255.255/tcp/65535",
        "/ip6/::",
        "/ip6/::1/tcp/0",
        "/ip6/2601:9:4f81:9700:803e:ca65:66e8:c21/udp/1",
        "/ip6/::ffff:1.2.3.4/tcp/80",
        "/ip6zone/eth0/ip6/fe80::1/tcp/4001",
        "/ip4/10.0.0.0/ipcidr/8",
        "/ip6/2001:db8::/ipcidr/32",
        "/dns/example.com/tcp/4001",
        "/dns4/example.com",
        "/dns6/ipv6.example.com/tcp/1",
        "/dnsaddr/bootstrap.libp2p.io",
        "/dns/bücher.example",
        "/ip4/1.2.3.4/dccp/5000",
        "/ip4/1.2.3.4/sctp/5000",
        "/ip4/1.2.3.4/udp/5000/udt",
        "/ip4/1.2.3.4/udp/5000/utp",
        "/unix/tmp/p2p.sock",
        "/unix/a",
        "/p2p/" + QmPeer,
        "/p2p/" + EdPeer,
        "/onion/timaq4ygg2iegci7:1234",
        "/onion3/vww6ybal4bd7szmgncyruucpgfkqahzddi37ktceo3ah7ngmcopnpyyd:1234",
        "/ip4/1.2.3.4/tcp/443/tls/sni/example.com/http",
        "/ip4/1.2.3.4/tcp/443/https",
        "/ip4/1.2.3.4/tcp/4001/noise",
        "/ip4/1.2.3.4/udp/4001/quic",
        "/ip4/1.2.3.4/udp/4001/quic-v1/webtransport/certhash/uEiDDq4_xNyDorZBH3TlGazyJdOWSwvo4PUo5YHFMrvDE8g",
        "/ip4/1.2.3.4/tcp/80/http/http-path/foo%2Fbar%20baz",
        "/ip4/1.2.3.4/tcp/80/ws",
        "/dns4/example.com/tcp/443/wss/p2p-websocket-star",
        "/ip4/1.2.3.4/tcp/1/p2p-stardust",
        "/dns4/star.example/tcp/443/wss/p2p-webrtc-star",
        "/ip4/1.2.3.4/tcp/1/http/p2p-webrtc-direct",
        "/ip4/1.2.3.4/udp/1/webrtc-direct/certhash/uEiDDq4_xNyDorZBH3TlGazyJdOWSwvo4PUo5YHFMrvDE8g",
        "/ip4/1.2.3.4/tcp/1/p2p/" + EdPeer + "/p2p-circuit/webrtc/p2p/" + QmPeer,
    };

    [Theory]
    [MemberData(nameof(EveryProtocol))]
    public void RoundTripsTextAndBinaryForEveryProtocol(string text)
    {
        Multiaddr parsed = Multiaddr.Parse(text);
        Assert.Equal(text, parsed.ToString());
        byte[] bytes = parsed.ToBytes();
        Multiaddr decoded = Multiaddr.FromBytes(bytes);
        Assert.Equal(parsed, decoded);
        Assert.Equal(text, decoded.ToString());
        Assert.True(Multiaddr.TryParse(text, out Multiaddr? again));
        Assert.Equal(parsed, again);
        Assert.Equal(parsed.Components, decoded.Components);
        Assert.Equal(text, string.Concat(parsed.Components.Select(c => c.ToString())));
    }

    [Theory]
    [MemberData(nameof(EveryProtocol))]
    public void EveryTruncationOfValidBytesParsesOrViolates(string text)
    {
        byte[] bytes = Multiaddr.Parse(text).ToBytes();
        for (int length = 0; length < bytes.Length; length++)
        {
            byte[] prefix = bytes[..length];
            ParsesOrViolates(() => Multiaddr.FromBytes(prefix));
        }

        for (int i = 0; i < bytes.Length; i++)
        {
            byte[] flipped = (byte[])bytes.Clone();
            flipped[i] ^= 0xFF;
            ParsesOrViolates(() => Multiaddr.FromBytes(flipped));
        }
    }

    [Theory]
    [InlineData("/ip6/2001:0db8:0000:0000:0000:0000:0000:0001", "/ip6/2001:db8::1")]
    [InlineData("/ip6/FE80::0001", "/ip6/fe80::1")]
    [InlineData("/ip6/0:0:0:0:0:0:0:0/tcp/1", "/ip6/::/tcp/1")]
    [InlineData("/ipfs/" + QmPeer, "/p2p/" + QmPeer)]
    [InlineData("/ip4/1.2.3.4/tcp/1/", "/ip4/1.2.3.4/tcp/1")]
    [InlineData("/p2p/bafzbeie5745rpv2m6tjyuugywy4d5ewrqgqqhfnf445he3omzpjbx5xqxe", "/p2p/QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N")]
    [InlineData("/certhash/bciqmhk4p6e3sb2fnsbd52okgnm6is5hfslbpuob5ji4wa4kmv3ymj4q", "/certhash/uEiDDq4_xNyDorZBH3TlGazyJdOWSwvo4PUo5YHFMrvDE8g")]
    [InlineData("/onion/TIMAQ4YGG2IEGCI7:1234", "/onion/timaq4ygg2iegci7:1234")]
    public void PrintsCanonicalText(string input, string canonical)
    {
        Assert.Equal(canonical, Multiaddr.Parse(input).ToString());
        Assert.Equal(Multiaddr.Parse(canonical), Multiaddr.Parse(input));
    }

    [Theory]
    [InlineData("")]
    [InlineData("ip4/1.2.3.4")]
    [InlineData("//ip4/1.2.3.4")]
    [InlineData("/ip4/1.2.3.4//tcp/1")]
    [InlineData("/ip4")]
    [InlineData("/ip4/256.0.0.1")]
    [InlineData("/ip4/1.2.3")]
    [InlineData("/ip4/1.2.3.4.5")]
    [InlineData("/ip4/01.2.3.4")]
    [InlineData("/ip4/1.2.3.-4")]
    [InlineData("/ip4/::1")]
    [InlineData("/ip6/1.2.3.4")]
    [InlineData("/ip6/fe80::1%eth0")]
    [InlineData("/ip6/[::1]")]
    [InlineData("/ip6/:::")]
    [InlineData("/tcp/65536")]
    [InlineData("/tcp/-1")]
    [InlineData("/tcp/01")]
    [InlineData("/tcp/abc")]
    [InlineData("/tcp/ 1")]
    [InlineData("/udp/100000")]
    [InlineData("/tcp")]
    [InlineData("/ipcidr/256")]
    [InlineData("/p2p/notapeerid")]
    [InlineData("/p2p/QmcgpsyWgH8Y8ajJz1Cu72KnS5uo2Aa2LpzU7kinSupNK")]
    [InlineData("/onion/timaq4ygg2iegci7:0")]
    [InlineData("/onion/timaq4ygg2iegci:1234")]
    [InlineData("/onion/timaq4ygg2iegci7")]
    [InlineData("/onion3/vww6ybal4bd7szmgncyruucpgfkqahzddi37ktceo3ah7ngmcopnpyyd")]
    [InlineData("/certhash/xyz")]
    [InlineData("/certhash/uAAAA")]
    [InlineData("/unix")]
    [InlineData("/tls/1")]
    public void RejectsInvalidText(string text)
    {
        Assert.Throws<FormatException>(() => Multiaddr.Parse(text));
        Assert.False(Multiaddr.TryParse(text, out _));
    }

    [Fact]
    public void UnknownProtocolNameIsListedInTheError()
    {
        var e = Assert.Throws<FormatException>(() => Multiaddr.Parse("/ip4/1.2.3.4/frobnicate/7"));
        Assert.Contains("frobnicate", e.Message, StringComparison.Ordinal);
        var e2 = Assert.Throws<FormatException>(() => Multiaddr.Parse("/garlic64/xyz"));
        Assert.Contains("garlic64", e2.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void DnsNamesAreBounded()
    {
        string longest = new('a', 255);
        Assert.Equal("/dns4/" + longest, Multiaddr.Parse("/dns4/" + longest).ToString());
        Assert.Throws<FormatException>(() => Multiaddr.Parse("/dns4/" + new string('a', 256)));
        Assert.Throws<FormatException>(() => Multiaddr.Parse("/sni/" + new string('a', 256)));

        byte[] tooLong = [54, 0x80, 0x02, .. new byte[256]];
        Assert.Throws<ProtocolViolationException>(() => Multiaddr.FromBytes(tooLong));
        Assert.Throws<ProtocolViolationException>(() => Multiaddr.FromBytes([54, 0]));
        Assert.Throws<ProtocolViolationException>(() => Multiaddr.FromBytes([54, 3, (byte)'a', (byte)'/', (byte)'b']));
        Assert.Throws<ProtocolViolationException>(() => Multiaddr.FromBytes([54, 2, 0xC3, 0x28]));
    }

    [Fact]
    public void TextAndBinaryLengthsAreBounded()
    {
        string many = string.Concat(Enumerable.Repeat("/tcp/1", 400));
        Assert.Throws<FormatException>(() => Multiaddr.Parse(many));
        Assert.Throws<FormatException>(() => Multiaddr.Parse("/" + new string('x', Multiaddr.MaxTextLength + 1)));
        byte[] big = new byte[Multiaddr.MaxLength + 3];
        for (int i = 0; i + 3 <= big.Length; i += 3)
        {
            big[i] = 6;
        }

        var e = Assert.Throws<ProtocolViolationException>(() => Multiaddr.FromBytes(big));
        Assert.Equal("multiaddr", e.Protocol);
        byte[] fits = big[..(Multiaddr.MaxLength / 3 * 3)];
        Assert.Equal(Multiaddr.MaxLength / 3, Multiaddr.FromBytes(fits).Components.Count);
    }

    [Theory]
    [InlineData("07")]
    [InlineData("8f04")]
    [InlineData("ffffffffffffffffff01")]
    [InlineData("04010203")]
    [InlineData("0601")]
    [InlineData("a503")]
    [InlineData("a50322")]
    [InlineData("a5030412010203")]
    [InlineData("a503050001020304")]
    [InlineData("bc03aaaa")]
    [InlineData("bc030010c0439831b48218480000")]
    [InlineData("d2030101")]
    [InlineData("8000")]
    public void RejectsInvalidBinary(string hex)
    {
        var e = Assert.Throws<ProtocolViolationException>(() => Multiaddr.FromBytes(Hex(hex)));
        Assert.Equal("multiaddr", e.Protocol);
        Assert.False(Multiaddr.TryFromBytes(Hex(hex), out _));
    }

    [Fact]
    public void RandomBytesParseOrViolate()
    {
        foreach (byte[] data in TestBytes.Random(3000, 64, seed: 5))
        {
            ParsesOrViolates(() =>
            {
                Multiaddr m = Multiaddr.FromBytes(data);
                Assert.Equal(m, Multiaddr.Parse(m.ToString()));
            });
        }

        // Random sequences of valid protocol codes make deeper progress than pure noise.
        var rng = new Random(6);
        int[] codes = [4, 6, 41, 42, 53, 54, 273, 290, 421, 444, 445, 448, 466, 477, 481];
        for (int i = 0; i < 3000; i++)
        {
            var bytes = new List<byte>();
            int parts = rng.Next(1, 5);
            for (int p = 0; p < parts; p++)
            {
                bytes.AddRange(Varint.Encode((ulong)codes[rng.Next(codes.Length)]));
                var value = new byte[rng.Next(0, 40)];
                rng.NextBytes(value);
                if (rng.Next(2) == 0 && value.Length > 0)
                {
                    value[0] = (byte)(value.Length - 1);
                }

                bytes.AddRange(value);
            }

            byte[] data = [.. bytes];
            ParsesOrViolates(() =>
            {
                Multiaddr m = Multiaddr.FromBytes(data);
                Assert.Equal(data, m.ToBytes());
                Assert.Equal(m, Multiaddr.Parse(m.ToString()));
            });
        }
    }

    [Fact]
    public void EmptyMultiaddr()
    {
        Assert.Same(Multiaddr.Empty, Multiaddr.Parse("/"));
        Assert.Equal("/", Multiaddr.FromBytes([]).ToString());
        Assert.True(Multiaddr.FromBytes([]).IsEmpty);
        Assert.Empty(Multiaddr.Empty.Components);
    }

    [Fact]
    public void TcpEndPoints()
    {
        Multiaddr v4 = Multiaddr.FromTcp(new IPEndPoint(IPAddress.Parse("192.168.1.2"), 4001));
        Assert.Equal("/ip4/192.168.1.2/tcp/4001", v4.ToString());
        Assert.True(v4.TryGetTcpEndPoint(out IPEndPoint? ep));
        Assert.Equal(new IPEndPoint(IPAddress.Parse("192.168.1.2"), 4001), ep);
        Assert.False(v4.TryGetUdpEndPoint(out _));

        Multiaddr v6 = Multiaddr.FromTcp(new IPEndPoint(IPAddress.IPv6Loopback, 65535));
        Assert.Equal("/ip6/::1/tcp/65535", v6.ToString());
        Assert.True(v6.TryGetTcpEndPoint(out ep));
        Assert.Equal(IPAddress.IPv6Loopback, ep!.Address);

        Multiaddr mapped = Multiaddr.FromTcp(new IPEndPoint(IPAddress.Parse("::ffff:10.0.0.1"), 80));
        Assert.Equal("/ip4/10.0.0.1/tcp/80", mapped.ToString());

        var linkLocal = new IPEndPoint(IPAddress.Parse("fe80::1%3"), 7);
        Multiaddr zoned = Multiaddr.FromTcp(linkLocal);
        Assert.Equal("/ip6zone/3/ip6/fe80::1/tcp/7", zoned.ToString());
        Assert.True(zoned.TryGetTcpEndPoint(out ep));
        Assert.Equal(linkLocal, ep);

        Assert.False(Multiaddr.Parse("/ip6zone/eth0/ip6/fe80::1/tcp/7").TryGetTcpEndPoint(out _));

        Multiaddr withPeer = Multiaddr.Parse("/ip4/1.2.3.4/tcp/5/p2p/" + EdPeer);
        Assert.True(withPeer.TryGetTcpEndPoint(out ep));
        Assert.Equal(5, ep!.Port);

        Assert.False(Multiaddr.Parse("/ip4/1.2.3.4/tcp/5/ws").TryGetTcpEndPoint(out _));
        Assert.False(Multiaddr.Parse("/ip4/1.2.3.4/udp/5").TryGetTcpEndPoint(out _));
        Assert.False(Multiaddr.Parse("/ip4/1.2.3.4").TryGetTcpEndPoint(out _));
        Assert.False(Multiaddr.Parse("/ip4/1.2.3.4/tcp/1/p2p/" + EdPeer + "/p2p-circuit").TryGetTcpEndPoint(out _));
        Assert.False(Multiaddr.Parse("/dns4/a.b/tcp/1").TryGetTcpEndPoint(out _));

        Assert.True(Multiaddr.FromUdp(new IPEndPoint(IPAddress.Loopback, 9)).TryGetUdpEndPoint(out ep));
        Assert.Equal(9, ep!.Port);
    }

    [Theory]
    [InlineData("/dns/example.com/tcp/80", "example.com", 80, false, AddressFamily.Unspecified)]
    [InlineData("/dns4/example.com/tcp/81/p2p/" + EdPeer, "example.com", 81, false, AddressFamily.InterNetwork)]
    [InlineData("/dns6/example.com/tcp/82", "example.com", 82, true, AddressFamily.InterNetworkV6)]
    public void DnsTcp(string text, string host, int port, bool ipv6Only, AddressFamily family)
    {
        Multiaddr m = Multiaddr.Parse(text);
        Assert.True(m.TryGetDnsTcp(out string h, out int p, out bool v6));
        Assert.Equal((host, port, ipv6Only), (h, p, v6));
        Assert.True(m.TryGetDnsTcp(out _, out _, out AddressFamily f));
        Assert.Equal(family, f);
    }

    [Theory]
    [InlineData("/dnsaddr/example.com/tcp/80")]
    [InlineData("/dns4/example.com/udp/80")]
    [InlineData("/dns4/example.com/tcp/80/ws")]
    [InlineData("/ip4/1.2.3.4/tcp/80")]
    [InlineData("/dns4/example.com")]
    public void DnsTcpRejectsOtherShapes(string text)
    {
        Assert.False(Multiaddr.Parse(text).TryGetDnsTcp(out string host, out _, out bool _));
        Assert.Equal(string.Empty, host);
    }

    [Fact]
    public void PeerIdsCircuitsAndEncapsulation()
    {
        Multiaddr relay = Multiaddr.Parse("/ip4/1.2.3.4/tcp/4001/p2p/" + QmPeer);
        Assert.Equal(PeerId.Parse(QmPeer), relay.PeerId);
        Assert.False(relay.IsCircuit);
        Assert.Equal("/ip4/1.2.3.4/tcp/4001", relay.WithoutPeerId().ToString());
        Assert.Equal("/ip4/1.2.3.4/tcp/4001", relay.WithoutPeerId().WithoutPeerId().ToString());

        Multiaddr circuit = relay.Encapsulate("/p2p-circuit/p2p/" + EdPeer);
        Assert.True(circuit.IsCircuit);
        Assert.Equal(PeerId.Parse(EdPeer), circuit.PeerId);
        Assert.Equal("/ip4/1.2.3.4/tcp/4001/p2p/" + QmPeer + "/p2p-circuit/p2p/" + EdPeer, circuit.ToString());
        Assert.Equal(Multiaddr.Parse(circuit.ToString()).ToBytes(), circuit.ToBytes());
        Assert.Equal(relay, circuit.Decapsulate(MultiaddrProtocol.P2PCircuit));
        Assert.Null(circuit.Decapsulate(MultiaddrProtocol.Udp));
        Assert.Equal(Multiaddr.Empty, circuit.Decapsulate(MultiaddrProtocol.Ip4));

        Multiaddr toRelay = circuit.WithoutPeerId();
        Assert.Null(toRelay.PeerId);
        Assert.True(toRelay.IsCircuit);
        Assert.Equal(circuit, toRelay.WithPeerId(PeerId.Parse(EdPeer)));
        Assert.Same(circuit, circuit.WithPeerId(PeerId.Parse(EdPeer)));
        Assert.Equal(circuit, Multiaddr.FromBytes(toRelay.WithPeerId(PeerId.Parse(EdPeer)).ToBytes()));

        Assert.Same(relay, relay.Encapsulate(Multiaddr.Empty));
        Assert.Same(relay, Multiaddr.Empty.Encapsulate(relay));
        Assert.Null(Multiaddr.Parse("/ip4/1.2.3.4").PeerId);
        Assert.Equal(4001, relay.Components[1].Port);
        Assert.Equal("tcp", relay.Components[1].Name);
        Assert.Equal(-1, relay.Components[0].Port);
    }

    [Fact]
    public void EqualityIsByBytes()
    {
        Multiaddr a = Multiaddr.Parse("/ip6/2001:db8::1/tcp/1");
        Multiaddr b = Multiaddr.Parse("/ip6/2001:0db8::0001/tcp/1");
        Assert.True(a == b);
        Assert.False(a != b);
        Assert.Equal(a.GetHashCode(), b.GetHashCode());
        Assert.NotEqual(a, Multiaddr.Parse("/ip6/2001:db8::1/tcp/2"));
        Assert.Single(new HashSet<Multiaddr> { a, b });
        Assert.False(a.Equals(null));
    }
}
