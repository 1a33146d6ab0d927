using System.Net;

namespace Weft.Cloud.Config;

/// <summary>Everything one `weft cloud` replica is configured with. Every value has a default except the replica name and the token secret.</summary>
public sealed record CloudOptions
{
    /// <summary>This replica.</summary>
    public required ReplicaOptions Replica { get; init; }

    /// <summary>The WebSocket hub edge nodes connect to.</summary>
    public HubOptions Hub { get; init; } = new();

    /// <summary>The REST ingress for cloud apps.</summary>
    public RouterOptions Router { get; init; } = new();

    /// <summary>rest→eventbus delivery and eventbus→rest calls.</summary>
    public EventBusOptions EventBus { get; init; } = new();

    /// <summary>Where node → owning replica is recorded.</summary>
    public DirectoryOptions Directory { get; init; } = new();

    /// <summary>Rules and their endpoints (KubeEdge's Rule/RuleEndpoint fields).</summary>
    public RuleTable Rules { get; init; } = RuleTable.Empty;
}

public sealed record ReplicaOptions
{
    /// <summary>This replica's name, unique among replicas (e.g. cloud-a). Required; letters, digits, '-', '.', '_'.</summary>
    public required string Name { get; init; }

    /// <summary>
    /// The router URL other replicas forward to (scheme, host and port, e.g. http://10.0.0.5:9443). Default:
    /// http:// plus the router listen address. Must not be a wildcard address.
    /// </summary>
    public required Uri AdvertiseAddress { get; init; }
}

public sealed record HubOptions
{
    /// <summary>Address and port of the hub listener. Default 127.0.0.1:10000 (loopback only).</summary>
    public IPEndPoint Listen { get; init; } = new(IPAddress.Loopback, 10000);

    /// <summary>PEM certificate chain for TLS (wss). Required unless <see cref="AllowPlaintext"/>.</summary>
    public string? TlsCertFile { get; init; }

    /// <summary>PEM private key for <see cref="TlsCertFile"/>.</summary>
    public string? TlsKeyFile { get; init; }

    /// <summary>Serve plain ws:// without TLS (labs on one machine only). Default false.</summary>
    public bool AllowPlaintext { get; init; }

    /// <summary>
    /// File whose bytes are the secret every node token derives from: a node's token is
    /// hex(HMAC-SHA256(secret, node name)) (see `weft cloud token`). Required; at least 16 bytes.
    /// </summary>
    public string TokenSecretFile { get; init; } = "";

    /// <summary>How often each side sends a keepalive. Default 5 s.</summary>
    public TimeSpan KeepaliveInterval { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>A session with nothing received for this long is closed. Default 15 s (3 keepalives).</summary>
    public TimeSpan ReadTimeout { get; init; } = TimeSpan.FromSeconds(15);

    /// <summary>A frame not written within this long closes the session. Default 10 s.</summary>
    public TimeSpan WriteTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Largest message either way, bytes of JSON. Default 16 MiB (a 12 MiB body in base64).</summary>
    public int MaxMessageBytes { get; init; } = 16 * 1024 * 1024;

    /// <summary>Sessions this replica holds at once; past it the upgrade is answered 503 so the edge tries another replica. Default 50,000.</summary>
    public int MaxSessions { get; init; } = 50_000;

    /// <summary>Messages queued for one node's session; past it servicebus calls get 503 and eventbus messages stay queued. Default 1024.</summary>
    public int SessionQueueLength { get; init; } = 1024;

    /// <summary>How long recording ownership may take before the session goes on unrecorded (and keeps retrying). Default 5 s.</summary>
    public TimeSpan ClaimTimeout { get; init; } = TimeSpan.FromSeconds(5);
}

public sealed record RouterOptions
{
    /// <summary>Address and port of the REST ingress. Default 127.0.0.1:9443 (loopback only; KubeEdge's port).</summary>
    public IPEndPoint Listen { get; init; } = new(IPAddress.Loopback, 9443);

    /// <summary>The end-to-end deadline of a request without an X-Weft-Timeout-Ms header. Default 30 s.</summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>The longest deadline a caller may ask for with X-Weft-Timeout-Ms. Default 5 min.</summary>
    public TimeSpan MaxRequestTimeout { get; init; } = TimeSpan.FromMinutes(5);

    /// <summary>Largest request body (and edge reply body); larger requests get 413. Default 12 MiB (KubeEdge's).</summary>
    public int MaxBodyBytes { get; init; } = 12 * 1024 * 1024;

    /// <summary>Connecting to the owner replica when forwarding. Default 1 s.</summary>
    public TimeSpan ForwardConnectTimeout { get; init; } = TimeSpan.FromSeconds(1);
}

public sealed record EventBusOptions
{
    /// <summary>How often unacknowledged rest→eventbus messages are sent again on a live session. Default 5 s.</summary>
    public TimeSpan ResendInterval { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Messages waiting for one node; past it rest→eventbus gets 503. Default 10,000.</summary>
    public int MaxQueuedPerNode { get; init; } = 10_000;

    /// <summary>Largest rest→eventbus body (it is stored while queued). Default 1 MiB.</summary>
    public int MaxMessageBytes { get; init; } = 1024 * 1024;

    /// <summary>Message ids remembered per node to answer a repeated id as already delivered. Default 4096.</summary>
    public int DedupWindow { get; init; } = 4096;

    /// <summary>Deadline of an eventbus→rest call to the cloud app. Default 10 s.</summary>
    public TimeSpan TargetTimeout { get; init; } = TimeSpan.FromSeconds(10);
}

public enum DirectoryBackend
{
    Embedded,
    Etcd,
}

public sealed record DirectoryOptions
{
    /// <summary>embedded (default: one replica, or replicas on one machine sharing <see cref="EmbeddedPath"/>) or etcd.</summary>
    public DirectoryBackend Backend { get; init; } = DirectoryBackend.Embedded;

    /// <summary>Embedded: a folder shared by the replicas of one machine; null keeps the directory in this process only.</summary>
    public string? EmbeddedPath { get; init; }

    /// <summary>etcd: client URLs of the v3 JSON gateway (http://host:2379). Required for etcd.</summary>
    public IReadOnlyList<Uri> EtcdEndpoints { get; init; } = [];

    /// <summary>etcd: key prefix of every record. Default /weft/.</summary>
    public string EtcdPrefix { get; init; } = "/weft/";

    /// <summary>Records of a replica that stops renewing expire after this long. Default 10 s.</summary>
    public TimeSpan LeaseTtl { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>One call to the backend. Default 2 s.</summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(2);
}
