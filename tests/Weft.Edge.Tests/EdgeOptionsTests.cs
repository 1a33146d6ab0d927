namespace Weft.Edge.Tests;

public class EdgeOptionsTests
{
    private static EdgeOptions Good() => new() { NodeName = "edge-1", CloudUrls = [new Uri("wss://cloud.example:10000")], Token = "t" };

    [Fact]
    public void Defaults_need_only_node_urls_and_token()
    {
        Assert.Empty(Good().Validate());
        var d = new EdgeOptions();
        Assert.True(d.ReconnectInitialDelay < TimeSpan.FromSeconds(1));
        Assert.Equal(3, d.Validate().Count);
    }

    [Fact]
    public void Every_problem_is_listed_with_its_fix()
    {
        var bad = Good() with
        {
            NodeName = "Edge_1", CloudUrls = [new Uri("http://x")], Token = "", TrustedCaFile = "/nonexistent.pem",
            KeepaliveInterval = TimeSpan.FromSeconds(10), ReadTimeout = TimeSpan.FromSeconds(5), ReconnectInitialDelay = TimeSpan.FromSeconds(2),
            ReconnectMaxDelay = TimeSpan.FromSeconds(1), MqttQos = 2, QueueLength = 0, MqttKeepalive = TimeSpan.Zero, MqttMaxInflight = 70000,
        };
        var p = bad.Validate();
        foreach (var what in new[] { "NodeName", "CloudUrls", "Token", "TrustedCaFile", "ReadTimeout", "ReconnectMaxDelay", "ReconnectInitialDelay", "MqttQos", "QueueLength", "MqttKeepalive", "MqttMaxInflight" })
            Assert.True(p.Any(x => x.StartsWith(what + ":", StringComparison.Ordinal)), what + " missing from " + string.Join(" | ", p));
        Assert.All(p, x => Assert.True(x.Length > Key(x).Length + 10, x));
        static string Key(string s) => s[..s.IndexOf(':', StringComparison.Ordinal)];
    }

    [Fact]
    public void The_link_refuses_bad_options_at_construction()
    {
        var ex = Assert.Throws<ArgumentException>(() => new CloudLink(new EdgeOptions(), Microsoft.Extensions.Logging.Abstractions.NullLoggerFactory.Instance));
        Assert.Contains("NodeName", ex.Message, StringComparison.Ordinal);
        Assert.Contains("Token", ex.Message, StringComparison.Ordinal);
    }
}
