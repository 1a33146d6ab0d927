using Weft.Lab;
using Xunit.Abstractions;

namespace Weft.Lab.Tests;

/// <summary>
/// The relay and hole-punch scenarios, with the real `weft` CLI in the lab's namespaces: a relay on the public
/// segment, nodes in two LANs behind NAT routers.
/// </summary>
public sealed class RelayLabTests(ITestOutputHelper output) : IDisposable
{
    private const string Port = "4001";
    private readonly string _dir = Directory.CreateTempSubdirectory("weft-lab-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>Starts the relay (its key persisted in the test's folder) and returns its dialable address.</summary>
    private async Task<(LabWeft Relay, string Address)> StartRelayAsync(NatLab lab, string limits = "off")
    {
        var relay = LabWeft.Start(lab, "relay", "p2p", "serve", "--listen", $"/ip4/0.0.0.0/tcp/{Port}", "--key", Path.Combine(_dir, "relay.key"),
            "--relay-service", "--relay-limits", limits);
        var ip = lab.Address("relay").ToString();
        var line = await relay.WaitLine("listening ", l => l.Contains($"/ip4/{ip}/tcp/{Port}/p2p/", StringComparison.Ordinal));
        return (relay, line["listening ".Length..]);
    }

    /// <summary>Starts a node in a LAN that reserves on the relay; returns it and its circuit address.</summary>
    private static async Task<(LabWeft Node, string Circuit)> StartReservedAsync(NatLab lab, string node, string relayAddr)
    {
        var p = LabWeft.Start(lab, node, "p2p", "serve", "--listen", $"/ip4/0.0.0.0/tcp/{Port}", "--reserve", relayAddr);
        var line = await p.WaitLine("listening ", l => l.Contains("/p2p-circuit/p2p/", StringComparison.Ordinal));
        return (p, line["listening ".Length..]);
    }

    private async Task<(int Code, string Out)> PingAsync(NatLab lab, string node, string target, int waitDirect, int count = 5)
    {
        await using var ping = LabWeft.Start(lab, node, "p2p", "ping", target, "--listen", $"/ip4/0.0.0.0/tcp/{Port}",
            "--wait-direct", waitDirect.ToString(System.Globalization.CultureInfo.InvariantCulture), "--count", count.ToString(System.Globalization.CultureInfo.InvariantCulture));
        var code = await ping.WaitExit(TimeSpan.FromSeconds(waitDirect + 30));
        output.WriteLine($"{node} ping (exit {code}):\n{ping.Stdout}{ping.Stderr}");
        return (code, ping.Stdout);
    }

    [RootFact]
    public async Task Lan1_reaches_lan2_through_the_relay_and_the_hole_punch_makes_the_path_direct()
    {
        await using var lab = await NatLab.CreateAsync(new LabOptions { Lan1Nat = NatMode.PortRestrictedCone, Lan2Nat = NatMode.PortRestrictedCone });
        var (relay, relayAddr) = await StartRelayAsync(lab);
        await using var _ = relay;
        var (b, circuit) = await StartReservedAsync(lab, "lan2-a", relayAddr);
        await using var __ = b;
        Assert.StartsWith(relayAddr + "/p2p-circuit/p2p/", circuit, StringComparison.Ordinal);

        var (code, stdout) = await PingAsync(lab, "lan1-a", circuit, waitDirect: 15);
        Assert.Equal(0, code);
        Assert.Contains($"connected to ", stdout, StringComparison.Ordinal);
        Assert.Contains("/p2p-circuit/", stdout.Split('\n')[0], StringComparison.Ordinal);

        // The direct path goes to LAN2's NAT router (its WAN address, the port B listens on): not via the relay.
        var path = stdout.Split('\n').Single(l => l.StartsWith("path ", StringComparison.Ordinal));
        Assert.StartsWith($"path direct /ip4/{lab.PublicAddress("lan2-a")}/tcp/{Port} ", path, StringComparison.Ordinal);
        Assert.Contains("5 pings", stdout, StringComparison.Ordinal);

        // B, which started the punch, reports it too (through LAN1's router).
        var punched = await b.WaitLine("direct ");
        output.WriteLine("lan2-a: " + punched);
        Assert.Contains($"/ip4/{lab.PublicAddress("lan1-a")}/tcp/{Port}", punched, StringComparison.Ordinal);
    }

    [RootFact]
    public async Task Under_symmetric_nat_the_punch_fails_and_traffic_stays_on_the_relay()
    {
        await using var lab = await NatLab.CreateAsync(new LabOptions { Lan1Nat = NatMode.Symmetric, Lan2Nat = NatMode.Symmetric });
        var (relay, relayAddr) = await StartRelayAsync(lab);
        await using var _ = relay;
        var (b, circuit) = await StartReservedAsync(lab, "lan2-a", relayAddr);
        await using var __ = b;

        var (code, stdout) = await PingAsync(lab, "lan1-a", circuit, waitDirect: 8);
        Assert.Equal(0, code);
        Assert.Contains("path relayed ", stdout, StringComparison.Ordinal);
        Assert.Contains("5 pings", stdout, StringComparison.Ordinal);
        var gaveUp = await b.WaitLine("relayed ");
        output.WriteLine("lan2-a: " + gaveUp);
        Assert.Contains("after 3 attempt(s)", gaveUp, StringComparison.Ordinal);
    }

    [RootFact]
    public async Task AutoNAT_finds_the_public_node_public_and_the_node_behind_nat_private()
    {
        await using var lab = await NatLab.CreateAsync(new LabOptions());
        var (relay, relayAddr) = await StartRelayAsync(lab);
        await using var _ = relay;
        await using var pub = LabWeft.Start(lab, "public", "p2p", "serve", "--listen", $"/ip4/0.0.0.0/tcp/{Port}", "--reserve", relayAddr);
        await using var natted = LabWeft.Start(lab, "lan1-a", "p2p", "serve", "--listen", $"/ip4/0.0.0.0/tcp/{Port}", "--reserve", relayAddr);

        // The relay dials the public node back at the address it saw; the NAT drops its dial-back to LAN1.
        var p = await pub.WaitLine("reachability ", deadline: TimeSpan.FromSeconds(60));
        output.WriteLine("public: " + p);
        Assert.Equal($"reachability public /ip4/{lab.Address("public")}/tcp/{Port}", p);
        var n = await natted.WaitLine("reachability ", deadline: TimeSpan.FromSeconds(60));
        output.WriteLine("lan1-a: " + n);
        Assert.Equal("reachability private", n);
    }

    [RootFact]
    public async Task A_relay_restart_is_followed_by_a_new_reservation()
    {
        await using var lab = await NatLab.CreateAsync(new LabOptions());
        var (relay, relayAddr) = await StartRelayAsync(lab);
        var (b, circuit) = await StartReservedAsync(lab, "lan2-a", relayAddr);
        await using var __ = b;

        await relay.DisposeAsync();
        var lost = await b.WaitLine("reservation lost on ");
        output.WriteLine("lan2-a: " + lost);

        var (relay2, relayAddr2) = await StartRelayAsync(lab);
        await using var _ = relay2;
        Assert.Equal(relayAddr, relayAddr2); // same persisted key, same address
        var again = await b.WaitLine("reserved on ");
        output.WriteLine("lan2-a: " + again);

        // The new reservation carries traffic: LAN1 reaches B through the restarted relay.
        var (code, stdout) = await PingAsync(lab, "lan1-a", circuit, waitDirect: 0, count: 3);
        Assert.Equal(0, code);
        Assert.Contains("3 pings", stdout, StringComparison.Ordinal);
    }
}
