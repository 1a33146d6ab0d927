using System.Net;
using Weft.Wire.Identity;
using Weft.Wire.Multiformats;

namespace Weft.Mesh.Config;

/// <summary>How the agent gets its libp2p identity.</summary>
public enum IdentityMode
{
    /// <summary>A random Ed25519 key created on first start and kept in <see cref="IdentityConfig.KeyFile"/> (mode 0600).</summary>
    Persisted,

    /// <summary>EdgeMesh's key derived from the node name, so Go agents can reach us by name (it authenticates nothing beyond the PSK).</summary>
    Legacy,
}

/// <summary>A relay named in <c>modules.edgeTunnel.relayNodes</c>.</summary>
/// <param name="NodeName">Its node name.</param>
/// <param name="Addresses">Where it listens: TCP multiaddrs, each without a /p2p part.</param>
/// <param name="PeerId">Its peer ID when known (configured, or derived in legacy mode); null = learned at the first connection.</param>
public sealed record RelayNode(string NodeName, IReadOnlyList<Multiaddr> Addresses, PeerId? PeerId)
{
    public bool Equals(RelayNode? other) =>
        other is not null && NodeName == other.NodeName && Addresses.SequenceEqual(other.Addresses) && Equals(PeerId, other.PeerId);

    public override int GetHashCode() => HashCode.Combine(NodeName, Addresses.Count, PeerId);
}

public sealed record IdentityConfig
{
    public IdentityMode Mode { get; init; } = IdentityMode.Persisted;

    /// <summary>Key file for <see cref="IdentityMode.Persisted"/>.</summary>
    public string KeyFile { get; init; } = "/var/lib/weft/identity.key";
}

/// <summary>The PSK private network (<c>modules.edgeTunnel.psk</c>).</summary>
public sealed record PskConfig
{
    public bool Enable { get; init; } = true;

    public string Path { get; init; } = "/etc/edgemesh/psk";

    /// <summary>
    /// True when the config file set <c>psk</c> itself. EdgeMesh enables the PSK by default; Weft does too, but when
    /// the config says nothing and the default file is absent it starts without one and warns, so a node name is all
    /// a first start needs.
    /// </summary>
    public bool Explicit { get; init; }
}

/// <summary>How the agent keeps its relays (Weft's <c>modules.edgeTunnel.relayManager</c>).</summary>
public sealed record RelayManagerConfig
{
    /// <summary>Reservations to hold (on the nearest relays first); the rest of the relays stay connected as spares.</summary>
    public int Reservations { get; init; } = 2;

    /// <summary>How often each relay connection is pinged (RTT and liveness).</summary>
    public TimeSpan ProbeInterval { get; init; } = TimeSpan.FromMilliseconds(250);

    /// <summary>A relay that answered no ping for this long is declared dead: its connection is closed and traffic moves on.</summary>
    public TimeSpan DeadAfter { get; init; } = TimeSpan.FromMilliseconds(750);

    /// <summary>Switch the preferred relay only when the other one is faster by at least this much...</summary>
    public TimeSpan SwitchMinGain { get; init; } = TimeSpan.FromMilliseconds(10);

    /// <summary>...and by at least this fraction of the current one's RTT (both must hold: hysteresis).</summary>
    public double SwitchMinFraction { get; init; } = 1.0 / 3;

    /// <summary>Longest wait between attempts to reach a relay that is down.</summary>
    public TimeSpan MaxRetryDelay { get; init; } = TimeSpan.FromSeconds(2);
}

/// <summary>Caps of the relay service a relay node runs (no data or duration limit, as EdgeMesh).</summary>
public sealed record RelayServiceConfig
{
    public int MaxReservations { get; init; } = 1024;
    public int MaxReservationsPerIp { get; init; } = 256;
    public int MaxCircuits { get; init; } = 1024;
    public int MaxCircuitsPerPeer { get; init; } = 128;
}

/// <summary>Stream caps on the tunnel protocol (EdgeMesh's <c>tunnelLimitConfig</c>).</summary>
public sealed record TunnelLimitConfig
{
    public bool Enable { get; init; } = true;

    /// <summary>Tunnel streams accepted at once from all peers.</summary>
    public int TunnelBaseStreamIn { get; init; } = 10240;

    /// <summary>Tunnel streams opened at once to all peers.</summary>
    public int TunnelBaseStreamOut { get; init; } = 10240;

    /// <summary>Tunnel streams accepted at once from one peer.</summary>
    public int TunnelPeerBaseStreamIn { get; init; } = 1024;

    /// <summary>Tunnel streams opened at once to one peer.</summary>
    public int TunnelPeerBaseStreamOut { get; init; } = 1024;
}

/// <summary><c>modules.edgeTunnel</c>: EdgeMesh's keys and Weft's own.</summary>
public sealed record TunnelConfig
{
    public bool Enable { get; init; } = true;

    /// <summary>ServerAndClient (answers tunnel streams, may relay) or ClientOnly (EdgeMesh's gateway mode).</summary>
    public string Mode { get; init; } = "ServerAndClient";

    public int ListenPort { get; init; } = 20006;

    public string Rendezvous { get; init; } = "EDGEMESH_PLAYGOUND";

    public IReadOnlyList<RelayNode> RelayNodes { get; init; } = [];

    public int MaxCandidates { get; init; } = 15;

    /// <summary>EdgeMesh's relay reconnect loop period; Weft probes relays continuously and reconnects at once, so it is only an upper bound.</summary>
    public TimeSpan HeartbeatPeriod { get; init; } = TimeSpan.FromSeconds(120);

    /// <summary>How often discovery looks for peers again (DHT rendezvous).</summary>
    public TimeSpan FinderPeriod { get; init; } = TimeSpan.FromSeconds(60);

    public PskConfig Psk { get; init; } = new();

    public TunnelLimitConfig Limits { get; init; } = new();

    /// <summary>"*" (every interface) or a comma-separated list of interface names.</summary>
    public string ListenInterfaces { get; init; } = "*";

    /// <summary>Interface-name prefixes never listened on, besides EdgeMesh's built-in ones.</summary>
    public string ExtraFilteredInterfaces { get; init; } = "";

    public bool EnableIpfsLog { get; init; }

    public IdentityConfig Identity { get; init; } = new();

    public RelayManagerConfig RelayManager { get; init; } = new();

    public RelayServiceConfig RelayService { get; init; } = new();

    /// <summary>
    /// A node AutoNAT finds public (and not named in relayNodes) offers itself as a relay: it serves relay v2 and
    /// announces itself in the DHT, where every agent's relay finder picks it up (EdgeMesh documents this, never built it).
    /// </summary>
    public bool OfferRelay { get; init; }

    /// <summary>
    /// Peers to connect to at start besides the relays (Weft's <c>bootstrapPeers</c>): the DHT's way in when no relay
    /// is configured. Each is an IP (listenPort), IP:port or TCP multiaddr.
    /// </summary>
    public IReadOnlyList<Multiaddr> BootstrapPeers { get; init; } = [];

    /// <summary>Find peers in the LAN by multicast DNS.</summary>
    public bool Mdns { get; init; } = true;

    /// <summary>Find nodes across LANs through the DHT rendezvous (the relays are the DHT's servers).</summary>
    public bool Dht { get; init; } = true;

    /// <summary>Punch holes (DCUtR) to turn relayed connections into direct ones.</summary>
    public bool HolePunching { get; init; } = true;

    /// <summary>
    /// Endpoints the tunnel refuses to dial for peers (Weft's <c>deniedTargets</c>): by default this node's loopback and
    /// link-local ranges, so no peer reaches the admin API or a cloud metadata service through it.
    /// </summary>
    public IReadOnlyList<System.Net.IPNetwork> DeniedTargets { get; init; } = Tunnel.TunnelOptions.DefaultDeniedTargets;

    /// <summary>The resumable tunnel for proxied TCP between Weft nodes (Weft's <c>resume</c>).</summary>
    public Resume.ResumeOptions Resume { get; init; } = new();

    public bool IsClientOnly => string.Equals(Mode, "ClientOnly", StringComparison.OrdinalIgnoreCase);
}

/// <summary>The local admin API (Weft's <c>modules.admin</c>).</summary>
public sealed record AdminConfig
{
    public bool Enable { get; init; } = true;

    /// <summary>Where the admin API listens; loopback unless <see cref="AllowRemote"/>.</summary>
    public IPEndPoint Listen { get; init; } = new(IPAddress.Loopback, DefaultPort);

    /// <summary>Allow a non-loopback admin address (it has no authentication).</summary>
    public bool AllowRemote { get; init; }

    public const int DefaultPort = 20016;
}

/// <summary>
/// The agent's link to the Weft cloud (Weft's <c>modules.cloudLink</c>): the hub session, servicebus and eventbus
/// (KubeEdge's edgehub). The CLI turns it into Weft.Edge's options; Weft.Mesh itself never talks to the cloud.
/// </summary>
public sealed record CloudLinkConfig
{
    public bool Enable { get; init; }

    /// <summary>The hub: the load balancer's URL, or every replica's (ws:// or wss://).</summary>
    public IReadOnlyList<Uri> Urls { get; init; } = [];

    /// <summary>File holding this node's hub token (`weft cloud token --config CLOUD.yaml NODE`).</summary>
    public string? TokenFile { get; init; }

    /// <summary>PEM file of the CA that signed the cloud's certificate (wss); unset trusts the system store.</summary>
    public string? TrustedCaFile { get; init; }

    /// <summary>servicebus: the address edge apps listen on.</summary>
    public System.Net.IPAddress AppAddress { get; init; } = System.Net.IPAddress.Loopback;

    /// <summary>eventbus: the local MQTT broker; null runs without the eventbus.</summary>
    public System.Net.IPEndPoint? MqttBroker { get; init; } = new(System.Net.IPAddress.Loopback, 1883);
}

/// <summary>EdgeMesh's <c>modules.edgeTunnel.metricConfig</c>: Prometheus metrics on every interface at this port.</summary>
public sealed record MetricConfig
{
    public bool Enable { get; init; }
    public int Port { get; init; } = 9999;
}

/// <summary>The agent's whole configuration, as read from an edgemesh-agent.yaml (see <see cref="AgentConfigLoader"/>).</summary>
public sealed record AgentConfig
{
    public required string NodeName { get; init; }

    /// <summary>The file it was read from (watched for relay changes).</summary>
    public string? ConfigPath { get; init; }

    public TunnelConfig Tunnel { get; init; } = new();

    public AdminConfig Admin { get; init; } = new();

    public MetricConfig Metrics { get; init; } = new();

    public CloudLinkConfig CloudLink { get; init; } = new();

    /// <summary><c>modules.edgeProxy</c>: the service proxy.</summary>
    public Proxy.EdgeProxyConfig Proxy { get; init; } = new();

    /// <summary><c>modules.edgeDNS</c>: the edge DNS server for service names.</summary>
    public Dns.EdgeDnsConfig Dns { get; init; } = new();

    /// <summary>Warnings that do not stop the agent (keys accepted for compatibility but not used, and so on).</summary>
    public IReadOnlyList<string> Warnings { get; init; } = [];

    /// <summary>True when this node is named in relayNodes and may serve as a relay.</summary>
    public bool IsRelay => !Tunnel.IsClientOnly && Tunnel.RelayNodes.Any(r => r.NodeName == NodeName);
}
