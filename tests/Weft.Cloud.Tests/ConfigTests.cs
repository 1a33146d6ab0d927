using Weft.Cloud.Config;

namespace Weft.Cloud.Tests;

public class ConfigTests
{
    private static string Folder()
    {
        var d = System.IO.Directory.CreateTempSubdirectory("weft-cfg-").FullName;
        File.WriteAllBytes(Path.Combine(d, "secret"), new byte[32]);
        return d;
    }

    [Fact]
    public void A_minimal_lab_config_gets_every_default()
    {
        var o = CloudConfigLoader.Parse("replica: {name: cloud-a}\nhub: {allowPlaintext: true, tokenSecretFile: secret}\n", Folder());
        Assert.Equal("127.0.0.1:10000", o.Hub.Listen.ToString());
        Assert.Equal("127.0.0.1:9443", o.Router.Listen.ToString());
        Assert.Equal(new Uri("http://127.0.0.1:9443/"), o.Replica.AdvertiseAddress);
        Assert.Equal(12 * 1024 * 1024, o.Router.MaxBodyBytes);
        Assert.Equal(DirectoryBackend.Embedded, o.Directory.Backend);
        Assert.Empty(o.Rules.Routes);
    }

    [Fact]
    public void Every_problem_is_listed_in_one_go()
    {
        var ex = Assert.Throws<CloudConfigException>(() => CloudConfigLoader.Parse("""
            replica: {name: "a b", advertiseAddress: "ftp://x"}
            hub: {listen: "0.0.0.0:9443", keepaliveInterval: 5s, readTimeout: 2s, maxSessions: 0, tlsCertFile: nope.pem, oops: 1}
            router: {listen: "0.0.0.0:9443", requestTimeout: 10m, maxRequestTimeout: 1m}
            directory: {backend: etcd, etcdEndpoints: ["127.0.0.1:2379"], etcdPrefix: weft}
            eventBus: {maxMessageBytes: 2MiB}
            ruleEndpoints:
              - {name: r, ruleEndpointType: rest}
              - {name: s, ruleEndpointType: servicebus}
              - {name: q, ruleEndpointType: kafka}
            rules:
              - {name: x, source: r, sourceResource: {path: demo}, target: s, targetResource: {path: /}}
              - {name: y, source: r, sourceResource: {path: /a}, target: r, targetResource: {}}
              - {name: z, source: nope, target: s}
            extra: true
            """, Folder()));
        var p = ex.Problems;
        foreach (var needle in new[]
        {
            "replica.name", "advertiseAddress", "hub.readTimeout", "hub.maxSessions", "tlsCertFile", "hub.oops: unknown key", "router.requestTimeout",
            "router.listen: uses the same port", "etcdEndpoints: '127.0.0.1:2379'", "etcdPrefix", "eventBus.maxMessageBytes", "service_port", "kafka",
            "sourceResource.path", "rest→rest is not supported", "source endpoint 'nope'", "extra: unknown key", "tokenSecretFile",
        })
            Assert.True(p.Any(x => x.Contains(needle, StringComparison.Ordinal)), $"no problem mentions '{needle}':\n{string.Join("\n", p)}");
        Assert.All(p.Where(x => x.StartsWith("line", StringComparison.Ordinal)), x => Assert.Matches("^line [0-9]+: ", x));
    }

    [Fact]
    public void Rules_match_the_longest_segment_prefix_and_keep_the_sub_path()
    {
        var problems = new List<string>();
        var table = RuleTable.Build(
        [
            new RuleEndpoint("default", "rest", "rest", new Dictionary<string, string>()),
            new RuleEndpoint("default", "app", "servicebus", new Dictionary<string, string> { ["service_port"] = "8080" }),
            new RuleEndpoint("default", "mq", "eventbus", new Dictionary<string, string>()),
            new RuleEndpoint("default", "web", "rest", new Dictionary<string, string>()),
        ],
        [
            new Rule("default", "short", "rest", new Dictionary<string, string> { ["path"] = "/a" }, "app", new Dictionary<string, string> { ["path"] = "/x" }),
            new Rule("default", "long", "rest", new Dictionary<string, string> { ["path"] = "/a/b" }, "mq", new Dictionary<string, string> { ["topic"] = "t" }),
            new Rule("default", "var", "rest", new Dictionary<string, string> { ["path"] = "/v/{id}/z" }, "app", new Dictionary<string, string> { ["path"] = "/" }),
            new Rule("default", "up", "mq", new Dictionary<string, string> { ["topic"] = "tele", ["node_name"] = "n1" }, "web", new Dictionary<string, string> { ["resource"] = "http://c/i" }),
        ], problems);
        Assert.Empty(problems);
        Assert.Equal(("long", "/c"), Match(table, "a/b/c"));
        Assert.Equal(("short", "/bb"), Match(table, "a/bb"));
        Assert.Equal(("short", ""), Match(table, "a"));
        Assert.Equal(("var", "/q"), Match(table, "v/42/z/q"));
        Assert.Null(table.MatchRest("default", ["ab"]));
        Assert.Null(table.MatchRest("other", ["a"]));
        Assert.Equal("up", table.MatchUpload("n1", "default/tele")!.Name);
        Assert.Null(table.MatchUpload("n2", "default/tele"));
        Assert.Single(table.EventSourcesFor("n1"));
        Assert.Empty(table.EventSourcesFor("n2"));
    }

    private static (string, string)? Match(RuleTable t, string path) =>
        t.MatchRest("default", path.Split('/')) is { } m ? (m.Route.Name, m.SubPath) : null;
}
