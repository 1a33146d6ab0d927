using System.Net;
using Weft.Mesh.Config;
using Weft.Mesh.Dns;
using Weft.Wire.Dns;

namespace Weft.Mesh.Tests.Dns;

public sealed class EdgeDnsResponderTests
{
    private static readonly IPAddress DemoAddress = IPAddress.Parse("127.10.3.4");

    private static ServiceLookup Lookup(string ns, string name) => (ns, name) switch
    {
        ("default", "demo") => new ServiceLookup(true, DemoAddress),
        ("shop", "unplaced") => new ServiceLookup(true, null),
        _ => ServiceLookup.Unknown,
    };

    private static EdgeDnsResponder Responder(bool canForward = false, string domain = "cluster.local") => new(DnsName.Parse(domain), 5, canForward);

    private static byte[] Query(string name, DnsType type = DnsType.A, ushort id = 0x4242, byte opcode = 0, int questions = 1) => new DnsMessage
    {
        Id = id,
        Opcode = opcode,
        RecursionDesired = true,
        Questions = Enumerable.Repeat(new DnsQuestion(DnsName.Parse(name), type), questions).ToList(),
    }.ToArray();

    private static DnsMessage Decide(EdgeDnsResponder r, byte[] query, DnsOutcome expected)
    {
        var d = r.Decide(query, Lookup);
        Assert.Equal(expected, d.Outcome);
        Assert.NotNull(d.Response);
        var m = DnsMessage.Parse(d.Response);
        Assert.True(m.IsResponse);
        return m;
    }

    [Fact]
    public void A_service_name_gets_its_address_with_the_query_id_and_question()
    {
        var m = Decide(Responder(), Query("demo.default.svc.cluster.local"), DnsOutcome.Answer);
        Assert.Equal(0x4242, m.Id);
        Assert.Equal(DnsResponseCode.NoError, m.ResponseCode);
        Assert.True(m.Authoritative);
        Assert.True(m.RecursionDesired);
        Assert.False(m.RecursionAvailable);
        Assert.Equal("demo.default.svc.cluster.local", Assert.Single(m.Questions).Name.ToString());
        var a = Assert.IsType<ARecord>(Assert.Single(m.Answers));
        Assert.Equal(DemoAddress, a.Address);
        Assert.Equal(5u, a.Ttl);
    }

    [Fact]
    public void Names_are_matched_without_regard_to_case_and_answered_as_asked()
    {
        var m = Decide(Responder(), Query("Demo.DEFAULT.Svc.Cluster.Local"), DnsOutcome.Answer);
        var a = Assert.IsType<ARecord>(Assert.Single(m.Answers));
        Assert.Equal("Demo.DEFAULT.Svc.Cluster.Local", a.Name.ToString());
    }

    [Fact]
    public void The_domain_is_configurable()
    {
        Decide(Responder(domain: "edge.example"), Query("demo.default.svc.edge.example"), DnsOutcome.Answer);
        Decide(Responder(domain: "edge.example"), Query("demo.default.svc.cluster.local"), DnsOutcome.Refused);
    }

    [Fact]
    public void Other_types_of_a_service_name_get_no_data()
    {
        foreach (var type in (DnsType[])[DnsType.AAAA, DnsType.TXT, DnsType.SRV])
        {
            var m = Decide(Responder(), Query("demo.default.svc.cluster.local", type), DnsOutcome.NoData);
            Assert.Equal(DnsResponseCode.NoError, m.ResponseCode);
            Assert.Empty(m.Answers);
        }
        Decide(Responder(), Query("demo.default.svc.cluster.local", DnsType.ANY), DnsOutcome.Answer);
    }

    [Fact]
    public void Without_an_upstream_unknown_names_in_the_domain_do_not_exist_and_others_are_refused()
    {
        foreach (var name in (string[])["nope.default.svc.cluster.local", "demo.other.svc.cluster.local", "x.demo.default.svc.cluster.local", "cluster.local", "pod.default.pod.cluster.local"])
            Assert.Equal(DnsResponseCode.NameError, Decide(Responder(), Query(name), DnsOutcome.NxDomain).ResponseCode);
        Assert.Equal(DnsResponseCode.Refused, Decide(Responder(), Query("example.com"), DnsOutcome.Refused).ResponseCode);
    }

    [Fact]
    public void With_an_upstream_every_other_name_is_forwarded_and_services_are_still_answered_here()
    {
        var r = Responder(canForward: true);
        foreach (var name in (string[])["example.com", "nope.default.svc.cluster.local", "kubernetes.default.svc.cluster.local"])
        {
            var d = r.Decide(Query(name), Lookup);
            Assert.Equal(DnsOutcome.Forward, d.Outcome);
            Assert.Null(d.Response);
        }
        Assert.True(Decide(r, Query("demo.default.svc.cluster.local"), DnsOutcome.Answer).RecursionAvailable);
    }

    [Fact]
    public void A_service_without_an_address_is_a_server_failure()
    {
        Assert.Equal(DnsResponseCode.ServerFailure, Decide(Responder(), Query("unplaced.shop.svc.cluster.local"), DnsOutcome.ServerFailure).ResponseCode);
    }

    [Fact]
    public void Malformed_queries_get_format_error_with_their_id()
    {
        var good = Query("demo.default.svc.cluster.local", id: 0xBEEF);
        var truncated = good[..^3];
        var m = Decide(Responder(), truncated, DnsOutcome.FormatError);
        Assert.Equal(0xBEEF, m.Id);
        Assert.Equal(DnsResponseCode.FormatError, m.ResponseCode);
        Assert.Empty(m.Questions);

        // A header claiming 60,000 questions in a few bytes.
        var lying = (byte[])good.Clone();
        lying[4] = 0xEA; lying[5] = 0x60;
        Assert.Equal(DnsResponseCode.FormatError, Decide(Responder(), lying, DnsOutcome.FormatError).ResponseCode);

        Assert.Equal(DnsResponseCode.FormatError, Decide(Responder(), Query("demo.default.svc.cluster.local", questions: 2), DnsOutcome.FormatError).ResponseCode);
        Assert.Equal(DnsResponseCode.FormatError, Decide(Responder(), Query("demo.default.svc.cluster.local", questions: 0), DnsOutcome.FormatError).ResponseCode);
    }

    [Fact]
    public void Other_opcodes_are_not_implemented()
    {
        var m = Decide(Responder(), Query("demo.default.svc.cluster.local", opcode: 2), DnsOutcome.NotImplemented);
        Assert.Equal(DnsResponseCode.NotImplemented, m.ResponseCode);
        Assert.Equal(2, m.Opcode);
    }

    [Fact]
    public void Responses_and_scraps_are_never_answered()
    {
        var response = new DnsMessage { Id = 7, IsResponse = true, Questions = [new DnsQuestion(DnsName.Parse("demo.default.svc.cluster.local"), DnsType.A)] }.ToArray();
        Assert.Equal(new DnsDecision(DnsOutcome.Drop, null), Responder().Decide(response, Lookup));
        Assert.Equal(DnsOutcome.Drop, Responder().Decide(new byte[11], Lookup).Outcome);
        Assert.Equal(DnsOutcome.Drop, Responder().Decide([], Lookup).Outcome);
    }

    [Fact]
    public void Server_failure_for_a_forwarded_query_echoes_its_question()
    {
        var failure = DnsMessage.Parse(Responder(canForward: true).ServerFailure(Query("example.com", id: 99)));
        Assert.Equal(99, failure.Id);
        Assert.Equal(DnsResponseCode.ServerFailure, failure.ResponseCode);
        Assert.Equal("example.com", Assert.Single(failure.Questions).Name.ToString());
    }
}

public sealed class EdgeDnsConfigTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("weft-dnsconfig-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static AgentConfig Parse(string modules) => AgentConfigLoader.Parse("modules:\n  edgeTunnel: {nodeName: n}\n" + modules, null, _ => null);

    [Fact]
    public void Defaults_follow_EdgeMesh_where_it_has_keys()
    {
        var c = Parse("  edgeProxy: {enable: true}\n  edgeDNS: {enable: true}\n").Dns;
        Assert.True(c.Enable);
        Assert.Equal(new IPEndPoint(IPAddress.Loopback, 53), c.ListenEndPoint);
        Assert.Equal("cluster.local", c.Domain.ToString());
        Assert.Empty(c.Upstreams);
        Assert.False(Parse("").Dns.Enable);
    }

    [Fact]
    public void Every_key_is_read()
    {
        var c = Parse("""
              edgeProxy: {enable: true}
              edgeDNS:
                enable: true
                listenAddress: 169.254.96.16
                listenPort: 5353
                domain: edge.example.
                ttl: 60
                upstreamServers: [10.96.0.10, "10.0.0.2:5300"]
                limits: {maxForwarding: 10, upstreamTimeout: 500ms, maxTcpConnections: 3, tcpIdleTimeout: 2s}
            """).Dns;
        Assert.Equal(new IPEndPoint(IPAddress.Parse("169.254.96.16"), 5353), c.ListenEndPoint);
        Assert.Equal("edge.example", c.Domain.ToString());
        Assert.Equal(60u, c.Ttl);
        Assert.Equal([IPEndPoint.Parse("10.96.0.10:53"), IPEndPoint.Parse("10.0.0.2:5300")], c.Upstreams);
        Assert.Equal(new EdgeDnsLimits { MaxForwarding = 10, UpstreamTimeout = TimeSpan.FromMilliseconds(500), MaxTcpConnections = 3, TcpIdleTimeout = TimeSpan.FromSeconds(2) }, c.Limits);
    }

    [Fact]
    public void EdgeMesh_cacheDNS_upstreams_are_used_when_it_is_enabled()
    {
        var c = AgentConfigLoader.Parse("""
            modules:
              edgeTunnel: {nodeName: n}
              edgeProxy: {enable: true}
              edgeDNS:
                enable: true
                cacheDNS: {enable: true, autoDetect: true, upstreamServers: [10.96.0.10], cacheTTL: 30}
            """, null, _ => null);
        Assert.Equal([IPEndPoint.Parse("10.96.0.10:53")], c.Dns.Upstreams);
        Assert.Contains(c.Warnings, w => w.Contains("without caching", StringComparison.Ordinal));
        Assert.Empty(Parse("  edgeProxy: {enable: true}\n  edgeDNS: {enable: true, cacheDNS: {enable: false, upstreamServers: [10.96.0.10]}}\n").Dns.Upstreams);
    }

    [Fact]
    public void A_resolv_conf_names_upstreams_and_this_server_is_left_out()
    {
        var file = Path.Combine(_dir, "resolv.conf");
        File.WriteAllText(file, "# comment\nsearch example\nnameserver 127.0.0.1\nnameserver 10.0.0.53 # the site's\nnameserver ::1\noptions ndots:5\n");
        var c = AgentConfigLoader.Parse($"modules: {{edgeTunnel: {{nodeName: n}}, edgeProxy: {{enable: true}}, edgeDNS: {{enable: true, upstreamServers: [{file}]}}}}", null, _ => null);
        Assert.Equal([IPEndPoint.Parse("10.0.0.53:53")], c.Dns.Upstreams);
        Assert.Contains(c.Warnings, w => w.Contains("so queries do not loop", StringComparison.Ordinal));
    }

    [Fact]
    public void Bad_values_are_all_listed_with_how_to_fix_them()
    {
        var ex = Assert.Throws<ConfigException>(() => Parse("""
              edgeDNS:
                enable: true
                listenAddress: localhost
                listenPort: 70000
                domain: "a..b"
                upstreamServers: [dns.example, "10.0.0.1:0", /nonexistent/resolv.conf]
                limits: {maxForwarding: 0}
                typo: 1
            """));
        var all = string.Join('\n', ex.Problems);
        foreach (var part in (string[])["listenAddress", "listenPort", "domain", "'dns.example'", "'10.0.0.1:0'", "/nonexistent/resolv.conf", "maxForwarding", "typo", "enable modules.edgeProxy"])
            Assert.Contains(part, all, StringComparison.Ordinal);
    }
}
