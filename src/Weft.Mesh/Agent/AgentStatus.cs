namespace Weft.Mesh.Agent;

/// <summary>One relay as <c>/status</c> shows it.</summary>
public sealed record RelayStatusView(
    string Name, string? PeerId, string State, bool Reserved, bool Preferred, double? RttMs, string? Since, string? LastError, int Failures, IReadOnlyList<string> Addresses);

/// <summary>The path to one peer: <c>direct</c>, <c>relay</c> (through <see cref="Via"/>) or <c>none</c>.</summary>
public sealed record PathView(string? Name, string PeerId, string Kind, string? Via, double? RttMs, long DirectBytes, long RelayedBytes, int Connections);

/// <summary>This node as a relay: whether it serves and whether its advertise addresses were proven reachable.</summary>
public sealed record RelayRoleView(bool Configured, bool Serving, IReadOnlyList<string> AdvertiseAddresses, IReadOnlyDictionary<string, string> Reachability, int Reservations, int Circuits);

/// <summary>What <c>GET /status</c> returns (and <c>weft status --json</c> prints).</summary>
public sealed record AgentStatus(
    string Node,
    string PeerId,
    string Version,
    string StartedAt,
    bool Ready,
    IReadOnlyList<string> NotReadyBecause,
    IReadOnlyList<string> Listen,
    IReadOnlyList<string> Advertised,
    string Reachability,
    RelayRoleView RelayRole,
    IReadOnlyList<RelayStatusView> Relays,
    string? PreferredRelay,
    long Failovers,
    IReadOnlyList<PathView> Peers,
    IReadOnlyList<string> Warnings,
    string? ConfigPath,
    int ConfigReloads,
    string? LastConfigError,
    object? Cloud)
{
    /// <summary>The service proxy (null when modules.edgeProxy is off).</summary>
    public Proxy.ProxyView? Proxy { get; init; }

    /// <summary>The proxied services, each with its address and URL on this node.</summary>
    public IReadOnlyList<Proxy.ServiceView> Services { get; init; } = [];

    /// <summary>The edge DNS server (null when modules.edgeDNS is off).</summary>
    public Dns.EdgeDnsView? Dns { get; init; }
}

/// <summary>One tunnel ping (a new stream each time), as <c>POST /ping</c> streams them.</summary>
public sealed record PingReply(int Seq, bool Ok, double? RttMs, double? OpenMs, string? Path, string? Via, string? Error, string Utc);
