using Weft.P2P.Noise;
using Weft.P2P.Yamux;
using Weft.Wire.Identity;
using Weft.Wire.Multiformats;

namespace Weft.P2P.Host;

/// <summary>Everything a libp2p host needs; every limit and timeout is named here.</summary>
public sealed record HostOptions
{
    public required Ed25519PrivateKey Key { get; init; }

    /// <summary>Where to listen. Empty: dial-only; nothing listens.</summary>
    public IReadOnlyList<Multiaddr> ListenAddresses { get; init; } = [];

    /// <summary>Extra addresses to announce in identify (e.g. a public address in front of a NAT).</summary>
    public IReadOnlyList<Multiaddr> AnnounceAddresses { get; init; } = [];

    /// <summary>32-byte pnet key; null = not a private network.</summary>
    public byte[]? PrivateNetworkKey { get; init; }

    public string AgentVersion { get; init; } = "weft/" + typeof(HostOptions).Assembly.GetName().Version?.ToString(3);
    public string ProtocolVersion { get; init; } = "ipfs/0.1.0";

    public ConnectionLimits Limits { get; init; } = new();
    public HostTimeouts Timeouts { get; init; } = new();
    public YamuxOptions Yamux { get; init; } = new();
    public NoiseOptions Noise { get; init; } = new();

    /// <summary>Bind dialing sockets to the listen port (needed for TCP hole punching).</summary>
    public bool ReusePort { get; init; } = true;
}

public sealed record ConnectionLimits
{
    /// <summary>Established connections, both directions. Past it new inbound connections are closed after the handshake and dials fail.</summary>
    public int MaxConnections { get; init; } = 1024;

    /// <summary>Established connections to one peer (the swarm reuses one; simultaneous dials may make more).</summary>
    public int MaxConnectionsPerPeer { get; init; } = 4;

    /// <summary>Inbound connections still in their handshake. Past it new sockets are closed at once.</summary>
    public int MaxPendingInboundHandshakes { get; init; } = 128;

    /// <summary>Addresses of one peer dialled at the same time.</summary>
    public int MaxConcurrentDialsPerPeer { get; init; } = 8;

    /// <summary>Inbound streams of one protocol on one connection that may run their handlers at once.</summary>
    public int MaxInboundStreamsPerProtocol { get; init; } = 256;

    /// <summary>TCP listen backlog.</summary>
    public int ListenBacklog { get; init; } = 512;

    /// <summary>Relayed (circuit) connections held at once, inbound and outbound together. Each rides a stream of a relay connection.</summary>
    public int MaxRelayedConnections { get; init; } = 128;
}

public sealed record HostTimeouts
{
    /// <summary>One address: TCP connect and the whole upgrade.</summary>
    public TimeSpan Dial { get; init; } = TimeSpan.FromSeconds(15);

    /// <summary>Each upgrade step on its own: pnet nonce, security negotiation, Noise, muxer negotiation.</summary>
    public TimeSpan HandshakeStep { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>multistream-select on a new stream.</summary>
    public TimeSpan StreamNegotiation { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Reading the peer's identify answer.</summary>
    public TimeSpan Identify { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Head start direct addresses get over relayed ones when a peer has both.</summary>
    public TimeSpan RelayDialDelay { get; init; } = TimeSpan.FromMilliseconds(500);
}
