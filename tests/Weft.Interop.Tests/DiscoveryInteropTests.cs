using System.Text;
using System.Text.Json;
using Weft.Lab;
using Weft.Lab.Tests;
using Weft.P2P.Echo;
using Weft.P2P.Host;
using Weft.P2P.Kad;
using Weft.P2P.Ping;
using Weft.Wire.Identity;
using Weft.Wire.Kad;
using Weft.Wire.Multiformats;
using Xunit.Abstractions;

namespace Weft.Interop.Tests;

/// <summary>
/// Discovery between Weft and js-libp2p 3.3.11: mDNS both ways inside a lab LAN (multicast must not run in the
/// root namespace), and a Weft node joining a three-node js kad-dht where put/get, provide/find-providers and
/// find-peer work in both directions (js operations are one-shot js DHT clients, `peer.mjs dht OP`).
/// </summary>
[Collection("js")]
public class DiscoveryInteropTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Deadline = JsPeer.Deadline;

    private static string PeerScript => Path.Combine(JsPeer.ScriptDir, "peer.mjs");

    [RootFact]
    public async Task Weft_finds_js_by_mdns_and_js_finds_weft_also_on_one_host()
    {
        var node = NatLab.FindExecutable("node") ?? throw new InvalidOperationException("node is not on PATH");
        await using var lab = await NatLab.CreateAsync(new LabOptions());
        await using var js = JsPeer.Attach(lab.Start("lan1-a", [node, PeerScript, "listen", "--host", "0.0.0.0", "--port", "4001", "--mdns", "--seed", "weft-mdns-js"]));
        var jsId = await js.WaitLine("PEER_ID");
        await using var weft = LabWeft.Start(lab, "lan1-b", "p2p", "serve", "--listen", "/ip4/0.0.0.0/tcp/4001", "--mdns");
        var weftId = Id(await weft.WaitLine("listening "));
        // Another Weft on the js host: two processes (one of them js) on one host share port 5353.
        await using var neighbour = LabWeft.Start(lab, "lan1-a", "p2p", "serve", "--listen", "/ip4/0.0.0.0/tcp/4002", "--mdns");
        var neighbourId = Id(await neighbour.WaitLine("listening "));

        Assert.Equal($"discovered {jsId} /ip4/192.168.1.11/tcp/4001", await weft.WaitLine($"discovered {jsId} "));
        var seen = await js.WaitJson("MDNS_DISCOVERED", e => e.GetProperty("peerId").GetString() == weftId);
        Assert.Contains("/ip4/192.168.1.12/tcp/4001", Strings(seen, "addrs"));
        Assert.DoesNotContain(Strings(seen, "addrs"), a => a.Contains("127.0.0.1", StringComparison.Ordinal)); // Weft announces no loopback

        Assert.Equal($"discovered {jsId} /ip4/192.168.1.11/tcp/4001", await neighbour.WaitLine($"discovered {jsId} "));
        var seenNeighbour = await js.WaitJson("MDNS_DISCOVERED", e => e.GetProperty("peerId").GetString() == neighbourId);
        Assert.Contains("/ip4/192.168.1.11/tcp/4002", Strings(seenNeighbour, "addrs"));
        output.WriteLine($"weft:\n{weft.Stdout}\nneighbour:\n{neighbour.Stdout}");
    }

    private static string Id(string listeningLine) => listeningLine[(listeningLine.LastIndexOf('/') + 1)..];

    private static List<string> Strings(JsonElement e, string name) => e.GetProperty(name).EnumerateArray().Select(x => x.GetString()!).ToList();

    /// <summary>Runs one js DHT operation against the js network and returns its DHT_RESULT.</summary>
    private async Task<JsonElement> JsDht(Multiaddr bootstrap, params string[] op)
    {
        await using var js = JsPeer.Start(["dht", .. op, "--bootstrap", bootstrap.ToString(), "--deadline-s", "50"]);
        try
        {
            var r = await js.WaitJson("DHT_RESULT");
            output.WriteLine($"js dht {string.Join(' ', op)}: {r}");
            return r;
        }
        catch
        {
            output.WriteLine($"js dht {string.Join(' ', op)} failed:\n{string.Join('\n', js.Lines)}\n{js.Stderr}");
            throw;
        }
    }

    [Fact]
    public async Task Weft_joins_a_js_dht_and_values_providers_and_peers_resolve_both_ways()
    {
        await using var dht3 = JsPeer.Start("dht3", "--deadline-s", "120");
        var jsNodes = new List<Multiaddr>();
        for (var i = 0; i < 3; i++) jsNodes.Add(Multiaddr.Parse(await dht3.WaitLine("DHT_NODE")));
        await dht3.WaitJson("READY");

        var host = new Libp2pHost(new HostOptions { Key = Ed25519PrivateKey.Generate(), ListenAddresses = [Multiaddr.Parse("/ip4/127.0.0.1/tcp/0")] });
        await using var _ = host;
        PingService.Register(host); // js checks a new routing-table contact with ping
        EchoService.Register(host);
        await host.StartAsync();
        var weftAddr = host.ListenAddresses[0];
        var dht = new KadDht(host, new KadOptions
        {
            BootstrapPeers = [jsNodes[0]],
            Validators = RecordValidators.Default.With("weft", new OpaqueRecordValidator()),
            MaxPeersPerIpPerBucket = 0, // every js node is on 127.0.0.1
            RefreshInterval = TimeSpan.FromHours(1),
        });
        await using var __ = dht;
        dht.Start();
        await dht.BootstrapAsync().WaitAsync(Deadline);
        Assert.Equal(3, dht.Table.Count);

        // Weft → js: a value Weft puts is read by a js client.
        var put = await dht.PutValueAsync("/weft/from-weft"u8.ToArray(), "hello js"u8.ToArray()).WaitAsync(Deadline);
        Assert.Equal(3, put.Stored);
        Assert.Equal("hello js", (await JsDht(jsNodes[1], "get", "/weft/from-weft")).GetProperty("value").GetString());

        // js → Weft: a value a js client puts is read by Weft.
        await JsDht(jsNodes[2], "put", "from-js", "hello weft");
        var got = await dht.GetValueAsync("/weft/from-js"u8.ToArray()).WaitAsync(Deadline);
        Assert.Equal("hello weft", Encoding.UTF8.GetString(got!.Record.Value));

        // js → Weft: providers.
        var provided = await JsDht(jsNodes[1], "provide", "EDGEMESH_PLAYGOUND");
        Assert.Equal("bafkreie777rtklljkfpo24tqxwvftflojq2hhig5etpzason3vxaw3r4oi", provided.GetProperty("cid").GetString());
        var jsProviders = await dht.FindProvidersAsync(ContentKey.ForText("EDGEMESH_PLAYGOUND")).WaitAsync(Deadline);
        var jsProvider = Assert.Single(jsProviders.Providers);
        Assert.NotEmpty(jsProvider.Addresses);

        // Weft → js: providers.
        var weftProvide = await dht.ProvideAsync(ContentKey.ForText("WEFT_RENDEZVOUS")).WaitAsync(Deadline);
        Assert.Equal(3, weftProvide.Stored);
        var found = await JsDht(jsNodes[2], "find-providers", "WEFT_RENDEZVOUS");
        var p = Assert.Single(found.GetProperty("providers").EnumerateArray(), x => x.GetProperty("peerId").GetString() == host.PeerId.ToString());
        Assert.Contains(weftAddr.ToString(), Strings(p, "addrs"));

        // Peers both ways: js finds Weft through the js servers, Weft finds a js server it is not connected to.
        var jsFinds = await JsDht(jsNodes[0], "find-peer", host.PeerId.ToString());
        Assert.Contains(weftAddr.ToString(), Strings(jsFinds, "addrs"));
        var target = jsNodes[2].PeerId!;
        foreach (var c in host.ConnectionsTo(target)) await c.DisposeAsync();
        var weftFinds = await dht.FindPeerAsync(target).WaitAsync(Deadline);
        Assert.Contains(jsNodes[2].WithoutPeerId(), weftFinds!.Addresses);
    }
}
