using System.Buffers;
using Weft.Mesh.Discovery;
using Weft.Mesh.Identity;
using Weft.P2P.Discovery;
using Weft.P2P.Host;
using Weft.P2P.IO;
using Weft.Wire.Identity;
using Weft.Wire.Multiformats;
using Weft.Wire.Tunnel;

namespace Weft.Mesh.Tests.Discovery;

public class NodeNameExchangeTests
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(20);

    private static async Task<Libp2pHost> StartHost(Ed25519PrivateKey? key = null)
    {
        var host = new Libp2pHost(new HostOptions { Key = key ?? Ed25519PrivateKey.Generate(), ListenAddresses = [Multiaddr.Parse("/ip4/127.0.0.1/tcp/0")] });
        await host.StartAsync();
        return host;
    }

    private sealed class Side(Libp2pHost host, NodeNameExchange exchange) : IAsyncDisposable
    {
        public Libp2pHost Host { get; } = host;
        public NodeNameExchange Exchange { get; } = exchange;
        public Multiaddr Address => Host.ListenAddresses[0];

        public async ValueTask DisposeAsync()
        {
            await Exchange.DisposeAsync();
            await Host.DisposeAsync();
        }
    }

    private static async Task<Side> Start(string nodeName, NodeNameCheck check = NodeNameCheck.None, Ed25519PrivateKey? key = null)
    {
        var host = await StartHost(key);
        var x = new NodeNameExchange(host, new NodeNameExchangeOptions { NodeName = nodeName, Check = check });
        x.Start();
        return new Side(host, x);
    }

    [Fact]
    public async Task Both_sides_learn_each_others_node_name()
    {
        await using var a = await Start("ke-edge1");
        await using var b = await Start("ke-edge2");
        var learnedByB = new TaskCompletionSource<NodeNameLearned>(TaskCreationOptions.RunContinuationsAsynchronously);
        b.Exchange.Directory.Learned += l => learnedByB.TrySetResult(l);
        Assert.Equal("ke-edge2", await a.Exchange.ExchangeAsync(b.Host.PeerId, [b.Address], DiscoveryMessage.Mdns).WaitAsync(Deadline));
        Assert.True(a.Exchange.Directory.TryGetPeer("ke-edge2", out var p) && p == b.Host.PeerId);
        Assert.True(a.Exchange.Directory.TryGetNodeName(b.Host.PeerId, out var n) && n == "ke-edge2");
        var l = await learnedByB.Task.WaitAsync(Deadline);
        Assert.Equal(new NodeNameLearned("ke-edge1", a.Host.PeerId, "inbound", l.At), l);
    }

    [Fact]
    public async Task The_handler_answers_edgemesh_bytes_with_edgemesh_bytes()
    {
        await using var b = await Start("ke-edge1");
        await using var raw = await StartHost();
        var conn = await raw.DialPeerAsync(b.Host.PeerId, [b.Address]).WaitAsync(Deadline);
        var stream = await conn.OpenStreamAsync(DiscoveryMessage.ProtocolId, CancellationToken.None).WaitAsync(Deadline);
        // reference/edgemesh.md §6.3: Discovery CONNECT (MDNS, ke-edge2) as a Go agent sends it.
        await stream.Output.WriteAsync(Convert.FromHexString("1208001204" + "4d444e53" + "1a08" + "6b652d6564676532"));
        var reply = await ReadAllAsync(stream.Input);
        // SUCCESS, protocol echoed, our name: 12 08 01 12 04 "MDNS" 1a 08 "ke-edge1".
        Assert.Equal("120801" + "12044d444e53" + "1a086b652d6564676531", Convert.ToHexStringLower(reply));
        Assert.True(b.Exchange.Directory.TryGetPeer("ke-edge2", out var p) && p == raw.PeerId);
    }

    private static async Task<byte[]> ReadAllAsync(System.IO.Pipelines.PipeReader input)
    {
        using var cts = new CancellationTokenSource(Deadline);
        var bytes = new List<byte>();
        while (true)
        {
            var r = await input.ReadAsync(cts.Token);
            foreach (var seg in r.Buffer) bytes.AddRange(seg.ToArray());
            var done = r.IsCompleted;
            input.AdvanceTo(r.Buffer.End);
            if (done) return bytes.ToArray();
        }
    }

    [Theory]
    [InlineData("020801", "")] // SUCCESS instead of CONNECT: no answer, stream closed
    [InlineData("0408001200", "020802")] // CONNECT without a node name: FAILED (Go's reset message)
    public async Task Bad_requests_get_no_answer_or_failed(string request, string expected)
    {
        await using var b = await Start("ke-edge1");
        await using var raw = await StartHost();
        var conn = await raw.DialPeerAsync(b.Host.PeerId, [b.Address]).WaitAsync(Deadline);
        var stream = await conn.OpenStreamAsync(DiscoveryMessage.ProtocolId, CancellationToken.None).WaitAsync(Deadline);
        await stream.Output.WriteAsync(Convert.FromHexString(request));
        await stream.Output.CompleteAsync();
        Assert.Equal(expected, Convert.ToHexStringLower(await ReadAllAsync(stream.Input)));
        Assert.Equal(0, b.Exchange.Directory.Count);
    }

    [Fact]
    public async Task A_malformed_request_resets_its_stream_and_the_next_exchange_works()
    {
        await using var b = await Start("ke-edge1");
        await using var a = await Start("ke-edge2");
        var conn = await a.Host.DialPeerAsync(b.Host.PeerId, [b.Address]).WaitAsync(Deadline);
        var stream = await conn.OpenStreamAsync(DiscoveryMessage.ProtocolId, CancellationToken.None).WaitAsync(Deadline);
        await stream.Output.WriteAsync(Convert.FromHexString("ffff03")); // over the 4096-byte limit
        await Assert.ThrowsAnyAsync<Exception>(() => ReadAllAsync(stream.Input));
        Assert.Equal("ke-edge1", await a.Exchange.ExchangeAsync(b.Host.PeerId, [], DiscoveryMessage.Dht).WaitAsync(Deadline));
    }

    [Fact]
    public async Task With_the_legacy_check_only_the_derived_identity_may_claim_a_name()
    {
        await using var b = await Start("relay-1", NodeNameCheck.LegacyIdentity, LegacyIdentity.DeriveKey("relay-1"));
        await using var honest = await Start("ke-edge1", NodeNameCheck.LegacyIdentity, LegacyIdentity.DeriveKey("ke-edge1"));
        await using var liar = await Start("ke-edge2", NodeNameCheck.LegacyIdentity); // a random key claiming ke-edge2
        Assert.Equal("relay-1", await honest.Exchange.ExchangeAsync(b.Host.PeerId, [b.Address], DiscoveryMessage.Dht).WaitAsync(Deadline));
        var ex = await Assert.ThrowsAsync<InvalidOperationException>(() => liar.Exchange.ExchangeAsync(b.Host.PeerId, [b.Address], DiscoveryMessage.Dht));
        Assert.Contains("Failed", ex.Message, StringComparison.Ordinal);
        Assert.True(b.Exchange.Directory.TryGetPeer("ke-edge1", out _));
        Assert.False(b.Exchange.Directory.TryGetPeer("ke-edge2", out _));
    }

    private sealed class FakeDiscovery : IPeerDiscovery
    {
        public event Action<PeerDiscovery>? Discovered;
        public void Raise(PeerDiscovery d) => Discovered?.Invoke(d);
    }

    [Fact]
    public async Task Discoveries_trigger_exchanges_once()
    {
        await using var a = await Start("ke-edge1");
        await using var b = await Start("ke-edge2");
        var source = new FakeDiscovery();
        a.Exchange.Attach(source);
        var learned = new TaskCompletionSource<NodeNameLearned>(TaskCreationOptions.RunContinuationsAsynchronously);
        var count = 0;
        a.Exchange.Directory.Learned += l => { Interlocked.Increment(ref count); learned.TrySetResult(l); };
        var d = new PeerDiscovery(b.Host.PeerId, [b.Address], DiscoverySource.Mdns, DateTimeOffset.UtcNow);
        source.Raise(d);
        var l = await learned.Task.WaitAsync(Deadline);
        Assert.Equal(("ke-edge2", "MDNS"), (l.NodeName, l.How));
        source.Raise(d); // soon after a success: not asked again
        var second = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        a.Exchange.Failed += (_, _) => second.TrySetResult();
        source.Raise(new PeerDiscovery(Ed25519PrivateKey.Generate().PeerId, [Multiaddr.Parse("/ip4/127.0.0.1/tcp/1")], DiscoverySource.Rendezvous, DateTimeOffset.UtcNow));
        await second.Task.WaitAsync(Deadline); // an unreachable peer fails (reported), after the repeat was skipped
        Assert.Equal(1, Volatile.Read(ref count));
    }

    [Fact]
    public void The_directory_moves_names_and_is_bounded()
    {
        var dir = new NodeDirectory(maxNodes: 2);
        var p1 = Ed25519PrivateKey.Generate().PeerId;
        var p2 = Ed25519PrivateKey.Generate().PeerId;
        var t = DateTimeOffset.UnixEpoch;
        var events = new List<NodeNameLearned>();
        dir.Learned += events.Add;
        dir.Set("a", p1, "MDNS", t);
        dir.Set("a", p1, "MDNS", t.AddSeconds(1)); // confirmed, no event
        dir.Set("a", p2, "DHT", t.AddSeconds(2)); // the name moves to p2
        Assert.False(dir.TryGetNodeName(p1, out _));
        Assert.True(dir.TryGetPeer("a", out var now) && now == p2);
        dir.Set("b", p2, "DHT", t.AddSeconds(3)); // p2 renamed: "a" is gone
        Assert.False(dir.TryGetPeer("a", out _));
        dir.Set("c", p1, "DHT", t.AddSeconds(4));
        dir.Set("d", Ed25519PrivateKey.Generate().PeerId, "DHT", t.AddSeconds(5));
        Assert.Equal(2, dir.Count);
        Assert.False(dir.TryGetPeer("b", out _)); // the stalest went
        Assert.Equal(5, events.Count);
    }
}
