using System.Net;
using Weft.P2P.Mdns;
using Weft.Wire.Dns;
using Weft.Wire.Identity;

namespace Weft.P2P.Tests.Mdns;

/// <summary>Tests that measure the process's managed memory run alone (nothing else allocates meanwhile).</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class MemoryMeasuringCollection
{
    public const string Name = "memory-measuring";
}

[Collection(MemoryMeasuringCollection.Name)]
public class MdnsFloodTests
{
    [Fact]
    public async Task A_flood_of_malformed_packets_and_fake_peers_is_dropped_without_growing_memory()
    {
        var net = new MemoryMdnsNetwork();
        var options = MdnsServiceTests.Fast() with { MaxTrackedPeers = 16, MaxPacketsPerSecond = 100_000 };
        await using var a = MdnsServiceTests.Start(net, options);
        await using var b = MdnsServiceTests.Start(net);
        await a.WaitFor(b.Id);
        var rng = new Random(4430);
        var from = new IPEndPoint(IPAddress.Parse("10.0.0.66"), 5353);

        async Task FloodAsync(int rounds)
        {
            for (var round = 0; round < rounds; round++)
            {
                for (var i = 0; i < 50; i++)
                {
                    var junk = new byte[rng.Next(0, 600)];
                    rng.NextBytes(junk);
                    if (junk.Length > 4) junk[2] = (byte)(junk[2] | 0x80); // looks like a response
                    net.Inject(junk, from);
                    var fake = Ed25519PrivateKey.Generate().PeerId;
                    var s = new MdnsSelf(options.ServiceName, "fake" + Guid.NewGuid().ToString("N"), fake);
                    net.Inject(new DnsMessage
                    {
                        IsResponse = true,
                        Answers = [new PtrRecord { Name = s.Service, Target = s.Instance, Ttl = 120 }, TxtRecord.FromStrings(s.Instance, [$"dnsaddr=/ip4/10.0.0.66/tcp/1/p2p/{fake}"], 120)],
                    }.ToArray(), from);
                }
                var until = DateTime.UtcNow + MdnsServiceTests.Deadline;
                while (a.Endpoint.Queued > 0 && DateTime.UtcNow < until) await Task.Delay(2);
                Assert.Equal(0, a.Endpoint.Queued);
            }
        }

        await FloodAsync(5); // warm up: JIT, pools
        GC.Collect();
        GC.WaitForPendingFinalizers();
        var before = GC.GetTotalMemory(forceFullCollection: true);
        await FloodAsync(60);
        GC.Collect();
        GC.WaitForPendingFinalizers();
        var after = GC.GetTotalMemory(forceFullCollection: true);
        Assert.True(after - before < 2 << 20, $"managed memory grew by {after - before} bytes");
        Assert.True(a.Mdns.Peers.Count <= 16, $"{a.Mdns.Peers.Count} peers remembered");
        Assert.Contains(a.Mdns.Peers, p => p.Peer == b.Id); // the real peer is still known...
        await using var c = MdnsServiceTests.Start(net);
        await c.WaitFor(a.Id); // ...and the service still answers
    }

}
