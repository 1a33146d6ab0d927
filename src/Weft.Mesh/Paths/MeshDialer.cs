using System.Collections.Concurrent;
using System.Net;
using Microsoft.Extensions.Logging;
using Weft.Mesh.Relays;
using Weft.P2P.Host;
using Weft.P2P.Yamux;
using Weft.Wire.Identity;
using Weft.Wire.Multiformats;

namespace Weft.Mesh.Paths;

/// <summary>Timing of <see cref="MeshDialer"/>.</summary>
public sealed record MeshDialerOptions
{
    /// <summary>
    /// Head start direct addresses in one of our own subnets get over relayed ones (a LAN peer). Direct addresses
    /// elsewhere (another site's private range, say) are tried at the same time as the relays.
    /// </summary>
    public TimeSpan DirectHeadStart { get; init; } = TimeSpan.FromMilliseconds(250);

    /// <summary>Delay between dials through successive relays (nearest first), so one relay is used, not all.</summary>
    public TimeSpan RelayStagger { get; init; } = TimeSpan.FromMilliseconds(150);

    /// <summary>After direct addresses of a peer failed, how long dials skip them (a LAN discovery or hole punch clears it).</summary>
    public TimeSpan DirectFailureMemory { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Relays dialled through per attempt.</summary>
    public int MaxRelaysPerDial { get; init; } = 4;
}

/// <summary>
/// Chooses the path for new streams to a peer: an open direct connection; else a relayed one through the best live
/// relay (the preferred relay when the peer holds a reservation there); else a new dial: direct addresses first
/// (unless they recently failed), then through the live relays the peer is reserved on, nearest first, staggered.
/// </summary>
public sealed class MeshDialer(Libp2pHost host, RelayManager relays, MeshDialerOptions options, ILogger log)
{
    private readonly ConcurrentDictionary<PeerId, long> _directFailedAt = new();
    private (long At, IReadOnlyList<IPNetwork> Networks) _local = (long.MinValue, []);

    /// <summary>How long the list of our own subnets is cached.</summary>
    public static readonly TimeSpan LocalNetworksTtl = TimeSpan.FromSeconds(30);

    private IReadOnlyList<IPNetwork> LocalNetworks()
    {
        var cached = _local;
        if (cached.At != long.MinValue && host.Time.GetElapsedTime(cached.At) < LocalNetworksTtl) return cached.Networks;
        var list = new List<IPNetwork>();
        try
        {
            foreach (var nic in System.Net.NetworkInformation.NetworkInterface.GetAllNetworkInterfaces())
                foreach (var u in nic.GetIPProperties().UnicastAddresses)
                    if (u.PrefixLength > 0) list.Add(new IPNetwork(Mask(u.Address, u.PrefixLength), u.PrefixLength));
        }
        catch (System.Net.NetworkInformation.NetworkInformationException) { /* none known: no head start */ }
        _local = (host.Time.GetTimestamp(), list);
        return list;
    }

    private static IPAddress Mask(IPAddress a, int prefix)
    {
        var b = a.GetAddressBytes();
        for (var i = 0; i < b.Length; i++)
        {
            var keep = Math.Clamp(prefix - i * 8, 0, 8);
            b[i] &= (byte)(0xFF << (8 - keep));
        }
        return new IPAddress(b);
    }

    private bool InLocalNetwork(Multiaddr a) =>
        a.TryGetTcpEndPoint(out var ep) && ep is not null && LocalNetworks().Any(n => n.Contains(ep.Address));

    /// <summary>Forgets that direct addresses of <paramref name="peer"/> failed (it was found in the LAN, say).</summary>
    public void DirectMayWork(PeerId peer) => _directFailedAt.TryRemove(peer, out _);

    /// <summary>Opens a stream to <paramref name="peer"/> for one of <paramref name="protocols"/> on the best path.</summary>
    public async Task<(YamuxStream Stream, string Protocol, Connection Connection)> OpenStreamAsync(PeerId peer, IReadOnlyList<string> protocols, CancellationToken ct)
    {
        var conn = await ConnectAsync(peer, ct).ConfigureAwait(false);
        try
        {
            var (stream, protocol) = await conn.OpenStreamAsync(protocols, ct).ConfigureAwait(false);
            return (stream, protocol, conn);
        }
        catch (Exception) when (!ct.IsCancellationRequested && conn.IsClosed)
        {
            // The path died under us (a relay going down): one more try on whatever path is best now.
            conn = await ConnectAsync(peer, ct).ConfigureAwait(false);
            var (stream, protocol) = await conn.OpenStreamAsync(protocols, ct).ConfigureAwait(false);
            return (stream, protocol, conn);
        }
    }

    /// <summary>The connection new streams to <paramref name="peer"/> should use, dialling when there is none.</summary>
    public async Task<Connection> ConnectAsync(PeerId peer, CancellationToken ct)
    {
        if (Best(peer) is { } existing) return existing;
        var plan = Plan(peer);
        if (plan.Count == 0)
            throw new DialFailedException(peer, []);
        try
        {
            var conn = await host.DialPeerAsync(peer, plan.Select(p => p.Address).ToList(), ct, a => plan.First(p => p.Address.Equals(a)).Delay).ConfigureAwait(false);
            if (!conn.IsRelayed) DirectMayWork(peer);
            else if (plan.Any(p => !p.Address.IsCircuit)) _directFailedAt[peer] = host.Time.GetTimestamp();
            return conn;
        }
        catch (DialFailedException ex)
        {
            if (ex.Errors.Any(e => !e.Address.IsCircuit)) _directFailedAt[peer] = host.Time.GetTimestamp();
            throw;
        }
    }

    /// <summary>The best open connection: direct, else relayed through the best-ranked live relay.</summary>
    public Connection? Best(PeerId peer)
    {
        var conns = host.ConnectionsTo(peer);
        if (conns.Count == 0) return null;
        var direct = conns.FirstOrDefault(c => !c.IsRelayed && !c.IsClosed);
        if (direct is not null) return direct;
        var ranked = relays.Ranked.ToList();
        var reservedOn = ReservedRelays(peer);
        Connection? best = null;
        var bestRank = int.MaxValue;
        foreach (var c in conns)
        {
            if (c.IsClosed || c.Relay is not { } r) continue;
            var rank = ranked.IndexOf(r);
            if (rank < 0) rank = ranked.Count + 1; // a relay we do not keep (or that is down): last resort
            if (rank < bestRank) { best = c; bestRank = rank; }
        }
        // A clearly better relay (the preferred one) where the peer is reserved too: dial a new circuit there.
        if (best is not null && bestRank > 0 && ranked.Count > 0 && reservedOn.Contains(ranked[0])) return null;
        return best;
    }

    /// <summary>Relays the peer advertises circuit addresses on (its reservations), from identify, mDNS or the DHT.</summary>
    public HashSet<PeerId> ReservedRelays(PeerId peer)
    {
        var set = new HashSet<PeerId>();
        foreach (var a in host.Peers.Get(peer)?.Addresses ?? [])
            if (a.IsCircuit && a.Decapsulate(MultiaddrProtocol.P2PCircuit)?.PeerId is { } r) set.Add(r);
        return set;
    }

    private readonly record struct Step(Multiaddr Address, TimeSpan Delay);

    private List<Step> Plan(PeerId peer)
    {
        var steps = new List<Step>();
        var direct = DirectAddresses(peer);
        var skipDirect = _directFailedAt.TryGetValue(peer, out var failed) && host.Time.GetElapsedTime(failed) < options.DirectFailureMemory;
        if (!skipDirect)
            foreach (var a in direct) steps.Add(new Step(a.WithPeerId(peer), TimeSpan.Zero));
        var headStart = steps.Any(s => InLocalNetwork(s.Address)) ? options.DirectHeadStart : TimeSpan.Zero;
        var ranked = relays.Ranked;
        var reservedOn = ReservedRelays(peer);
        // Relays the peer is known to be reserved on first; without that knowledge try ours in rank order.
        var order = ranked.Where(reservedOn.Contains).Concat(ranked.Where(r => !reservedOn.Contains(r))).Take(options.MaxRelaysPerDial).ToList();
        for (var i = 0; i < order.Count; i++)
        {
            var relayAddr = relays.RelayAddresses(order[i]).FirstOrDefault();
            if (relayAddr is null) continue;
            steps.Add(new Step(relayAddr.Encapsulate("/p2p-circuit").Encapsulate("/p2p/" + peer), headStart + options.RelayStagger * i));
        }
        if (steps.Count == 0) Log.NoPath(log, peer.ToString(), direct.Count, ranked.Count);
        return steps;
    }

    /// <summary>The peer's direct TCP addresses, without loopback ones unless we are on loopback too.</summary>
    private List<Multiaddr> DirectAddresses(PeerId peer)
    {
        var list = new List<Multiaddr>();
        var localLoopbackOnly = host.ListenAddresses.All(a => a.TryGetTcpEndPoint(out var ep) && ep is not null && IPAddress.IsLoopback(ep.Address));
        foreach (var a in host.Peers.Get(peer)?.Addresses ?? [])
        {
            if (a.IsCircuit || !a.TryGetTcpEndPoint(out var ep) || ep is null) continue;
            if (IPAddress.IsLoopback(ep.Address) && !localLoopbackOnly) continue;
            var bare = a.WithoutPeerId();
            if (!list.Contains(bare)) list.Add(bare);
        }
        return list;
    }
}
