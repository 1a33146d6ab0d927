using Weft.Wire.Identity;
using Weft.Wire.Kad;
using Weft.Wire.Multiformats;

namespace Weft.P2P.Kad;

/// <summary>How a lookup went.</summary>
/// <param name="Queried">Peers sent a request.</param>
/// <param name="Responded">Peers that answered.</param>
/// <param name="Failed">Peers that could not be dialled or did not answer in time.</param>
/// <param name="Hops">
/// Requests in sequence that led to the result: 1 when a peer from our own table answered with it, 2 when a
/// peer that one named did, and so on (0: answered locally). For a closest-peers lookup, the deepest of the
/// final closest peers.
/// </param>
/// <param name="Elapsed">Wall time of the lookup.</param>
public sealed record KadQueryStats(int Queried, int Responded, int Failed, int Hops, TimeSpan Elapsed);

/// <summary>The peers closest to a key that answered, closest first.</summary>
public sealed record KadClosestPeers(IReadOnlyList<KadPeer> Peers, KadQueryStats Stats);

/// <summary>A peer found: its addresses (without /p2p/).</summary>
public sealed record KadPeerFound(PeerId Peer, IReadOnlyList<Multiaddr> Addresses, KadQueryStats Stats);

/// <summary>The best valid value found for a key, and which peers returned it.</summary>
public sealed record KadValue(KadRecord Record, IReadOnlyList<PeerId> From, KadQueryStats Stats);

/// <summary>Providers found for a key (self included when we provide it).</summary>
public sealed record KadProviders(IReadOnlyList<KadPeer> Providers, KadQueryStats Stats);

/// <summary>A put or provide: how many of the closest peers accepted it, out of how many tried.</summary>
public sealed record KadStoreResult(int Stored, int Tried, KadQueryStats Stats);
