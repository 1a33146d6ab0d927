using System.Text;
using Weft.P2P.Host;
using Weft.P2P.IO;
using Weft.P2P.Kad;
using Weft.Wire.Identity;
using Weft.Wire.Kad;
using Weft.Wire.Multiformats;
using Xunit.Abstractions;
using static Weft.P2P.Tests.Host.Hosts;

namespace Weft.P2P.Tests.Kad;

/// <summary>DHT nodes on loopback sockets, each with its own 127.0.0.x address.</summary>
public class KadDhtTests(ITestOutputHelper output)
{
    internal static readonly RecordValidators WithWeft = RecordValidators.Default.With("weft", new OpaqueRecordValidator());

    /// <summary>Test timers: no background refresh (rounds are run explicitly); every node on loopback shares the inbound address 127.0.0.1, so no per-IP cap.</summary>
    internal static KadOptions Quiet(KadOptions? o = null) => (o ?? new KadOptions()) with
    {
        RefreshInterval = TimeSpan.FromHours(1),
        BootstrapRetryInterval = TimeSpan.FromHours(1),
        MaxPeersPerIpPerBucket = 0,
        Validators = WithWeft,
        RequestTimeout = TimeSpan.FromSeconds(5),
    };

    internal sealed class Node : IAsyncDisposable
    {
        public required Libp2pHost Host { get; init; }
        public required KadDht Dht { get; init; }
        public PeerId Id => Host.PeerId;
        public Multiaddr Address => Host.ListenAddresses[0];
        public Multiaddr Full => Address.WithPeerId(Id);

        public async ValueTask DisposeAsync()
        {
            await Dht.DisposeAsync();
            await Host.DisposeAsync();
        }
    }

    internal static async Task<Node> StartNode(int n, KadOptions options)
    {
        var host = await StartAsync(o => o with { ListenAddresses = [Multiaddr.Parse($"/ip4/127.0.0.{n}/tcp/0")] });
        var dht = new KadDht(host, options);
        dht.Start();
        return new Node { Host = host, Dht = dht };
    }

    /// <summary><paramref name="count"/> server nodes; all but the first bootstrap from the first; then every node runs a round, so each one's table reflects the whole network.</summary>
    internal static async Task<List<Node>> StartNetwork(int count, KadOptions options)
    {
        var nodes = new List<Node> { await StartNode(10, options) };
        for (var i = 1; i < count; i++) nodes.Add(await StartNode(10 + i, options with { BootstrapPeers = [nodes[0].Full] }));
        foreach (var n in nodes) await n.Dht.BootstrapAsync().WaitAsync(Deadline);
        return nodes;
    }

    [Fact]
    public async Task Twenty_nodes_resolve_peers_values_and_providers_through_the_dht()
    {
        // Small buckets (k = 4, α = 2), so that tables hold a part of the network and lookups take several hops.
        var nodes = await StartNetwork(20, Quiet(new KadOptions { BucketSize = 4, Alpha = 2 }));
        try
        {
            Assert.All(nodes, n => Assert.InRange(n.Dht.Table.Count, 1, 19));
            // Each node looks up nodes that are not in its own table, so other peers must name them; the two are first
            // disconnected (the refresh rounds connected many pairs), so the answer has to come from DHT requests.
            var hops = new List<int>();
            foreach (var asker in nodes)
            {
                foreach (var target in nodes.Where(t => t != asker && !asker.Dht.Table.Contains(t.Id)).Take(2))
                {
                    foreach (var c in asker.Host.ConnectionsTo(target.Id)) await c.DisposeAsync();
                    var found = await asker.Dht.FindPeerAsync(target.Id).WaitAsync(Deadline);
                    Assert.NotNull(found);
                    Assert.Contains(target.Address, found!.Addresses);
                    Assert.InRange(found.Stats.Hops, 1, 19);
                    hops.Add(found.Stats.Hops);
                    // What was found is dialable.
                    Assert.Equal(target.Id, (await asker.Host.DialPeerAsync(target.Id, []).WaitAsync(Deadline)).RemotePeer);
                }
            }
            Assert.True(hops.Count >= 20, $"only {hops.Count} lookups of peers outside the asker's table");
            output.WriteLine($"hops: {string.Join(' ', hops.GroupBy(h => h).OrderBy(g => g.Key).Select(g => $"{g.Key}×{g.Count()}"))}");

            var key = "/weft/hello"u8.ToArray();
            var put = await nodes[3].Dht.PutValueAsync(key, "world"u8.ToArray()).WaitAsync(Deadline);
            Assert.Equal(put.Tried, put.Stored);
            Assert.Equal(4, put.Tried);
            foreach (var reader in new[] { nodes[16], nodes[9], nodes[0] })
            {
                var got = await reader.Dht.GetValueAsync(key).WaitAsync(Deadline);
                Assert.Equal("world", Encoding.UTF8.GetString(got!.Record.Value));
            }
            Assert.Null(await nodes[5].Dht.GetValueAsync("/weft/nobody"u8.ToArray()).WaitAsync(Deadline));

            var rendezvous = ContentKey.ForText("EDGEMESH_PLAYGOUND");
            await nodes[7].Dht.ProvideAsync(rendezvous).WaitAsync(Deadline);
            await nodes[11].Dht.ProvideAsync(rendezvous).WaitAsync(Deadline);
            foreach (var seeker in new[] { nodes[12], nodes[1], nodes[19] })
            {
                var providers = await seeker.Dht.FindProvidersAsync(rendezvous).WaitAsync(Deadline);
                var p7 = Assert.Single(providers.Providers, p => p.Id == nodes[7].Id);
                Assert.Contains(nodes[7].Address, p7.Addresses);
                Assert.Contains(providers.Providers, p => p.Id == nodes[11].Id);
            }
            Assert.Empty((await nodes[2].Dht.FindProvidersAsync(ContentKey.ForText("nothing")).WaitAsync(Deadline)).Providers);
        }
        finally
        {
            foreach (var n in nodes) await n.DisposeAsync();
        }
    }

    [Fact]
    public async Task A_client_mode_node_queries_without_entering_tables_until_it_switches_to_server()
    {
        var nodes = await StartNetwork(4, Quiet());
        var client = await StartNode(30, Quiet(new KadOptions { Mode = KadMode.Client, BootstrapPeers = [nodes[0].Full] }));
        try
        {
            await client.Dht.BootstrapAsync().WaitAsync(Deadline);
            Assert.Equal(4, client.Dht.Table.Count);
            Assert.DoesNotContain(KadMessage.ProtocolId, client.Host.Protocols);
            var found = await client.Dht.FindPeerAsync(nodes[3].Id).WaitAsync(Deadline);
            Assert.NotNull(found);
            await client.Dht.PutValueAsync("/weft/c"u8.ToArray(), [1]).WaitAsync(Deadline);
            Assert.Equal([1], (await nodes[2].Dht.GetValueAsync("/weft/c"u8.ToArray()).WaitAsync(Deadline))!.Record.Value);
            Assert.All(nodes, n => Assert.False(n.Dht.Table.Contains(client.Id)));

            var added = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            nodes[1].Dht.PeerAdded += p => { if (p == client.Id) added.TrySetResult(); };
            client.Dht.SetMode(KadMode.Server); // identify push tells the connected servers
            await added.Task.WaitAsync(Deadline);
            Assert.Contains(KadMessage.ProtocolId, client.Host.Protocols);
        }
        finally
        {
            await client.DisposeAsync();
            foreach (var n in nodes) await n.DisposeAsync();
        }
    }

    [Fact]
    public async Task Records_are_validated_on_put_locally_and_remotely()
    {
        var nodes = await StartNetwork(3, Quiet() with { Validators = RecordValidators.Default });
        try
        {
            var ex = await Assert.ThrowsAsync<ArgumentException>(() => nodes[0].Dht.PutValueAsync("/weft/x"u8.ToArray(), [1]));
            Assert.Contains("no validator for namespace \"weft\"", ex.Message, StringComparison.Ordinal);

            // A /pk/ record holding another key than the one its name says is refused by the server: the stream is reset.
            var k = Ed25519PrivateKey.Generate();
            byte[] key = [.. "/pk/"u8, .. k.PeerId.Bytes.Span];
            var wrong = new KadRecord { Key = key, Value = Ed25519PrivateKey.Generate().PublicKey.ToProtobuf() };
            var conn = await nodes[0].Host.DialPeerAsync(nodes[1].Id, [nodes[1].Address]).WaitAsync(Deadline);
            var stream = await conn.OpenStreamAsync(KadMessage.ProtocolId, CancellationToken.None).WaitAsync(Deadline);
            new KadMessage { Type = KadMessageType.PutValue, Key = key, Record = wrong }.WriteLengthPrefixedTo(stream.Output);
            await stream.Output.FlushAsync();
            await Assert.ThrowsAnyAsync<Exception>(() => stream.Input.ReadAsync<KadMessage?>(KadMessage.TryRead, CancellationToken.None).AsTask().WaitAsync(Deadline));

            // The right key is accepted, and served to anyone.
            var put = await nodes[0].Dht.PutValueAsync(key, k.PublicKey.ToProtobuf()).WaitAsync(Deadline);
            Assert.Equal(2, put.Stored);
            Assert.Equal(k.PublicKey.ToProtobuf(), (await nodes[2].Dht.GetValueAsync(key).WaitAsync(Deadline))!.Record.Value);
            // /pk/ of a peer a server knows is answered even unstored (from identify or the inlined key).
            byte[] pk1 = [.. "/pk/"u8, .. nodes[1].Id.Bytes.Span];
            Assert.Equal(nodes[1].Host.Options.Key.PublicKey.ToProtobuf(), (await nodes[2].Dht.GetValueAsync(pk1).WaitAsync(Deadline))!.Record.Value);
        }
        finally
        {
            foreach (var n in nodes) await n.DisposeAsync();
        }
    }

    [Fact]
    public async Task Add_provider_for_someone_else_is_ignored()
    {
        var nodes = await StartNetwork(2, Quiet());
        try
        {
            var key = ContentKey.ForText("stolen");
            var someoneElse = Ed25519PrivateKey.Generate().PeerId;
            var conn = await nodes[0].Host.DialPeerAsync(nodes[1].Id, [nodes[1].Address]).WaitAsync(Deadline);
            var stream = await conn.OpenStreamAsync(KadMessage.ProtocolId, CancellationToken.None).WaitAsync(Deadline);
            new KadMessage
            {
                Type = KadMessageType.AddProvider,
                Key = key.Multihash.ToArray(),
                ProviderPeers = [new KadPeer(someoneElse, [Multiaddr.Parse("/ip4/10.1.1.1/tcp/1")])],
            }.WriteLengthPrefixedTo(stream.Output);
            await stream.Output.FlushAsync();
            await stream.DisposeAsync();
            // A request on a new stream after the one above is answered, so that one was handled by then.
            var answer = await AskAsync(nodes[0].Host, nodes[1], new KadMessage { Type = KadMessageType.GetProviders, Key = key.Multihash.ToArray() });
            Assert.Empty(answer.ProviderPeers);
        }
        finally
        {
            foreach (var n in nodes) await n.DisposeAsync();
        }
    }

    /// <summary>Sends one raw request on a new stream and reads the answer.</summary>
    internal static async Task<KadMessage> AskAsync(Libp2pHost from, Node to, KadMessage request)
    {
        var conn = await from.DialPeerAsync(to.Id, [to.Address]).WaitAsync(Deadline);
        var stream = await conn.OpenStreamAsync(KadMessage.ProtocolId, CancellationToken.None).WaitAsync(Deadline);
        request.WriteLengthPrefixedTo(stream.Output);
        await stream.Output.FlushAsync();
        var answer = (await stream.Input.ReadAsync<KadMessage?>(KadMessage.TryRead, CancellationToken.None).AsTask().WaitAsync(Deadline))!;
        await stream.DisposeAsync();
        return answer;
    }

    [Fact]
    public async Task A_flood_of_fake_peers_from_one_address_cannot_take_over_the_routing_table()
    {
        // Default options: at most 2 peers per IP per bucket. The victim dials its 8 honest peers (each listens on
        // its own 127.0.0.x, so the victim sees distinct addresses); 80 fake identities then connect to it from one
        // address (127.0.0.1) and claim to serve the DHT.
        var honest = new List<Node>();
        for (var i = 0; i < 8; i++) honest.Add(await StartNode(40 + i, Quiet() with { MaxPeersPerIpPerBucket = 2 }));
        var victim = await StartNode(50, new KadOptions { BootstrapPeers = honest.Select(h => h.Full).ToList(), RefreshInterval = TimeSpan.FromHours(1), RequestTimeout = TimeSpan.FromSeconds(5) });
        var fakes = new List<Libp2pHost>();
        try
        {
            await victim.Dht.BootstrapAsync().WaitAsync(Deadline);
            Assert.All(honest, h => Assert.True(victim.Dht.Table.Contains(h.Id)));

            var fakeIds = new HashSet<PeerId>();
            var decided = 0;
            var allDecided = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            void Count(PeerId p) { lock (fakeIds) if (fakeIds.Contains(p) && ++decided == 80) allDecided.TrySetResult(); }
            victim.Dht.PeerAdded += Count;
            victim.Dht.PeerRejected += (p, _) => Count(p);
            for (var i = 0; i < 80; i++)
            {
                var fake = new Libp2pHost(new HostOptions { Key = Ed25519PrivateKey.Generate() });
                fake.Handle(KadMessage.ProtocolId, (s, _) => { s.Stream.Reset(); return Task.CompletedTask; });
                lock (fakeIds) fakeIds.Add(fake.PeerId);
                fakes.Add(fake);
            }
            await Task.WhenAll(fakes.Select(f => f.DialPeerAsync(victim.Id, [victim.Address])));
            await allDecided.Task.WaitAsync(Deadline);

            var entries = victim.Dht.Table.Entries;
            Assert.All(honest, h => Assert.Contains(entries, e => e.Peer == h.Id));
            var fakeEntries = entries.Where(e => fakeIds.Contains(e.Peer)).ToList();
            Assert.All(fakeEntries.GroupBy(e => victim.Dht.Table.BucketOf(e.Peer)), g => Assert.True(g.Count() <= 2, $"bucket {g.Key} holds {g.Count()} fakes"));
            output.WriteLine($"table: {entries.Count} peers, {fakeEntries.Count} of them fakes (of 80), in buckets {string.Join(',', fakeEntries.Select(e => victim.Dht.Table.BucketOf(e.Peer)).Distinct().Order())}");
            Assert.True(fakeEntries.Count <= 2 * 10, $"{fakeEntries.Count} fakes got in");

            // Lookups still work: fakes in the table do not answer and are dropped as they are tried.
            var found = await victim.Dht.FindPeerAsync(honest[5].Id).WaitAsync(Deadline);
            Assert.NotNull(found);
        }
        finally
        {
            foreach (var f in fakes) await f.DisposeAsync();
            await victim.DisposeAsync();
            foreach (var n in honest) await n.DisposeAsync();
        }
    }

    [Fact]
    public void Invalid_options_list_every_problem()
    {
        var host = new Libp2pHost(new HostOptions { Key = Ed25519PrivateKey.Generate() });
        var ex = Assert.Throws<ArgumentException>(() => new KadDht(host, new KadOptions { BucketSize = 0, Alpha = 0, BootstrapPeers = [Multiaddr.Parse("/ip4/1.2.3.4/tcp/1")] }));
        Assert.Contains("BucketSize 0", ex.Message, StringComparison.Ordinal);
        Assert.Contains("Alpha 0", ex.Message, StringComparison.Ordinal);
        Assert.Contains("must end with /p2p/", ex.Message, StringComparison.Ordinal);
    }
}
