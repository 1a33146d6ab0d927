using System.Diagnostics;
using Weft.Lab;

namespace Weft.Lab.Tests;

public sealed class NatLabTests
{
    private static readonly TimeSpan PingWait = TimeSpan.FromSeconds(2);

    [RootFact]
    public async Task Lab_builds_hosts_reach_relay_but_not_the_other_lan()
    {
        var options = new LabOptions();
        await using NatLab lab = await NatLab.CreateAsync(options, CancellationToken.None);

        IReadOnlyList<string> all = NatLab.ListNamespaces();
        foreach (string node in NatLab.Nodes)
        {
            string ns = lab.Namespace(node);
            Assert.StartsWith(options.Prefix, ns, StringComparison.Ordinal);
            Assert.True(ns.Length <= 15, ns);
            Assert.Contains(ns, all);
        }

        // Nothing was created in the root namespace.
        string rootLinks = await Probes.RootAsync("ip", "-o", "link", "show");
        Assert.DoesNotContain(": " + options.Prefix, rootLinks, StringComparison.Ordinal);

        foreach (string host in NatLab.LanHosts)
        {
            Assert.True(await lab.PingAsync(host, lab.Address("relay"), PingWait), $"{host} cannot ping the relay");
        }

        Assert.True(await lab.PingAsync("lan1-a", lab.Address("lan1-b"), PingWait), "hosts on the same LAN cannot ping each other (P15?)");
        Assert.True(await lab.PingAsync("lan2-b", lab.Address("lan2-a"), PingWait), "hosts on the same LAN cannot ping each other (P15?)");

        Assert.False(await lab.PingAsync("lan1-a", lab.Address("lan2-a"), PingWait), "LAN1 reached a LAN2 private address");
        Assert.False(await lab.PingAsync("lan2-b", lab.Address("lan1-b"), PingWait), "LAN2 reached a LAN1 private address");
        Assert.False(await lab.PingAsync("relay", lab.Address("lan1-a"), PingWait), "the relay reached a private address");
    }

    [RootFact]
    public async Task Port_restricted_nat_maps_to_router_wan_address_and_filters_other_ports()
    {
        await using NatLab lab = await NatLab.CreateAsync(new LabOptions(), CancellationToken.None);
        Assert.NotNull(NatLab.FindExecutable("python3"));

        var (seen, answers) = await Probes.UdpProbeAsync(lab, "lan1-a", 40000);

        // The relay sees router1's WAN address with the port preserved (endpoint-independent mapping), never 192.168.x.
        Assert.Equal($"{lab.PublicAddress("lan1-a")} 40000", seen);
        Assert.DoesNotContain("192.168.", seen, StringComparison.Ordinal);

        // Only the exact ip:port that was contacted gets back in.
        Assert.Equal($"{lab.Address("relay")}:5000", answers);

        var (seen2, _) = await Probes.UdpProbeAsync(lab, "lan2-b", 40001);
        Assert.Equal($"{lab.Address("router2")} 40001", seen2);
    }

    [RootFact]
    public async Task Symmetric_and_full_cone_modes_build_and_behave()
    {
        await using NatLab lab = await NatLab.CreateAsync(
            new LabOptions { Lan1Nat = NatMode.Symmetric, Lan2Nat = NatMode.FullCone }, CancellationToken.None);
        Assert.Equal(NatMode.Symmetric, lab.NatOf("lan1-b"));
        Assert.Equal(NatMode.FullCone, lab.NatOf("router2"));
        Assert.Null(lab.NatOf("relay"));

        Assert.True(await lab.PingAsync("lan1-a", lab.Address("relay"), PingWait));
        Assert.True(await lab.PingAsync("lan2-a", lab.Address("relay"), PingWait));

        // Symmetric: router1's WAN address, and an unsolicited packet from another relay port is dropped.
        var (seen, answers) = await Probes.UdpProbeAsync(lab, "lan1-a", 40000);
        Assert.StartsWith($"{lab.Address("router1")} ", seen, StringComparison.Ordinal);
        Assert.Equal($"{lab.Address("relay")}:5000", answers);

        // Full cone: the mapping is port-preserving and a packet from any port of the relay gets in.
        var (seen2, answers2) = await Probes.UdpProbeAsync(lab, "lan2-a", 40002);
        Assert.Equal($"{lab.Address("router2")} 40002", seen2);
        Assert.Equal($"{lab.Address("relay")}:5000 {lab.Address("relay")}:5001", answers2);
    }

    [RootFact]
    public async Task Dispose_removes_everything_even_when_the_body_throws()
    {
        var options = new LabOptions();
        NatLab? captured = null;
        Process? sleeper = null;
        var thrown = await Assert.ThrowsAsync<InvalidOperationException>(async () =>
        {
            await using NatLab lab = await NatLab.CreateAsync(options, CancellationToken.None);
            captured = lab;
            sleeper = lab.Start("lan2-b", ["sleep", "300"]);
            sleeper.BeginOutputReadLine();
            sleeper.BeginErrorReadLine();
            Assert.Contains(lab.Namespace("lan2-b"), NatLab.ListNamespaces());
            throw new InvalidOperationException("boom");
        });
        Assert.Equal("boom", thrown.Message);

        Assert.DoesNotContain(NatLab.ListNamespaces(), ns => ns.StartsWith(options.Prefix, StringComparison.Ordinal));
        Assert.NotNull(sleeper);
        Assert.True(sleeper.HasExited);
        Assert.DoesNotContain(": " + options.Prefix, await Probes.RootAsync("ip", "-o", "link", "show"), StringComparison.Ordinal);

        // Idempotent, and the lab refuses further use.
        Assert.NotNull(captured);
        await captured.DisposeAsync();
        Assert.Throws<ObjectDisposedException>(() => captured.Start("relay", ["true"]));
    }

    [RootFact]
    public async Task Failed_create_cleans_up_what_it_made_and_RemoveStale_removes_leftovers()
    {
        var options = new LabOptions();
        string squatter = options.Prefix + "h22"; // lan2-b's namespace, created last
        await Probes.RootAsync("ip", "netns", "add", squatter);
        try
        {
            var e = await Assert.ThrowsAsync<LabCommandException>(() => NatLab.CreateAsync(options, CancellationToken.None));
            Assert.Contains("netns add " + squatter, e.Command, StringComparison.Ordinal);

            // Everything the failed build made is gone; the namespace it did not make is left alone.
            var left = NatLab.ListNamespaces().Where(ns => ns.StartsWith(options.Prefix, StringComparison.Ordinal)).ToArray();
            Assert.Equal([squatter], left);
        }
        finally
        {
            IReadOnlyList<string> removed = NatLab.RemoveStale(options.Prefix);
            Assert.Equal([squatter], removed);
        }

        Assert.DoesNotContain(NatLab.ListNamespaces(), ns => ns.StartsWith(options.Prefix, StringComparison.Ordinal));
    }

    [RootFact]
    public async Task Cancelled_create_leaves_nothing_behind()
    {
        var options = new LabOptions();
        using var cts = new CancellationTokenSource();
        await cts.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => NatLab.CreateAsync(options, cts.Token));
        Assert.DoesNotContain(NatLab.ListNamespaces(), ns => ns.StartsWith(options.Prefix, StringComparison.Ordinal));
    }

    [RootFact]
    public async Task Create_cancelled_mid_build_leaves_nothing_behind()
    {
        foreach (int ms in (int[])[1, 3, 10, 30, 60, 120, 250])
        {
            var options = new LabOptions();
            using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(ms));
            try
            {
                await using NatLab lab = await NatLab.CreateAsync(options, cts.Token);
            }
            catch (OperationCanceledException)
            {
                // expected for the short delays
            }

            Assert.DoesNotContain(NatLab.ListNamespaces(), ns => ns.StartsWith(options.Prefix, StringComparison.Ordinal));
        }
    }

    [Fact]
    public async Task Options_validate_the_prefix()
    {
        Assert.Matches("^wl[0-9a-f]{4}$", new LabOptions().Prefix);
        Assert.Throws<ArgumentException>(() => NatLab.RemoveStale(""));
        Assert.Throws<ArgumentException>(() => NatLab.RemoveStale("w"));
        Assert.Throws<ArgumentException>(() => NatLab.RemoveStale("Wl12"));
        Assert.Throws<ArgumentException>(() => NatLab.RemoveStale("wl-12"));
        Assert.Throws<ArgumentException>(() => NatLab.RemoveStale("abcdefghijklm"));
        await Assert.ThrowsAsync<ArgumentException>(() => NatLab.CreateAsync(new LabOptions { Prefix = "1abc" }, CancellationToken.None));
        await Assert.ThrowsAsync<ArgumentException>(() => NatLab.CreateAsync(new LabOptions { Prefix = "abcdefghijklm" }, CancellationToken.None));
    }
}
