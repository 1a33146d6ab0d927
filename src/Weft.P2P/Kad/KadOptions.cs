using Weft.Wire.Kad;
using Weft.Wire.Multiformats;

namespace Weft.P2P.Kad;

/// <summary>
/// Server mode answers DHT requests and says so in identify (others put it in their routing tables); client mode
/// only asks (kad-dht/README.md "Client and server mode").
/// </summary>
public enum KadMode
{
    Client,
    Server,
}

/// <summary>Every protocol choice, limit and timer of a <see cref="KadDht"/>.</summary>
public sealed record KadOptions
{
    /// <summary><see cref="KadMessage.ProtocolId"/> (the default) or <see cref="KadMessage.LanProtocolId"/>.</summary>
    public string Protocol { get; init; } = KadMessage.ProtocolId;

    public KadMode Mode { get; init; } = KadMode.Server;

    /// <summary>
    /// A LAN-only table (go's dual DHT, LAN half): only peers reached over private or loopback IPs enter the
    /// routing table, and only such addresses are handed out. <see cref="Lan"/> sets it with the LAN protocol.
    /// </summary>
    public bool LanOnly { get; init; }

    /// <summary>The LAN DHT: <see cref="KadMessage.LanProtocolId"/>, <see cref="LanOnly"/>.</summary>
    public static KadOptions Lan { get; } = new() { Protocol = KadMessage.LanProtocolId, LanOnly = true };

    /// <summary>Peers to join through: multiaddrs ending in /p2p/ID. Dialled at start and whenever the table is empty.</summary>
    public IReadOnlyList<Multiaddr> BootstrapPeers { get; init; } = [];

    /// <summary>k: peers per bucket, peers returned per answer, replicas written by a put or a provide (spec: 20).</summary>
    public int BucketSize { get; init; } = 20;

    /// <summary>α: requests in flight per lookup (spec: 10).</summary>
    public int Alpha { get; init; } = 10;

    /// <summary>
    /// Peers with the same IP address in one bucket (0 = no cap). Stops one machine from filling a bucket with
    /// made-up identities. Nodes sharing one address (all on 127.0.0.1 in a test) need it raised.
    /// </summary>
    public int MaxPeersPerIpPerBucket { get; init; } = 2;

    /// <summary>A bucket's oldest peer is checked at most this many at a time when newcomers want its place.</summary>
    public int MaxConcurrentEvictionChecks { get; init; } = 4;

    /// <summary>One request: dial, open the stream, send, read the answer.</summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>A whole lookup (put, get, provide, find).</summary>
    public TimeSpan QueryTimeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>How often the table is refreshed: a lookup of our own ID and one of a random ID per bucket in use.</summary>
    public TimeSpan RefreshInterval { get; init; } = TimeSpan.FromMinutes(10);

    /// <summary>When the table is empty, bootstrap peers are dialled again after this long.</summary>
    public TimeSpan BootstrapRetryInterval { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Buckets refreshed at most (those for the longest shared prefixes are nearly always empty).</summary>
    public int MaxRefreshedBuckets { get; init; } = 16;

    /// <summary>A get stops once this many peers returned a valid value (the local store counts as one).</summary>
    public int GetQuorum { get; init; } = 3;

    /// <summary>Record namespaces accepted by PUT_VALUE and trusted in GET_VALUE answers.</summary>
    public RecordValidators Validators { get; init; } = RecordValidators.Default;

    /// <summary>How long a stored record is served after it was received.</summary>
    public TimeSpan RecordTtl { get; init; } = TimeSpan.FromHours(36);

    /// <summary>How long a provider record is served after it was added (spec: 48 h).</summary>
    public TimeSpan ProviderTtl { get; init; } = TimeSpan.FromHours(48);

    /// <summary>How long a provider's addresses are handed out with its record (spec: 30 min; afterwards only what the peer store knows).</summary>
    public TimeSpan ProviderAddressTtl { get; init; } = TimeSpan.FromMinutes(30);

    /// <summary>Records stored.</summary>
    public int MaxRecords { get; init; } = 1024;

    /// <summary>Bytes of record values stored in total.</summary>
    public long MaxRecordBytes { get; init; } = 16L << 20;

    /// <summary>Keys with provider records.</summary>
    public int MaxProviderKeys { get; init; } = 4096;

    /// <summary>Providers kept per key.</summary>
    public int MaxProvidersPerKey { get; init; } = 64;

    /// <summary>Keys one peer may be a provider for at once.</summary>
    public int MaxKeysPerProvider { get; init; } = 256;

    /// <summary>Requests handled on one inbound stream before it is closed.</summary>
    public int MaxRequestsPerStream { get; init; } = 32;

    /// <summary>Inbound DHT streams of one connection handled at once.</summary>
    public int MaxInboundStreamsPerConnection { get; init; } = 16;

    /// <summary>Waiting for the next request on an inbound stream.</summary>
    public TimeSpan InboundIdleTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Problems with these options, each with how to fix it (empty when usable).</summary>
    public IReadOnlyList<string> Validate()
    {
        var p = new List<string>();
        if (string.IsNullOrEmpty(Protocol) || Protocol[0] != '/') p.Add($"protocol '{Protocol}' must start with '/'");
        foreach (var b in BootstrapPeers)
            if (b.PeerId is null) p.Add($"bootstrap peer {b} must end with /p2p/<peer id>");
        if (BucketSize is < 1 or > 256) p.Add($"BucketSize {BucketSize} is not 1..256");
        if (Alpha is < 1 or > 64) p.Add($"Alpha {Alpha} is not 1..64");
        if (MaxPeersPerIpPerBucket < 0) p.Add("MaxPeersPerIpPerBucket must be 0 (no cap) or more");
        if (MaxConcurrentEvictionChecks < 1) p.Add("MaxConcurrentEvictionChecks must be at least 1");
        if (RequestTimeout <= TimeSpan.Zero || QueryTimeout <= TimeSpan.Zero) p.Add("RequestTimeout and QueryTimeout must be positive");
        if (RefreshInterval <= TimeSpan.Zero || BootstrapRetryInterval <= TimeSpan.Zero) p.Add("RefreshInterval and BootstrapRetryInterval must be positive");
        if (MaxRefreshedBuckets is < 0 or > 256) p.Add("MaxRefreshedBuckets must be 0..256");
        if (GetQuorum < 1) p.Add("GetQuorum must be at least 1");
        if (MaxRecords < 0 || MaxRecordBytes < 0 || MaxProviderKeys < 0 || MaxProvidersPerKey < 1 || MaxKeysPerProvider < 1)
            p.Add("store limits must not be negative (and providers per key / keys per provider at least 1)");
        if (MaxRequestsPerStream < 1 || MaxInboundStreamsPerConnection < 1) p.Add("MaxRequestsPerStream and MaxInboundStreamsPerConnection must be at least 1");
        return p;
    }
}
