using System.Collections.Concurrent;
using System.Net;
using Weft.P2P.Discovery;
using Weft.P2P.Host;
using Weft.P2P.Mdns;
using Weft.Wire.Dns;
using Weft.Wire.Identity;
using Weft.Wire.Multiformats;

namespace Weft.P2P.Tests.Mdns;

/// <summary>The mDNS service's logic over an in-memory multicast segment (real sockets: the lab and interop tests).</summary>
public class MdnsServiceTests
{
    internal static readonly TimeSpan Deadline = TimeSpan.FromSeconds(20);

    internal static MdnsOptions Fast(MdnsOptions? o = null) => (o ?? new MdnsOptions()) with
    {
        QueryInterval = TimeSpan.FromMilliseconds(300),
        StartupQueryGaps = [TimeSpan.FromMilliseconds(100)],
        AnnouncementGap = TimeSpan.FromMilliseconds(100),
        MinResponseInterval = TimeSpan.FromMilliseconds(100),
    };

    /// <summary>A host that is not listening but announces <paramref name="addresses"/>.</summary>
    private static Libp2pHost Host(params string[] addresses) =>
        new(new HostOptions { Key = Ed25519PrivateKey.Generate(), AnnounceAddresses = addresses.Select(Multiaddr.Parse).ToList() });

    internal sealed class Node : IAsyncDisposable
    {
        public required Libp2pHost Host { get; init; }
        public required MdnsService Mdns { get; init; }
        public required MemoryMdnsNetwork.Endpoint Endpoint { get; init; }
        public ConcurrentQueue<PeerDiscovery> Found { get; } = new();
        public PeerId Id => Host.PeerId;

        public async Task<PeerDiscovery> WaitFor(PeerId peer, Func<PeerDiscovery, bool>? match = null)
        {
            var tcs = new TaskCompletionSource<PeerDiscovery>(TaskCreationOptions.RunContinuationsAsynchronously);
            void On(PeerDiscovery d) { if (d.Peer == peer && (match?.Invoke(d) ?? true)) tcs.TrySetResult(d); }
            Mdns.Discovered += On;
            try
            {
                foreach (var d in Found) On(d);
                return await tcs.Task.WaitAsync(Deadline);
            }
            finally { Mdns.Discovered -= On; }
        }

        public async ValueTask DisposeAsync()
        {
            await Mdns.DisposeAsync();
            await Host.DisposeAsync();
        }
    }

    internal static Node Start(MemoryMdnsNetwork net, MdnsOptions? options = null, string? ip = null, params string[] announce)
    {
        var endpoint = net.Attach(ip);
        var host = Host(announce.Length > 0 ? announce : [$"/ip4/{endpoint.Address}/tcp/4001"]);
        var mdns = new MdnsService(host, options ?? Fast(), endpoint);
        var node = new Node { Host = host, Mdns = mdns, Endpoint = endpoint };
        mdns.Discovered += node.Found.Enqueue;
        mdns.Start();
        return node;
    }

    [Fact]
    public async Task Two_peers_find_each_other_once_and_land_in_the_peer_store()
    {
        var net = new MemoryMdnsNetwork();
        await using var a = Start(net);
        await using var b = Start(net);
        var seenByA = await a.WaitFor(b.Id);
        var seenByB = await b.WaitFor(a.Id);
        Assert.Equal([Multiaddr.Parse("/ip4/10.0.0.2/tcp/4001")], seenByA.Addresses);
        Assert.Equal([Multiaddr.Parse("/ip4/10.0.0.1/tcp/4001")], seenByB.Addresses);
        Assert.Equal(DiscoverySource.Mdns, seenByA.Source);
        Assert.Contains(Multiaddr.Parse("/ip4/10.0.0.2/tcp/4001"), a.Host.Peers.Get(b.Id)!.Addresses);

        // Several query rounds later each peer has still been reported exactly once, and never itself.
        var queries = 0;
        var moreQueries = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        net.MulticastSent += (p, _) => { if (!DnsMessage.Parse(p).IsResponse && Interlocked.Increment(ref queries) >= 6) moreQueries.TrySetResult(); };
        await moreQueries.Task.WaitAsync(Deadline);
        Assert.Single(a.Found, d => d.Peer == b.Id);
        Assert.Single(b.Found, d => d.Peer == a.Id);
        Assert.DoesNotContain(a.Found, d => d.Peer == a.Id);
        Assert.Equal([b.Id], a.Mdns.Peers.Select(p => p.Peer));
    }

    [Fact]
    public async Task Different_service_names_do_not_see_each_other_and_the_rendezvous_case_is_kept_on_the_wire()
    {
        var net = new MemoryMdnsNetwork();
        var packets = new ConcurrentQueue<byte[]>();
        net.MulticastSent += (p, _) => packets.Enqueue(p);
        await using var libp2p = Start(net);
        await using var edge1 = Start(net, Fast(MdnsOptions.ForRendezvous(MdnsOptions.EdgeMeshRendezvous)));
        await using var edge2 = Start(net, Fast(MdnsOptions.ForRendezvous(MdnsOptions.EdgeMeshRendezvous)));
        await using var other = Start(net, Fast(MdnsOptions.ForRendezvous("OTHER_MESH")));
        await edge1.WaitFor(edge2.Id);
        await edge2.WaitFor(edge1.Id);
        Assert.DoesNotContain(edge1.Found, d => d.Peer == libp2p.Id || d.Peer == other.Id);
        Assert.DoesNotContain(libp2p.Found, d => d.Peer == edge1.Id || d.Peer == edge2.Id || d.Peer == other.Id);
        Assert.Empty(other.Found);
        var query = packets.Select(p => DnsMessage.Parse(p)).First(m => !m.IsResponse && m.Questions[0].Name.Labels[0].StartsWith("EDGE", StringComparison.Ordinal));
        Assert.Equal(["EDGEMESH_PLAYGOUND", "local"], query.Questions[0].Name.Labels);
    }

    [Fact]
    public async Task Answers_carry_ptr_txt_srv_and_a_records_and_leave_loopback_and_circuits_out()
    {
        var net = new MemoryMdnsNetwork();
        var responses = new ConcurrentQueue<DnsMessage>();
        net.MulticastSent += (p, _) => { var m = DnsMessage.Parse(p); if (m.IsResponse) responses.Enqueue(m); };
        var relayed = "/ip4/10.9.9.9/tcp/4001/p2p/12D3KooWSMDFN5DeFADosuV7UEwjHWQv1ioLEUqgzjGjxYQzxFX6/p2p-circuit";
        await using var a = Start(net, null, null, "/ip4/10.0.0.1/tcp/4001", "/ip4/127.0.0.1/tcp/4001", relayed, "/ip6/fd00::1/tcp/4002");
        await using var b = Start(net);
        await b.WaitFor(a.Id);
        var r = responses.First(m => m.Answers.OfType<PtrRecord>().Any(p => p.Target == a.Mdns.Self.Instance));
        var ptr = Assert.IsType<PtrRecord>(Assert.Single(r.Answers));
        Assert.Equal(DnsName.Parse("_p2p._udp.local"), ptr.Name);
        Assert.InRange(a.Mdns.Self.PeerName.Length, 32, 63);
        var txt = Assert.Single(r.Additionals.OfType<TxtRecord>());
        Assert.Equal([$"dnsaddr=/ip4/10.0.0.1/tcp/4001/p2p/{a.Id}", $"dnsaddr=/ip6/fd00::1/tcp/4002/p2p/{a.Id}"], txt.Texts);
        var srv = Assert.Single(r.Additionals.OfType<SrvRecord>());
        Assert.Equal(4001, srv.Port);
        Assert.Equal(a.Mdns.Self.Host, srv.Target);
        Assert.Equal(IPAddress.Parse("10.0.0.1"), Assert.Single(r.Additionals.OfType<ARecord>()).Address);
        Assert.Equal(IPAddress.Parse("fd00::1"), Assert.Single(r.Additionals.OfType<AaaaRecord>()).Address);
    }

    [Fact]
    public async Task A_remote_peers_loopback_addresses_are_ignored_but_a_same_host_peers_are_kept()
    {
        var net = new MemoryMdnsNetwork();
        await using var a = Start(net);
        var peer = Ed25519PrivateKey.Generate().PeerId;
        var self = new MdnsSelf(a.Mdns.Options.ServiceName, "remote0000000000000000000000000000", peer);
        // What js sends: its loopback address next to its LAN address, everything in the answers section.
        var js = new DnsMessage
        {
            IsResponse = true,
            Answers =
            [
                new PtrRecord { Name = self.Service, Target = self.Instance, Ttl = 120 },
                TxtRecord.FromStrings(self.Instance, [$"dnsaddr=/ip4/127.0.0.1/tcp/4001/p2p/{peer}"], 120),
                TxtRecord.FromStrings(self.Instance, [$"dnsaddr=/ip4/10.0.0.50/tcp/4001/p2p/{peer}"], 120),
            ],
        }.ToArray();
        net.Inject(js, new IPEndPoint(IPAddress.Parse("10.0.0.50"), 5353));
        Assert.Equal([Multiaddr.Parse("/ip4/10.0.0.50/tcp/4001")], (await a.WaitFor(peer)).Addresses);

        // Only loopback, from a remote host: nothing to report.
        var other = Ed25519PrivateKey.Generate().PeerId;
        var otherSelf = new MdnsSelf(self.Service, "remote1111111111111111111111111111", other);
        byte[] LoopbackOnly(MdnsSelf s) => new DnsMessage
        {
            IsResponse = true,
            Answers = [new PtrRecord { Name = s.Service, Target = s.Instance, Ttl = 120 }, TxtRecord.FromStrings(s.Instance, [$"dnsaddr=/ip4/127.0.0.1/tcp/4005/p2p/{s.Peer}"], 120)],
        }.ToArray();
        net.Inject(LoopbackOnly(otherSelf), new IPEndPoint(IPAddress.Parse("10.0.0.51"), 5353));

        // The same from an address of this host: kept (a peer on this machine).
        a.Endpoint.LocalAddresses.Add(IPAddress.Parse("10.0.0.77"));
        var local = Ed25519PrivateKey.Generate().PeerId;
        net.Inject(LoopbackOnly(new MdnsSelf(self.Service, "local22222222222222222222222222222", local)), new IPEndPoint(IPAddress.Parse("10.0.0.77"), 5353));
        Assert.Equal([Multiaddr.Parse("/ip4/127.0.0.1/tcp/4005")], (await a.WaitFor(local)).Addresses);
        Assert.DoesNotContain(a.Found, d => d.Peer == other);

        // Answers from a port other than 5353 are not mDNS answers (RFC 6762 §11).
        var stray = Ed25519PrivateKey.Generate().PeerId;
        var straySelf = new MdnsSelf(self.Service, "stray3333333333333333333333333333", stray);
        net.Inject(new DnsMessage
        {
            IsResponse = true,
            Answers = [new PtrRecord { Name = self.Service, Target = straySelf.Instance, Ttl = 120 }, TxtRecord.FromStrings(straySelf.Instance, [$"dnsaddr=/ip4/10.0.0.60/tcp/1/p2p/{stray}"], 120)],
        }.ToArray(), new IPEndPoint(IPAddress.Parse("10.0.0.60"), 40000));
        var marker = Ed25519PrivateKey.Generate().PeerId;
        net.Inject(LoopbackOnly(new MdnsSelf(self.Service, "marker444444444444444444444444444", marker)), new IPEndPoint(IPAddress.Parse("10.0.0.77"), 5353));
        await a.WaitFor(marker);
        Assert.DoesNotContain(a.Found, d => d.Peer == stray);
    }

    [Fact]
    public async Task A_change_of_address_is_announced_and_reported_again()
    {
        var net = new MemoryMdnsNetwork();
        await using var a = Start(net);
        await using var b = Start(net);
        await b.WaitFor(a.Id);
        a.Host.SetAddresses("test", [Multiaddr.Parse("/ip4/10.0.0.99/tcp/5000")]);
        var again = await b.WaitFor(a.Id, d => d.Addresses.Count == 2);
        Assert.Equal([Multiaddr.Parse("/ip4/10.0.0.1/tcp/4001"), Multiaddr.Parse("/ip4/10.0.0.99/tcp/5000")], again.Addresses);
        Assert.Equal(2, b.Found.Count(d => d.Peer == a.Id));
    }

    [Fact]
    public async Task Goodbye_forgets_a_peer_and_a_restart_is_reported_again()
    {
        var net = new MemoryMdnsNetwork();
        await using var a = Start(net);
        var b = Start(net);
        await a.WaitFor(b.Id);
        var bId = b.Id;
        var gone = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        net.MulticastSent += (p, _) => { if (DnsMessage.Parse(p).Answers.OfType<PtrRecord>().Any(r => r.Ttl == 0)) gone.TrySetResult(); };
        await b.Mdns.DisposeAsync();
        await gone.Task.WaitAsync(Deadline);
        // The goodbye is processed asynchronously: wait until a no longer lists b.
        var until = DateTime.UtcNow + Deadline;
        while (a.Mdns.Peers.Any(p => p.Peer == bId) && DateTime.UtcNow < until) await Task.Delay(10);
        Assert.DoesNotContain(a.Mdns.Peers, p => p.Peer == bId);
        var endpoint = net.Attach("10.0.0.2");
        await using var b2 = new MdnsService(b.Host, Fast(), endpoint);
        var second = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        a.Mdns.Discovered += d => { if (d.Peer == bId) second.TrySetResult(); };
        b2.Start();
        await second.Task.WaitAsync(Deadline);
        Assert.Equal(2, a.Found.Count(d => d.Peer == bId));
        await b.Host.DisposeAsync();
    }

    [Fact]
    public async Task Legacy_queries_get_a_direct_answer_echoing_id_and_question_with_short_ttls()
    {
        var net = new MemoryMdnsNetwork();
        await using var a = Start(net);
        var answered = new TaskCompletionSource<(byte[], IPEndPoint)>(TaskCreationOptions.RunContinuationsAsynchronously);
        net.UnicastSent += (p, to) => answered.TrySetResult((p, to));
        var asker = new IPEndPoint(IPAddress.Parse("10.0.0.200"), 40123);
        var question = new DnsQuestion(DnsName.Parse("_p2p._udp.local"), DnsType.PTR);
        net.Inject(new DnsMessage { Id = 0x1234, Questions = [question] }.ToArray(), asker);
        var (packet, to) = await answered.Task.WaitAsync(Deadline);
        Assert.Equal(asker, to);
        var m = DnsMessage.Parse(packet);
        Assert.Equal(0x1234, m.Id);
        Assert.Equal([question], m.Questions);
        Assert.All(m.AllRecords, r => Assert.InRange(r.Ttl, 1u, 10u));
        Assert.Equal(a.Mdns.Self.Instance, Assert.IsType<PtrRecord>(Assert.Single(m.Answers)).Target);
    }

    [Fact]
    public async Task A_burst_of_queries_gets_at_most_one_answer_per_interval()
    {
        var net = new MemoryMdnsNetwork();
        var options = Fast() with { MinResponseInterval = TimeSpan.FromSeconds(5), Announcements = 0, QueryInterval = TimeSpan.FromMinutes(1), StartupQueryGaps = [] };
        var answers = 0;
        var first = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        net.MulticastSent += (p, _) => { if (DnsMessage.Parse(p).IsResponse && Interlocked.Increment(ref answers) == 1) first.TrySetResult(); };
        await using var a = Start(net, options);
        await first.Task.WaitAsync(Deadline); // the answer to its own first query
        var query = MdnsRecords.Query(DnsName.Parse("_p2p._udp.local")).ToArray();
        for (var i = 0; i < 50; i++) net.Inject(query, new IPEndPoint(IPAddress.Parse("10.0.0.9"), 5353));
        // A marker peer's answer, queued after the queries, shows they have all been handled.
        var marker = Ed25519PrivateKey.Generate().PeerId;
        var s = new MdnsSelf(options.ServiceName, "marker000000000000000000000000000", marker);
        net.Inject(new DnsMessage
        {
            IsResponse = true,
            Answers = [new PtrRecord { Name = s.Service, Target = s.Instance, Ttl = 120 }, TxtRecord.FromStrings(s.Instance, [$"dnsaddr=/ip4/10.0.0.9/tcp/1/p2p/{marker}"], 120)],
        }.ToArray(), new IPEndPoint(IPAddress.Parse("10.0.0.9"), 5353));
        await a.WaitFor(marker);
        Assert.Equal(1, Volatile.Read(ref answers)); // the 50 wait for the interval and will share one answer
    }

    [Fact]
    public void Invalid_options_list_every_problem()
    {
        using var host = new Libp2pHostScope();
        var ex = Assert.Throws<ArgumentException>(() => new MdnsService(host.Host, new MdnsOptions { Port = 0, MaxTrackedPeers = 0, ServiceName = DnsName.Parse("local") }));
        Assert.Contains("port 0", ex.Message, StringComparison.Ordinal);
        Assert.Contains("MaxTrackedPeers", ex.Message, StringComparison.Ordinal);
        Assert.Contains("two labels", ex.Message, StringComparison.Ordinal);
    }

    private sealed class Libp2pHostScope : IDisposable
    {
        public Libp2pHost Host { get; } = MdnsServiceTests.Host();
        public void Dispose() => Host.DisposeAsync().AsTask().GetAwaiter().GetResult();
    }
}
