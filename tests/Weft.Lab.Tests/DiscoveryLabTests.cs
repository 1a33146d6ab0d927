using System.Globalization;
using Weft.Lab;
using Xunit.Abstractions;

namespace Weft.Lab.Tests;

/// <summary>
/// Discovery with the real `weft` CLI in the lab's namespaces: mDNS stays inside a LAN (multicast does not cross
/// the NAT routers), several processes share port 5353 on one host, malformed packets change nothing, and the
/// DHT rendezvous through a public DHT server finds peers across the NAT.
/// </summary>
public sealed class DiscoveryLabTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Found = TimeSpan.FromSeconds(20);

    private sealed record Proc(LabWeft Weft, string Id, string Address) : IAsyncDisposable
    {
        /// <summary>The "discovered" line naming <paramref name="other"/>, printed already or coming (earlier waits may have passed over it).</summary>
        public Task<string> WaitDiscovered(Proc other, TimeSpan? within = null)
        {
            var prefix = $"discovered {other.Id} ";
            var seen = Weft.Stdout.Split('\n').FirstOrDefault(l => l.StartsWith(prefix, StringComparison.Ordinal));
            return seen is not null ? Task.FromResult(seen.TrimEnd('\r')) : Weft.WaitLine(prefix, deadline: within ?? Found);
        }

        public ValueTask DisposeAsync() => Weft.DisposeAsync();
    }

    private static async Task<Proc> Serve(NatLab lab, string node, int port, params string[] extra)
    {
        var p = string.Create(CultureInfo.InvariantCulture, $"{port}");
        var w = LabWeft.Start(lab, node, ["p2p", "serve", "--listen", $"/ip4/0.0.0.0/tcp/{p}", .. extra]);
        var ip = lab.Address(node).ToString();
        var line = await w.WaitLine("listening ", l => l.Contains($"/ip4/{ip}/tcp/{p}/p2p/", StringComparison.Ordinal));
        var addr = line["listening ".Length..];
        return new Proc(w, addr[(addr.LastIndexOf('/') + 1)..], $"/ip4/{ip}/tcp/{p}");
    }

    private void Show(params Proc[] procs)
    {
        foreach (var p in procs) output.WriteLine($"{p.Weft.Node} {p.Address}:\n{p.Weft.Stdout}");
    }

    [RootFact]
    public async Task Mdns_finds_the_peers_of_its_own_lan_and_none_across_the_nat()
    {
        await using var lab = await NatLab.CreateAsync(new LabOptions());
        // LAN 2 first: its answers are on the wire long before LAN 1 starts asking.
        await using var l2a = await Serve(lab, "lan2-a", 4001, "--mdns");
        await using var l2b = await Serve(lab, "lan2-b", 4001, "--mdns");
        Assert.EndsWith(" " + l2b.Address, await l2a.WaitDiscovered(l2b), StringComparison.Ordinal);
        Assert.EndsWith(" " + l2a.Address, await l2b.WaitDiscovered(l2a), StringComparison.Ordinal);

        // LAN 1, with two processes on one host (both bind the shared port 5353).
        await using var l1a = await Serve(lab, "lan1-a", 4001, "--mdns");
        await using var l1b = await Serve(lab, "lan1-b", 4001, "--mdns");
        await using var l1b2 = await Serve(lab, "lan1-b", 4002, "--mdns");
        foreach (var (finder, found) in new[] { (l1a, l1b), (l1a, l1b2), (l1b, l1a), (l1b, l1b2), (l1b2, l1b), (l1b2, l1a) })
            Assert.EndsWith(" " + found.Address, await finder.WaitDiscovered(found), StringComparison.Ordinal);

        // A late joiner on LAN 1 is found too; by then LAN 2's many answers would have arrived had they crossed.
        await using var late = await Serve(lab, "lan1-a", 4002, "--mdns");
        await l1b.WaitDiscovered(late);
        await l1a.WaitDiscovered(late);
        Show(l1a, l1b, l1b2, late, l2a, l2b);
        foreach (var lan1 in new[] { l1a, l1b, l1b2, late })
        {
            Assert.DoesNotContain(l2a.Id, lan1.Weft.Stdout, StringComparison.Ordinal);
            Assert.DoesNotContain(l2b.Id, lan1.Weft.Stdout, StringComparison.Ordinal);
            Assert.DoesNotContain("discovered " + lan1.Id, lan1.Weft.Stdout, StringComparison.Ordinal); // never itself
        }
        foreach (var lan2 in new[] { l2a, l2b })
            foreach (var lan1 in new[] { l1a, l1b, l1b2, late })
                Assert.DoesNotContain(lan1.Id, lan2.Weft.Stdout, StringComparison.Ordinal);
    }

    [RootFact]
    public async Task Malformed_multicast_packets_are_dropped_and_discovery_goes_on()
    {
        await using var lab = await NatLab.CreateAsync(new LabOptions());
        var python = NatLab.FindExecutable("python3") ?? throw new InvalidOperationException("python3 is needed for this test");
        await using var a = await Serve(lab, "lan1-a", 4001, "--mdns", "--log-level", "debug");
        // 3,000 datagrams of random bytes (every fourth one made to look like a DNS response) to the mDNS group.
        const string flood = """
import os, random, socket
random.seed(4480)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 255)
s.bind(('0.0.0.0', 5353))
for i in range(3000):
    b = bytearray(os.urandom(random.randint(0, 1400)))
    if i % 4 == 0 and len(b) > 12: b[2] |= 0x80; b[5] = 1
    s.sendto(bytes(b), ('224.0.0.251', 5353))
print('SENT', flush=True)
""";
        var (code, stdout, stderr) = await lab.ExecAsync("lan1-b", [python, "-c", flood], TimeSpan.FromSeconds(60));
        Assert.True(code == 0, stderr);
        Assert.Contains("SENT", stdout, StringComparison.Ordinal);
        await using var b = await Serve(lab, "lan1-b", 4001, "--mdns");
        await a.WaitDiscovered(b);
        await b.WaitDiscovered(a);
        Show(a, b);
        // They did reach it: some were parsed and refused, the rest (over 500 a second) dropped unread.
        Assert.Contains("mDNS: malformed packet from 192.168.1.12:5353 dropped", a.Weft.Stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("Unhandled", a.Weft.Stderr, StringComparison.Ordinal);
    }

    [RootFact]
    public async Task The_dht_rendezvous_finds_peers_across_the_nat()
    {
        await using var lab = await NatLab.CreateAsync(new LabOptions());
        await using var server = await Serve(lab, "relay", 4001, "--dht", "server");
        var bootstrap = $"{server.Address}/p2p/{server.Id}";
        await using var a = await Serve(lab, "lan1-a", 4001, "--mdns", "--dht", "client", "--bootstrap", bootstrap, "--rendezvous", "WEFT_LAB");
        await using var b = await Serve(lab, "lan2-a", 4001, "--mdns", "--dht", "client", "--bootstrap", bootstrap, "--rendezvous", "WEFT_LAB");
        // Each provides the rendezvous key to the public DHT server and finds the other there (mDNS cannot: other LAN).
        Assert.EndsWith(" " + b.Address, await a.WaitDiscovered(b), StringComparison.Ordinal);
        Assert.EndsWith(" " + a.Address, await b.WaitDiscovered(a), StringComparison.Ordinal);
        // A node of another rendezvous is not reported.
        await using var other = await Serve(lab, "lan2-b", 4001, "--dht", "client", "--bootstrap", bootstrap, "--rendezvous", "OTHER_MESH");
        await using var late = await Serve(lab, "lan1-b", 4001, "--dht", "client", "--bootstrap", bootstrap, "--rendezvous", "WEFT_LAB");
        await late.WaitDiscovered(b);
        // The running node looks again every so often (every minute at most), so it finds the late joiner too.
        await b.WaitDiscovered(late, TimeSpan.FromSeconds(75));
        Show(server, a, b, other, late);
        Assert.DoesNotContain(other.Id, b.Weft.Stdout, StringComparison.Ordinal);
        Assert.DoesNotContain(other.Id, late.Weft.Stdout, StringComparison.Ordinal);
    }
}
