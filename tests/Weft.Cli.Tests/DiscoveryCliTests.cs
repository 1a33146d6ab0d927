namespace Weft.Cli.Tests;

/// <summary>`weft p2p serve --dht` and `weft p2p dht ...` as processes on loopback (mDNS needs namespaces: Weft.Lab.Tests).</summary>
public class DiscoveryCliTests
{
    [Theory]
    [InlineData(new[] { "p2p", "dht", "get", "k" }, "--bootstrap MULTIADDR is required")]
    [InlineData(new[] { "p2p", "dht", "put", "k", "--bootstrap", "/ip4/127.0.0.1/tcp/1" }, "put takes 2 arguments, got 1")]
    [InlineData(new[] { "p2p", "dht", "fly", "--bootstrap", "/ip4/127.0.0.1/tcp/1" }, "unknown operation 'fly'")]
    [InlineData(new[] { "p2p", "dht", "find-peer", "nope", "--bootstrap", "/ip4/127.0.0.1/tcp/1" }, "'nope' is not a peer ID")]
    [InlineData(new[] { "p2p", "serve", "--dht", "sometimes" }, "--dht sometimes: expected 'client'")]
    [InlineData(new[] { "p2p", "serve", "--bootstrap", "/ip4/127.0.0.1/tcp/1/p2p/12D3KooWBDUxGKAkwWmieaV6qsR3aH3jpCfD9tjUc5yGNuhRMWZh" }, "--bootstrap needs --dht")]
    [InlineData(new[] { "p2p", "serve", "--rendezvous", "X" }, "--rendezvous needs --mdns or --dht")]
    public async Task Bad_usage_exits_2_and_says_why(string[] args, string problem)
    {
        var (code, _, err) = await WeftProcess.RunAsync(args);
        Assert.Equal(2, code);
        Assert.Contains(problem, err, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Dht_servers_and_one_shot_clients_store_find_and_meet_under_a_rendezvous()
    {
        await using var a = WeftProcess.Start("p2p", "serve", "--listen", "/ip4/127.0.0.1/tcp/0", "--dht", "server");
        var aAddr = (await a.WaitLine("listening "))["listening ".Length..];
        await using var b = WeftProcess.Start("p2p", "serve", "--listen", "/ip4/127.0.0.2/tcp/0", "--dht", "server", "--bootstrap", aAddr, "--rendezvous", "CLI_TEST");
        var bAddr = (await b.WaitLine("listening "))["listening ".Length..];
        await using var c = WeftProcess.Start("p2p", "serve", "--listen", "/ip4/127.0.0.3/tcp/0", "--dht", "client", "--bootstrap", aAddr, "--rendezvous", "CLI_TEST");
        var cAddr = (await c.WaitLine("listening "))["listening ".Length..];
        var bId = bAddr[(bAddr.LastIndexOf('/') + 1)..];
        var cId = cAddr[(cAddr.LastIndexOf('/') + 1)..];
        Assert.StartsWith($"discovered {bId} /ip4/127.0.0.2/tcp/", await c.WaitLine($"discovered {bId} "), StringComparison.Ordinal);
        Assert.StartsWith($"discovered {cId} /ip4/127.0.0.3/tcp/", await b.WaitLine($"discovered {cId} "), StringComparison.Ordinal);

        var put = await WeftProcess.RunAsync("p2p", "dht", "put", "greeting", "hello", "--bootstrap", aAddr);
        Assert.True(put.Code == 0, put.Err);
        Assert.StartsWith("stored greeting on ", put.Out, StringComparison.Ordinal);
        var get = await WeftProcess.RunAsync("p2p", "dht", "get", "/weft/greeting", "--bootstrap", bAddr);
        Assert.True(get.Code == 0, get.Err);
        Assert.Equal("hello", get.Out.Trim());
        Assert.Contains("weft: lookup: ", get.Err, StringComparison.Ordinal);

        var providers = await WeftProcess.RunAsync("p2p", "dht", "find-providers", "CLI_TEST", "--bootstrap", aAddr);
        Assert.True(providers.Code == 0, providers.Err);
        Assert.Contains($"provider {bId} /ip4/127.0.0.2/tcp/", providers.Out, StringComparison.Ordinal);
        Assert.Contains($"provider {cId} ", providers.Out, StringComparison.Ordinal);

        var peer = await WeftProcess.RunAsync("p2p", "dht", "find-peer", bId, "--bootstrap", aAddr);
        Assert.True(peer.Code == 0, peer.Err);
        Assert.StartsWith($"peer {bId} /ip4/127.0.0.2/tcp/", peer.Out, StringComparison.Ordinal);

        var missing = await WeftProcess.RunAsync("p2p", "dht", "get", "nothing-here", "--bootstrap", aAddr);
        Assert.Equal(1, missing.Code);
        Assert.Contains("no value found for /weft/nothing-here", missing.Err, StringComparison.Ordinal);
    }
}
