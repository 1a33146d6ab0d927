using System.Globalization;
using System.Text.Json;
using Weft.Lab;
using Xunit.Abstractions;

namespace Weft.Lab.Tests;

/// <summary>
/// `weft agent` in the NAT lab: two relays on the public segment (relay1 10.250.0.1, relay2 10.250.0.2), nodes in
/// LAN 1 and LAN 2 behind their routers. The relays' and nodes' configs are edgemesh-agent.yaml files.
/// </summary>
[Collection(LabCollection.Name)]
public sealed class AgentLabTests(ITestOutputHelper output)
{
    private static readonly (string, string)[] BothRelays = [("relay1", "10.250.0.1"), ("relay2", "10.250.0.2")];

    private static LabOptions Options(NatMode lan2 = NatMode.Symmetric, IReadOnlyList<string>? delay = null) => new()
    {
        ExtraPublicNodes = ["relay2"],
        Lan2Nat = lan2,
        DelayLinks = delay ?? [],
    };

    private static async Task StartAllAsync(LabAgents agents, string extra, params string[] nodes)
    {
        await Task.WhenAll(nodes.Select(n => agents.StartAsync(n, agents.Yaml(n, BothRelays, extra))));
    }

    [RootFact]
    public async Task New_streams_fail_over_to_the_other_relay_when_the_one_in_use_is_killed_or_silently_vanishes()
    {
        await using var lab = await NatLab.CreateAsync(Options());
        await using var agents = new LabAgents(lab);
        await StartAllAsync(agents, "holePunching: false", "relay1", "relay2", "lan1-a", "lan2-a");
        foreach (var n in (string[])["lan1-a", "lan2-a"])
            await agents.WaitStatusAsync(n, s => LabAgents.RelayReserved(s, "relay1") && LabAgents.RelayReserved(s, "relay2"), "reservations on both relays");

        var first = Assert.Single(await agents.PingAsync("lan1-a", "lan2-a"));
        Assert.True(first.Ok, first.Error);
        Assert.Equal("relay", first.Path); // symmetric NAT on LAN 2 and no punch: relayed
        var used = first.Via!;
        var other = used == "relay1" ? "relay2" : "relay1";
        output.WriteLine($"lan1-a -> lan2-a: {first.RttMs:0.000} ms via {used}");

        // 1. The relay process is killed (its sockets get closed by the kernel).
        var gap = await MeasureFailoverAsync(lab, agents, used, other, () => agents.KillAsync(used));
        output.WriteLine($"relay {used} killed: first new stream through {other} {gap.TotalMilliseconds:0} ms later");
        Assert.True(gap < TimeSpan.FromSeconds(1), $"failover after a kill took {gap.TotalMilliseconds:0} ms");

        // The relay comes back: both nodes hold a reservation on it again.
        await agents.StartAsync(used, agents.Yaml(used, BothRelays, "holePunching: false"));
        foreach (var n in (string[])["lan1-a", "lan2-a"])
            await agents.WaitStatusAsync(n, s => LabAgents.RelayReserved(s, used), $"a new reservation on the restarted {used}");

        // 2. The other relay vanishes without a word (its link goes down: no FIN, no RST): the probes find out.
        var now = Assert.Single(await agents.PingAsync("lan1-a", "lan2-a"));
        Assert.True(now.Ok, now.Error);
        var vanishing = now.Via!;
        var survivor = vanishing == "relay1" ? "relay2" : "relay1";
        var silent = await MeasureFailoverAsync(lab, agents, vanishing, survivor, async () =>
        {
            await lab.SetLinkAsync(vanishing, up: false);
            return DateTimeOffset.UtcNow;
        });
        output.WriteLine($"relay {vanishing} vanished silently: first new stream through {survivor} {silent.TotalMilliseconds:0} ms later");
        Assert.True(silent < TimeSpan.FromSeconds(2), $"failover after a silent death took {silent.TotalMilliseconds:0} ms");
        var status = await agents.StatusAsync("lan1-a");
        Assert.NotEqual("up", LabAgents.RelayState(status, vanishing));
        Assert.True(status.GetProperty("failovers").GetInt64() >= 1);
    }

    /// <summary>Measures one failover from lan1-a to lan2-a; every new stream after it goes through <paramref name="next"/>.</summary>
    private async Task<TimeSpan> MeasureFailoverAsync(NatLab lab, LabAgents agents, string failing, string next, Func<Task<DateTimeOffset>> fail)
    {
        var f = await agents.MeasureFailoverAsync("lan1-a", "lan2-a", fail);
        Assert.Equal(next, f.FirstOk.Via);
        Assert.All(f.After.Where(r => r.Ok), r => Assert.Equal(next, r.Via));
        Assert.All(f.After.SkipWhile(r => !r.Ok), r => Assert.True(r.Ok, r.Error)); // after the failover every new stream works
        output.WriteLine($"  after {failing} failed: {f.FailedAfter.Count} new stream(s) failed ({string.Join("; ", f.FailedAfter.Select(x => x.Error).Distinct())}), " +
            $"the first one through {next} opened in {f.FirstOk.OpenMs:0.0} ms");
        return f.Gap;
    }

    [RootFact]
    public async Task Relays_are_added_converted_and_removed_by_editing_relayNodes_without_a_restart()
    {
        await using var lab = await NatLab.CreateAsync(Options());
        await using var agents = new LabAgents(lab);
        (string, string)[] onlyRelay1 = [("relay1", "10.250.0.1")];
        var nodes = new[] { "relay1", "relay2", "lan1-a", "lan2-a" };
        await Task.WhenAll(nodes.Select(n => agents.StartAsync(n, agents.Yaml(n, onlyRelay1, "holePunching: false"))));
        await agents.WaitStatusAsync("lan1-a", s => LabAgents.RelayReserved(s, "relay1"), "a reservation on relay1");
        var relay2 = await agents.StatusAsync("relay2");
        Assert.False(relay2.GetProperty("relayRole").GetProperty("serving").GetBoolean());

        // relay2 is converted into a relay, and every node is told about it, by editing the files only.
        foreach (var n in nodes) agents.WriteConfig(n, agents.Yaml(n, BothRelays, "holePunching: false"));
        var t0 = DateTimeOffset.UtcNow;
        await agents.WaitStatusAsync("relay2", s => s.GetProperty("relayRole").GetProperty("serving").GetBoolean(), "relay2 serving");
        foreach (var n in (string[])["lan1-a", "lan2-a"])
            await agents.WaitStatusAsync(n, s => LabAgents.RelayReserved(s, "relay2"), "a reservation on the new relay2");
        output.WriteLine($"relay2 added by config edit: serving and reserved on by both nodes {(DateTimeOffset.UtcNow - t0).TotalSeconds:0.0} s after the edit");
        Assert.True(DateTimeOffset.UtcNow - t0 < TimeSpan.FromSeconds(10));

        // relay1 leaves relayNodes: its relay service stops, the nodes drop it, traffic goes through relay2.
        (string, string)[] onlyRelay2 = [("relay2", "10.250.0.2")];
        foreach (var n in nodes) agents.WriteConfig(n, agents.Yaml(n, onlyRelay2, "holePunching: false"));
        await agents.WaitStatusAsync("relay1", s => !s.GetProperty("relayRole").GetProperty("serving").GetBoolean(), "relay1 no longer serving");
        await agents.WaitStatusAsync("lan1-a", s => LabAgents.RelayState(s, "relay1") is null, "relay1 gone from lan1-a's relays");
        var ping = Assert.Single(await agents.PingAsync("lan1-a", "lan2-a"));
        Assert.True(ping.Ok, ping.Error);
        Assert.Equal("relay2", ping.Via);

        // A broken edit is rejected and reported; the running configuration stays.
        agents.WriteConfig("lan1-a", "modules: {edgeTunnel: {nodeName: lan1-a, listenPort: soon}}");
        var s2 = await agents.WaitStatusAsync("lan1-a", s => s.GetProperty("lastConfigError").ValueKind == JsonValueKind.String, "the bad edit reported");
        Assert.Contains("not a whole number", s2.GetProperty("lastConfigError").GetString());
        Assert.True(LabAgents.RelayReserved(s2, "relay2"));
    }

    [RootFact]
    public async Task A_slower_relay_loses_preference_and_wins_it_back_only_when_clearly_faster()
    {
        await using var lab = await NatLab.CreateAsync(Options(delay: ["relay1", "relay2"]));
        await using var agents = new LabAgents(lab);
        await StartAllAsync(agents, "holePunching: false", "relay1", "relay2", "lan1-a");
        await agents.WaitStatusAsync("lan1-a", s => LabAgents.RelayReserved(s, "relay1") && LabAgents.RelayReserved(s, "relay2"), "reservations on both relays");

        // A known start: relay2 slow, relay1 preferred.
        await lab.SetDelayAsync("relay2", TimeSpan.FromMilliseconds(10));
        var s0 = await agents.WaitStatusAsync("lan1-a", s => LabAgents.Preferred(s) == "relay1" && Rtt(s, "relay2") > 15, "relay1 preferred while relay2 is slow");
        output.WriteLine($"relay2 delayed +20 ms: preferred relay1; rtts {Rtts(s0)}");

        // Now relay1 is 20 ms slower than relay2: lan1-a moves to relay2.
        await lab.SetDelayAsync("relay2", TimeSpan.Zero);
        await lab.SetDelayAsync("relay1", TimeSpan.FromMilliseconds(10));
        var s1 = await agents.WaitStatusAsync("lan1-a", s => LabAgents.Preferred(s) == "relay2", "relay2 preferred");
        output.WriteLine($"relay1 delayed +20 ms instead: preferred relay2; rtts {Rtts(s1)}");

        // relay1 is as fast as relay2 again: not clearly better, so the preference stays (hysteresis).
        await lab.SetDelayAsync("relay1", TimeSpan.Zero);
        var equal = await agents.WaitStatusAsync("lan1-a", s => Rtt(s, "relay1") < 5, "relay1's RTT back to normal");
        for (var i = 0; i < 5; i++)
        {
            var s = await agents.StatusAsync("lan1-a");
            Assert.Equal("relay2", LabAgents.Preferred(s));
        }
        output.WriteLine($"delay removed: still relay2; rtts {Rtts(equal)}");

        // relay2 becomes 20 ms slower: relay1 is now clearly better and preferred again.
        await lab.SetDelayAsync("relay2", TimeSpan.FromMilliseconds(10));
        var s3 = await agents.WaitStatusAsync("lan1-a", s => LabAgents.Preferred(s) == "relay1", "relay1 preferred again");
        output.WriteLine($"relay2 delayed +20 ms: preferred relay1; rtts {Rtts(s3)}");
        Assert.True(Rtt(s3, "relay2") > Rtt(s3, "relay1") + 10);
    }

    private static double Rtt(JsonElement status, string relay) =>
        status.GetProperty("relays").EnumerateArray().First(r => r.GetProperty("name").GetString() == relay).GetProperty("rttMs") is { ValueKind: JsonValueKind.Number } v
            ? v.GetDouble() : double.MaxValue;

    private static string Rtts(JsonElement s) => string.Join(", ", s.GetProperty("relays").EnumerateArray()
        .Select(r => $"{r.GetProperty("name").GetString()} {r.GetProperty("rttMs")} ms"));

    [RootFact]
    public async Task Nodes_of_a_lan_cut_off_from_relays_and_cloud_find_and_reach_each_other()
    {
        await using var lab = await NatLab.CreateAsync(Options());
        await using var agents = new LabAgents(lab);
        // LAN 1 is cut off before its nodes even start: no relay, no DHT, nothing but the LAN.
        await lab.SetLanConnectedAsync(1, connected: false);
        await StartAllAsync(agents, "", "relay1", "relay2");
        await Task.WhenAll(((string[])["lan1-a", "lan1-b"]).Select(n => agents.StartAsync(n, agents.Yaml(n, BothRelays, persisted: true))));

        // With random identities the names can only come from mDNS and the node-name exchange.
        var first = await agents.WaitPingAsync("lan1-a", "lan1-b");
        Assert.Equal("direct", first.Path);
        var s = await agents.StatusAsync("lan1-a");
        Assert.NotEqual("up", LabAgents.RelayState(s, "relay1")); // no relay was ever reachable
        var pings = await agents.PingAsync("lan1-a", "lan1-b", count: 20, intervalMs: 10);
        Assert.All(pings, p => Assert.True(p.Ok, p.Error));
        Assert.All(pings, p => Assert.Equal("direct", p.Path));
        var back = await agents.PingAsync("lan1-b", "lan1-a", count: 5, intervalMs: 10);
        Assert.All(back, p => Assert.True(p.Ok, p.Error));
        output.WriteLine($"LAN 1 cut off from the start: lan1-a found lan1-b by mDNS; 20/20 new streams direct, median {pings.Select(p => p.RttMs!.Value).Order().ElementAt(10):0.000} ms");

        // Healed, they find the relays and hold reservations.
        await lab.SetLanConnectedAsync(1, connected: true);
        await agents.WaitStatusAsync("lan1-a", x => LabAgents.RelayReserved(x, "relay1") && LabAgents.RelayReserved(x, "relay2"), "reservations after healing");
    }

    [RootFact]
    public async Task Nodes_in_different_lans_find_each_other_by_name_through_the_dht_with_random_identities()
    {
        await using var lab = await NatLab.CreateAsync(Options());
        await using var agents = new LabAgents(lab);
        await Task.WhenAll(((string[])["relay1", "relay2", "lan1-a", "lan2-a"]).Select(n => agents.StartAsync(n, agents.Yaml(n, BothRelays, "holePunching: false", persisted: true))));
        var t0 = DateTimeOffset.UtcNow;
        var ping = await agents.WaitPingAsync("lan1-a", "lan2-a", TimeSpan.FromSeconds(60));
        output.WriteLine($"lan1-a reached lan2-a by name {(DateTimeOffset.UtcNow - t0).TotalSeconds:0.0} s after start (rendezvous through the relays' DHT, then the name exchange), path {ping.Path} via {ping.Via}");
        Assert.Equal("relay", ping.Path);
        var status = await agents.StatusAsync("lan1-a");
        Assert.Contains(status.GetProperty("peers").EnumerateArray(), p => p.GetProperty("name").GetString() == "lan2-a");
    }

    [RootFact]
    public async Task With_no_relay_configured_a_public_node_offers_itself_and_the_others_find_and_use_it()
    {
        await using var lab = await NatLab.CreateAsync(Options());
        await using var agents = new LabAgents(lab);
        // No relayNodes anywhere: relay1 and relay2 are plain nodes on the public segment that may offer relaying;
        // everyone knows them only as bootstrap peers (the DHT's way in).
        const string Bootstrap = "bootstrapPeers: [10.250.0.1, 10.250.0.2]";
        await Task.WhenAll(((string[])["relay1", "relay2"]).Select(n => agents.StartAsync(n, agents.Yaml(n, [], Bootstrap + "\nofferRelay: true", persisted: true))));
        await Task.WhenAll(((string[])["lan1-a", "lan2-a"]).Select(n => agents.StartAsync(n, agents.Yaml(n, [], Bootstrap + "\nholePunching: false", persisted: true))));

        var s1 = await agents.WaitStatusAsync("relay1", s => s.GetProperty("relayRole").GetProperty("serving").GetBoolean(), "relay1 offering itself (AutoNAT: public)", TimeSpan.FromSeconds(60));
        Assert.False(s1.GetProperty("relayRole").GetProperty("configured").GetBoolean());
        var s2 = await agents.WaitStatusAsync("lan1-a", s => s.GetProperty("relays").EnumerateArray().Count(r => r.GetProperty("reserved").GetBoolean()) >= 2,
            "reservations on the two offered relays", TimeSpan.FromSeconds(60));
        output.WriteLine("lan1-a found the offered relays: " + string.Join(", ", s2.GetProperty("relays").EnumerateArray().Select(r => r.GetProperty("name").GetString())));
        var ping = await agents.WaitPingAsync("lan1-a", "lan2-a", TimeSpan.FromSeconds(60));
        Assert.Equal("relay", ping.Path);
        output.WriteLine($"lan1-a -> lan2-a by name through offered relay {ping.Via}: {ping.RttMs:0.000} ms");
    }

    [RootFact]
    public async Task A_relay_with_a_wrong_advertise_address_says_so()
    {
        await using var lab = await NatLab.CreateAsync(Options());
        await using var agents = new LabAgents(lab);
        (string, string)[] relays = [("relay1", "10.250.0.1"), ("relay2", "10.250.0.99")];
        await Task.WhenAll(((string[])["relay1", "relay2"]).Select(n => agents.StartAsync(n, agents.Yaml(n, relays))));
        var s = await agents.WaitStatusAsync("relay2", x => x.GetProperty("warnings").EnumerateArray().Any(w => w.GetString()!.Contains("configured as relay but unreachable", StringComparison.Ordinal)),
            "the unreachable advertise address reported");
        var warning = s.GetProperty("warnings").EnumerateArray().Select(w => w.GetString()!).First(w => w.Contains("unreachable", StringComparison.Ordinal));
        output.WriteLine(warning);
        Assert.Contains("/ip4/10.250.0.99/tcp/20006", warning);
        Assert.Contains("configured as relay but unreachable at /ip4/10.250.0.99/tcp/20006", agents["relay2"].Stderr);
        var r1 = await agents.WaitStatusAsync("relay1", x => x.GetProperty("relayRole").GetProperty("reachability").EnumerateObject().Any(p => p.Value.GetString() == "reachable"),
            "relay1's own address proven reachable");
        Assert.DoesNotContain(r1.GetProperty("warnings").EnumerateArray(), w => w.GetString()!.Contains("unreachable", StringComparison.Ordinal));
    }
}
