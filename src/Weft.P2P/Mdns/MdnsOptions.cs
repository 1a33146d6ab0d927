using Weft.Wire.Dns;

namespace Weft.P2P.Mdns;

/// <summary>Every name, limit and timer of an <see cref="MdnsService"/>.</summary>
public sealed record MdnsOptions
{
    /// <summary>libp2p's DNS-SD service (discovery/mdns.md).</summary>
    public const string LibP2PService = "_p2p._udp.local";

    /// <summary>EdgeMesh's default rendezvous string (sic), whose mDNS service is "EDGEMESH_PLAYGOUND.local".</summary>
    public const string EdgeMeshRendezvous = "EDGEMESH_PLAYGOUND";

    /// <summary>
    /// The DNS-SD service name asked for and answered: <see cref="LibP2PService"/>, or EdgeMesh's rendezvous string
    /// under "local" (<see cref="ForRendezvous"/>). Its case is kept on the wire: go's zeroconf and js match it
    /// case-sensitively.
    /// </summary>
    public DnsName ServiceName { get; init; } = DnsName.Parse(LibP2PService);

    /// <summary>The options for EdgeMesh's variant: go-libp2p's mDNS with service "RENDEZVOUS" in domain "local".</summary>
    public static MdnsOptions ForRendezvous(string rendezvous)
    {
        ArgumentException.ThrowIfNullOrEmpty(rendezvous);
        return new MdnsOptions { ServiceName = DnsName.FromLabels([rendezvous, "local"]) };
    }

    /// <summary>UDP port (5353; tests may use another).</summary>
    public int Port { get; init; } = 5353;

    /// <summary>How often to ask for peers after the first queries.</summary>
    public TimeSpan QueryInterval { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Gaps between the first queries after start (and after an interface change), before <see cref="QueryInterval"/> applies.</summary>
    public IReadOnlyList<TimeSpan> StartupQueryGaps { get; init; } = [TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(2)];

    /// <summary>Unsolicited announcements sent at start and when our addresses change, this far apart (RFC 6762 §8.3: at least two, one second apart).</summary>
    public int Announcements { get; init; } = 2;

    /// <summary>Gap between announcements.</summary>
    public TimeSpan AnnouncementGap { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>TTL of our PTR, SRV and TXT records; the peers we find are forgotten this long after their last answer unless they answer again.</summary>
    public TimeSpan RecordTtl { get; init; } = TimeSpan.FromSeconds(120);

    /// <summary>Least time between two multicast answers on one interface (RFC 6762 §6); queries inside it share the next answer.</summary>
    public TimeSpan MinResponseInterval { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>Largest datagram read; longer ones are truncated by the socket and then fail to parse (RFC 6762 §17 allows 9,000).</summary>
    public int MaxPacketSize { get; init; } = 9000;

    /// <summary>Largest answer we send; addresses that do not fit are left out (fits a 1,500-byte Ethernet MTU).</summary>
    public int MaxResponseSize { get; init; } = 1400;

    /// <summary>Datagrams processed per second; past it they are dropped unread (a flood costs a counter, not CPU or memory).</summary>
    public int MaxPacketsPerSecond { get; init; } = 500;

    /// <summary>Peers remembered at once; past it new peers are ignored until others expire or say goodbye.</summary>
    public int MaxTrackedPeers { get; init; } = 256;

    /// <summary>Addresses kept per peer from one answer.</summary>
    public int MaxAddressesPerPeer { get; init; } = 16;

    /// <summary>
    /// Loopback addresses in another host's answer are useless (and would make us dial ourselves or a local
    /// process), so they are dropped — unless the answer came from one of our own addresses (a peer on this host).
    /// </summary>
    public bool AcceptLoopbackFromThisHost { get; init; } = true;

    /// <summary>Names of the interfaces to use; empty = every interface that is up, multicast-capable and has an IPv4 address (loopback excluded).</summary>
    public IReadOnlyList<string> Interfaces { get; init; } = [];

    /// <summary>Problems with these options, each with how to fix it (empty when they are usable).</summary>
    public IReadOnlyList<string> Validate()
    {
        var p = new List<string>();
        if (ServiceName.Labels.Count < 2) p.Add($"service name '{ServiceName}' needs at least two labels (SERVICE.local)");
        if (Port is < 1 or > 65535) p.Add($"port {Port} is not 1..65535");
        if (QueryInterval <= TimeSpan.Zero) p.Add("QueryInterval must be positive");
        if (RecordTtl < TimeSpan.FromSeconds(1)) p.Add("RecordTtl must be at least one second");
        if (MaxPacketSize is < 512 or > 65535) p.Add($"MaxPacketSize {MaxPacketSize} is not 512..65535");
        if (MaxResponseSize < 512 || MaxResponseSize > MaxPacketSize) p.Add($"MaxResponseSize {MaxResponseSize} must be 512..MaxPacketSize");
        if (MaxPacketsPerSecond < 1) p.Add("MaxPacketsPerSecond must be at least 1");
        if (MaxTrackedPeers < 1) p.Add("MaxTrackedPeers must be at least 1");
        if (MaxAddressesPerPeer < 1) p.Add("MaxAddressesPerPeer must be at least 1");
        if (Announcements < 0) p.Add("Announcements must not be negative");
        return p;
    }
}
