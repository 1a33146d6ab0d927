using System.Collections.Concurrent;
using Weft.Wire.Identity;
using Weft.Wire.Multiformats;

namespace Weft.P2P.Host;

/// <summary>What we know of a peer, mostly from identify.</summary>
public sealed record PeerInfo(PeerId Peer)
{
    public IReadOnlyList<Multiaddr> Addresses { get; init; } = [];
    public IReadOnlyList<string> Protocols { get; init; } = [];
    public string? AgentVersion { get; init; }
    public string? ProtocolVersion { get; init; }
    public PublicKey? PublicKey { get; init; }
    /// <summary>How this peer sees us (identify's observedAddr).</summary>
    public Multiaddr? ObservedUs { get; init; }
    public DateTimeOffset Updated { get; init; }
}

/// <summary>A bounded map of peers we have talked to.</summary>
public sealed class PeerStore
{
    /// <summary>Peers remembered; past it, the least recently updated is forgotten.</summary>
    public const int MaxPeers = 10_000;

    /// <summary>Addresses remembered per peer.</summary>
    public const int MaxAddressesPerPeer = 32;

    private readonly ConcurrentDictionary<PeerId, PeerInfo> _peers = new();

    /// <summary>Raised after a peer's entry changes (identify, identify push, a new connection).</summary>
    public event Action<PeerInfo>? Updated;

    public PeerInfo? Get(PeerId peer) => _peers.TryGetValue(peer, out var p) ? p : null;

    public IReadOnlyCollection<PeerInfo> All => _peers.Values.ToList();

    public PeerInfo Update(PeerId peer, Func<PeerInfo, PeerInfo> change)
    {
        var updated = _peers.AddOrUpdate(peer, p => Bound(change(new PeerInfo(p))), (_, old) => Bound(change(old)));
        if (_peers.Count > MaxPeers)
        {
            var oldest = _peers.Values.OrderBy(v => v.Updated).First();
            if (oldest.Peer != peer) _peers.TryRemove(oldest.Peer, out _);
        }
        Updated?.Invoke(updated);
        return updated;
    }

    public void AddAddresses(PeerId peer, IEnumerable<Multiaddr> addrs, DateTimeOffset now) =>
        Update(peer, p => p with { Addresses = p.Addresses.Concat(addrs.Select(a => a.WithoutPeerId())).Distinct().ToList(), Updated = now });

    private static PeerInfo Bound(PeerInfo p) =>
        p.Addresses.Count > MaxAddressesPerPeer ? p with { Addresses = p.Addresses.Take(MaxAddressesPerPeer).ToList() } : p;
}
