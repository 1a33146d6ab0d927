namespace Weft.P2P.AutoNat;

/// <summary>Every limit and timeout of an <see cref="AutoNatServer"/>. Defaults follow go-libp2p's AutoNAT v1 service.</summary>
public sealed record AutoNatServerOptions
{
    /// <summary>Addresses dialled back for one request (the requester's observed address included), all at once.</summary>
    public int MaxAddressesPerRequest { get; init; } = 16;

    /// <summary>The whole dial-back of one request: TCP connect, upgrade and peer check of every address tried.</summary>
    public TimeSpan DialTimeout { get; init; } = TimeSpan.FromSeconds(15);

    /// <summary>Requests that lead to a dial-back, from all peers, per <see cref="AutoNatServer.ThrottleWindow"/>. Past it: E_DIAL_REFUSED.</summary>
    public int GlobalRequestsPerMinute { get; init; } = 30;

    /// <summary>Requests that lead to a dial-back, from one peer, per <see cref="AutoNatServer.ThrottleWindow"/>. Past it: E_DIAL_REFUSED.</summary>
    public int PeerRequestsPerMinute { get; init; } = 3;

    /// <summary>Dial-backs running at once. Past it new requests are answered E_DIAL_REFUSED (not queued).</summary>
    public int MaxConcurrentDialBacks { get; init; } = 8;

    /// <summary>AutoNAT streams one connection may run at once; past it new ones are reset by the host.</summary>
    public int MaxStreamsPerConnection { get; init; } = 2;

    /// <summary>
    /// Dial back private addresses (RFC 1918, 100.64/10, link-local, IPv6 ULA). On by default: Weft's deployments
    /// and NAT lab use private networks as their "public" side.
    /// </summary>
    public bool AllowPrivateAddresses { get; init; } = true;

    /// <summary>Dial back loopback addresses (only useful in tests on one machine). Off by default.</summary>
    public bool AllowLoopbackAddresses { get; init; }

    /// <summary>Reading the request, and writing the answer.</summary>
    public TimeSpan MessageTimeout { get; init; } = TimeSpan.FromSeconds(10);
}
