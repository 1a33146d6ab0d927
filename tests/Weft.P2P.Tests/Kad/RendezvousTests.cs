using System.Collections.Concurrent;
using Weft.P2P.Discovery;
using Weft.P2P.Host;
using Weft.Wire.Identity;
using static Weft.P2P.Tests.Host.Hosts;

namespace Weft.P2P.Tests.Kad;

public class RendezvousTests
{
    private static RendezvousOptions Fast(string rendezvous = "EDGEMESH_PLAYGOUND") => new()
    {
        Rendezvous = rendezvous,
        FindInterval = TimeSpan.FromMilliseconds(200),
        RetryInterval = TimeSpan.FromMilliseconds(200),
    };

    private sealed class Member(KadDhtTests.Node node, RendezvousService rendezvous) : IAsyncDisposable
    {
        public KadDhtTests.Node Node { get; } = node;
        public RendezvousService Rendezvous { get; } = rendezvous;
        public ConcurrentQueue<PeerDiscovery> Found { get; } = new();

        public async Task<PeerDiscovery> WaitFor(PeerId peer)
        {
            var tcs = new TaskCompletionSource<PeerDiscovery>(TaskCreationOptions.RunContinuationsAsynchronously);
            void On(PeerDiscovery d) { if (d.Peer == peer) tcs.TrySetResult(d); }
            Rendezvous.Discovered += On;
            try
            {
                foreach (var d in Found) On(d);
                return await tcs.Task.WaitAsync(Deadline);
            }
            finally { Rendezvous.Discovered -= On; }
        }

        public async ValueTask DisposeAsync()
        {
            await Rendezvous.DisposeAsync();
            await Node.DisposeAsync();
        }
    }

    private static async Task<Member> Join(int n, KadDhtTests.Node bootstrap, RendezvousOptions options)
    {
        var node = await KadDhtTests.StartNode(n, KadDhtTests.Quiet() with { BootstrapPeers = [bootstrap.Full] });
        var r = new RendezvousService(node.Host, node.Dht, options);
        var m = new Member(node, r);
        r.Discovered += m.Found.Enqueue;
        r.Start();
        return m;
    }

    [Fact]
    public async Task Members_find_each_other_and_late_joiners_through_the_rendezvous_key()
    {
        var network = await KadDhtTests.StartNetwork(5, KadDhtTests.Quiet());
        var members = new List<Member>();
        try
        {
            members.Add(await Join(30, network[0], Fast()));
            members.Add(await Join(31, network[3], Fast()));
            var ab = await members[0].WaitFor(members[1].Node.Id);
            await members[1].WaitFor(members[0].Node.Id);
            Assert.Equal(DiscoverySource.Rendezvous, ab.Source);
            Assert.Contains(members[1].Node.Address, ab.Addresses);
            Assert.Equal("bafkreie777rtklljkfpo24tqxwvftflojq2hhig5etpzason3vxaw3r4oi", members[0].Rendezvous.Key.ToCidString());

            // A node of another mesh is not found; a late joiner of ours is, by the members already running.
            var other = await Join(32, network[1], Fast("ANOTHER_MESH"));
            members.Add(other);
            var late = await Join(33, network[4], Fast());
            members.Add(late);
            await members[0].WaitFor(late.Node.Id);
            await members[1].WaitFor(late.Node.Id);
            await late.WaitFor(members[0].Node.Id);
            Assert.DoesNotContain(members[0].Found, d => d.Peer == other.Node.Id);
            Assert.DoesNotContain(other.Found, d => d.Peer == members[0].Node.Id);
            // Reported once each, never ourselves, though lookups keep running.
            Assert.Single(members[0].Found, d => d.Peer == members[1].Node.Id);
            Assert.DoesNotContain(members[0].Found, d => d.Peer == members[0].Node.Id);
        }
        finally
        {
            foreach (var m in members) await m.DisposeAsync();
            foreach (var n in network) await n.DisposeAsync();
        }
    }

    [Fact]
    public void Invalid_options_are_refused()
    {
        var host = new Libp2pHost(new HostOptions { Key = Ed25519PrivateKey.Generate() });
        var dht = new Weft.P2P.Kad.KadDht(host);
        var ex = Assert.Throws<ArgumentException>(() => new RendezvousService(host, dht, new RendezvousOptions { Rendezvous = "", FindInterval = TimeSpan.Zero }));
        Assert.Contains("must not be empty", ex.Message, StringComparison.Ordinal);
        Assert.Contains("must be positive", ex.Message, StringComparison.Ordinal);
    }
}
