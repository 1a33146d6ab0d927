using System.Net;
using Weft.P2P.Kad;
using Weft.Wire.Identity;
using Weft.Wire.Kad;
using Weft.Wire.Multiformats;

namespace Weft.P2P.Tests.Kad;

public class RoutingTableTests
{
    private static readonly DateTimeOffset T0 = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);

    /// <summary>Fresh peer IDs that fall in bucket <paramref name="bucket"/> of <paramref name="table"/>.</summary>
    private static IEnumerable<PeerId> PeersInBucket(RoutingTable table, int bucket)
    {
        while (true)
        {
            var p = Ed25519PrivateKey.Generate().PeerId;
            if (table.BucketOf(p) == bucket) yield return p;
        }
    }

    [Fact]
    public void Peers_go_to_the_bucket_of_their_shared_prefix_and_a_full_bucket_offers_its_oldest()
    {
        var table = new RoutingTable(Ed25519PrivateKey.Generate().PeerId, bucketSize: 3, maxPerIpPerBucket: 0);
        Assert.Equal(RoutingAddResult.Self, table.TryAdd(table.Self, null, T0, out _));
        var peers = PeersInBucket(table, 0).Take(4).ToList();
        for (var i = 0; i < 3; i++) Assert.Equal(RoutingAddResult.Added, table.TryAdd(peers[i], IPAddress.Parse($"10.0.0.{i}"), T0.AddSeconds(i), out _));
        Assert.Equal(RoutingAddResult.Updated, table.TryAdd(peers[0], null, T0.AddSeconds(10), out _));
        Assert.Equal(RoutingAddResult.BucketFull, table.TryAdd(peers[3], IPAddress.Parse("10.0.0.9"), T0.AddSeconds(11), out var oldest));
        Assert.Equal(peers[1], oldest!.Peer); // peers[0] was seen again at +10 s
        Assert.Equal(3, table.BucketSizes[0]);
        Assert.True(table.Replace(peers[1], peers[3], IPAddress.Parse("10.0.0.9"), T0.AddSeconds(12)));
        Assert.False(table.Contains(peers[1]));
        Assert.True(table.Contains(peers[3]));
        Assert.False(table.Replace(peers[1], peers[3], null, T0)); // already replaced
        Assert.True(table.Remove(peers[3]));
        Assert.Equal(2, table.Count);
    }

    [Fact]
    public void One_ip_gets_at_most_its_share_of_a_bucket()
    {
        var table = new RoutingTable(Ed25519PrivateKey.Generate().PeerId, bucketSize: 20, maxPerIpPerBucket: 2);
        var attacker = IPAddress.Parse("203.0.113.7");
        var results = PeersInBucket(table, 0).Take(10).Select(p => table.TryAdd(p, attacker, T0, out _)).ToList();
        Assert.Equal(2, results.Count(r => r == RoutingAddResult.Added));
        Assert.Equal(8, results.Count(r => r == RoutingAddResult.IpCapped));
        // Another IP is unaffected, and so is another bucket.
        Assert.Equal(RoutingAddResult.Added, table.TryAdd(PeersInBucket(table, 0).First(), IPAddress.Parse("198.51.100.1"), T0, out _));
        Assert.Equal(RoutingAddResult.Added, table.TryAdd(PeersInBucket(table, 1).First(), attacker, T0, out _));
        // Replacing does not get round the cap.
        var victimSlot = table.Entries.First(e => e.Ip!.Equals(IPAddress.Parse("198.51.100.1"))).Peer;
        Assert.False(table.Replace(victimSlot, PeersInBucket(table, 0).First(), attacker, T0));
    }

    [Fact]
    public void A_flood_of_identities_from_many_addresses_cannot_displace_live_peers()
    {
        // Kademlia's rule: a newcomer only takes the place of a peer found dead, and the caller checks first.
        var table = new RoutingTable(Ed25519PrivateKey.Generate().PeerId, bucketSize: 4, maxPerIpPerBucket: 2);
        var honest = PeersInBucket(table, 0).Take(4).ToList();
        for (var i = 0; i < 4; i++) table.TryAdd(honest[i], IPAddress.Parse($"192.0.2.{i}"), T0, out _);
        var n = 0;
        foreach (var fake in PeersInBucket(table, 0).Take(200))
        {
            var r = table.TryAdd(fake, IPAddress.Parse($"203.0.113.{n++ % 250}"), T0.AddSeconds(n), out var oldest);
            Assert.Equal(RoutingAddResult.BucketFull, r);
            Assert.Contains(oldest!.Peer, honest);
        }
        Assert.Equal(honest.OrderBy(p => p.ToString()), table.Entries.Select(e => e.Peer).OrderBy(p => p.ToString()));
    }

    [Fact]
    public void Closest_orders_by_xor_distance()
    {
        var table = new RoutingTable(Ed25519PrivateKey.Generate().PeerId, bucketSize: 20, maxPerIpPerBucket: 0);
        var peers = Enumerable.Range(0, 60).Select(_ => Ed25519PrivateKey.Generate().PeerId).ToList();
        foreach (var p in peers) table.TryAdd(p, null, T0, out _);
        var target = KadId.FromKey([1, 2, 3]);
        var expected = table.Entries.OrderBy(e => e.Id.Xor(target), KadDistanceComparer.Instance).Take(5).Select(e => e.Peer).ToList();
        Assert.Equal(expected, table.Closest(target, 5).Select(e => e.Peer));
        Assert.DoesNotContain(expected[0], table.Closest(target, 5, p => p == expected[0]).Select(e => e.Peer));
    }
}
