using System.Net;
using Weft.Wire.Identity;
using Weft.Wire.Kad;

namespace Weft.P2P.Kad;

/// <summary>A peer in the routing table.</summary>
/// <param name="Ip">The IP its connection came from (what the per-IP cap counts), or null.</param>
public sealed record RoutingEntry(PeerId Peer, KadId Id, IPAddress? Ip, DateTimeOffset Added, DateTimeOffset LastSeen);

/// <summary>What <see cref="RoutingTable.TryAdd"/> did.</summary>
public enum RoutingAddResult
{
    Added,
    /// <summary>Already there; its last-seen time was updated.</summary>
    Updated,
    /// <summary>The bucket is full; the oldest entry is returned to be checked (and <see cref="RoutingTable.Replace"/>d if dead).</summary>
    BucketFull,
    /// <summary>The bucket already holds the allowed number of peers from this IP.</summary>
    IpCapped,
    Self,
}

/// <summary>
/// Kademlia k-buckets: bucket i holds up to k peers whose ID shares exactly i leading bits with ours. Old peers
/// are kept over newcomers (a full bucket only takes a newcomer in place of a peer found dead), and one IP
/// address may hold at most <c>maxPerIpPerBucket</c> places in a bucket: together this keeps a flood of fresh
/// identities from taking over the table. Thread-safe.
/// </summary>
public sealed class RoutingTable
{
    private readonly List<RoutingEntry>[] _buckets = Enumerable.Range(0, KadId.Bits).Select(_ => new List<RoutingEntry>()).ToArray();
    private readonly Dictionary<PeerId, int> _index = new();
    private readonly Lock _gate = new();

    public RoutingTable(PeerId self, int bucketSize, int maxPerIpPerBucket)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(bucketSize, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(maxPerIpPerBucket);
        Self = self;
        SelfId = KadId.FromPeer(self);
        BucketSize = bucketSize;
        MaxPerIpPerBucket = maxPerIpPerBucket;
    }

    public PeerId Self { get; }
    public KadId SelfId { get; }
    public int BucketSize { get; }
    public int MaxPerIpPerBucket { get; }

    public int Count { get { lock (_gate) return _index.Count; } }

    public bool Contains(PeerId peer) { lock (_gate) return _index.ContainsKey(peer); }

    /// <summary>Every entry.</summary>
    public IReadOnlyList<RoutingEntry> Entries { get { lock (_gate) return _buckets.SelectMany(b => b).ToList(); } }

    /// <summary>The bucket <paramref name="peer"/> belongs in (its shared prefix length with us).</summary>
    public int BucketOf(PeerId peer) => Math.Min(SelfId.CommonPrefixLength(KadId.FromPeer(peer)), KadId.Bits - 1);

    /// <summary>Peers per bucket, index = shared prefix length.</summary>
    public IReadOnlyList<int> BucketSizes { get { lock (_gate) return _buckets.Select(b => b.Count).ToList(); } }

    /// <summary>
    /// Adds <paramref name="peer"/>, or refreshes it. When its bucket is full, <paramref name="oldest"/> is the
    /// least recently seen entry there: if it turns out dead, <see cref="Replace"/> it by the newcomer.
    /// </summary>
    public RoutingAddResult TryAdd(PeerId peer, IPAddress? ip, DateTimeOffset now, out RoutingEntry? oldest)
    {
        oldest = null;
        if (peer == Self) return RoutingAddResult.Self;
        var id = KadId.FromPeer(peer);
        var b = Math.Min(SelfId.CommonPrefixLength(id), KadId.Bits - 1);
        lock (_gate)
        {
            var bucket = _buckets[b];
            var at = bucket.FindIndex(e => e.Peer == peer);
            if (at >= 0)
            {
                bucket[at] = bucket[at] with { LastSeen = now, Ip = ip ?? bucket[at].Ip };
                return RoutingAddResult.Updated;
            }
            if (MaxPerIpPerBucket > 0 && ip is not null && bucket.Count(e => ip.Equals(e.Ip)) >= MaxPerIpPerBucket) return RoutingAddResult.IpCapped;
            if (bucket.Count >= BucketSize)
            {
                oldest = bucket.MinBy(e => e.LastSeen);
                return RoutingAddResult.BucketFull;
            }
            bucket.Add(new RoutingEntry(peer, id, ip, now, now));
            _index[peer] = b;
            return RoutingAddResult.Added;
        }
    }

    /// <summary>Marks <paramref name="peer"/> as seen now (it answered); false when it is not in the table.</summary>
    public bool Touch(PeerId peer, DateTimeOffset now)
    {
        lock (_gate)
        {
            if (!_index.TryGetValue(peer, out var b)) return false;
            var bucket = _buckets[b];
            var at = bucket.FindIndex(e => e.Peer == peer);
            bucket[at] = bucket[at] with { LastSeen = now };
            return true;
        }
    }

    /// <summary>Puts <paramref name="newcomer"/> in the place of <paramref name="dead"/> if <paramref name="dead"/> is still there (and the IP cap allows).</summary>
    public bool Replace(PeerId dead, PeerId newcomer, IPAddress? ip, DateTimeOffset now)
    {
        lock (_gate)
        {
            if (!_index.TryGetValue(dead, out var b) || _index.ContainsKey(newcomer)) return false;
            if (b != Math.Min(SelfId.CommonPrefixLength(KadId.FromPeer(newcomer)), KadId.Bits - 1)) return false;
            var bucket = _buckets[b];
            if (MaxPerIpPerBucket > 0 && ip is not null && bucket.Count(e => e.Peer != dead && ip.Equals(e.Ip)) >= MaxPerIpPerBucket) return false;
            bucket.RemoveAll(e => e.Peer == dead);
            _index.Remove(dead);
            bucket.Add(new RoutingEntry(newcomer, KadId.FromPeer(newcomer), ip, now, now));
            _index[newcomer] = b;
            return true;
        }
    }

    public bool Remove(PeerId peer)
    {
        lock (_gate)
        {
            if (!_index.Remove(peer, out var b)) return false;
            _buckets[b].RemoveAll(e => e.Peer == peer);
            return true;
        }
    }

    /// <summary>The <paramref name="count"/> peers closest to <paramref name="target"/>, closest first, skipping <paramref name="exclude"/>.</summary>
    public IReadOnlyList<RoutingEntry> Closest(KadId target, int count, Func<PeerId, bool>? exclude = null)
    {
        lock (_gate)
        {
            return _buckets.SelectMany(b => b)
                .Where(e => exclude is null || !exclude(e.Peer))
                .OrderBy(e => e.Id.Xor(target), KadDistanceComparer.Instance)
                .Take(count)
                .ToList();
        }
    }

    /// <summary>The highest bucket index that holds a peer, or -1 when the table is empty.</summary>
    public int DeepestBucket
    {
        get
        {
            lock (_gate)
            {
                for (var i = KadId.Bits - 1; i >= 0; i--)
                    if (_buckets[i].Count > 0) return i;
                return -1;
            }
        }
    }
}

/// <summary>Orders XOR distances (as unsigned 256-bit numbers).</summary>
public sealed class KadDistanceComparer : IComparer<KadId>
{
    public static KadDistanceComparer Instance { get; } = new();

    public int Compare(KadId x, KadId y) => x.CompareTo(y);
}
