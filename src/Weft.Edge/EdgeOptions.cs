using System.Net;

namespace Weft.Edge;

/// <summary>
/// Everything the edge's cloud link is configured with. Only <see cref="NodeName"/>, <see cref="CloudUrls"/> and
/// <see cref="Token"/> have no default. <see cref="Validate"/> lists every problem with its fix.
/// </summary>
public sealed record EdgeOptions
{
    /// <summary>This node's name (a DNS-1123 name, as Kubernetes node names).</summary>
    public string NodeName { get; init; } = "";

    /// <summary>
    /// The cloud hub: one load-balanced URL, or every replica's URL (tried in turn, starting after the one that
    /// failed). ws:// or wss://; a URL without a path gets KubeEdge's /{projectId}/{node}/events.
    /// </summary>
    public IReadOnlyList<Uri> CloudUrls { get; init; } = [];

    /// <summary>This node's hub token (`weft cloud token NODE`).</summary>
    public string Token { get; init; } = "";

    /// <summary>KubeEdge's project id, sent as the project_id header and used in the default path.</summary>
    public string ProjectId { get; init; } = "e632aba927ea4ac2b575ec1603d56f10";

    /// <summary>PEM file of the CA that signed the cloud's certificate (wss); null trusts the system store.</summary>
    public string? TrustedCaFile { get; init; }

    /// <summary>How often a keepalive is sent. Default 5 s.</summary>
    public TimeSpan KeepaliveInterval { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>A link with nothing received for this long is dropped and dialled again. Default 15 s.</summary>
    public TimeSpan ReadTimeout { get; init; } = TimeSpan.FromSeconds(15);

    /// <summary>A frame not written within this long drops the link. Default 10 s.</summary>
    public TimeSpan WriteTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Dial, TLS, upgrade and the cloud's welcome together. Default 5 s.</summary>
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>First wait before dialling again; doubles per failure with ±50 % jitter. Default 200 ms.</summary>
    public TimeSpan ReconnectInitialDelay { get; init; } = TimeSpan.FromMilliseconds(200);

    /// <summary>Longest wait between dials. Default 5 s.</summary>
    public TimeSpan ReconnectMaxDelay { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Largest hub message either way, bytes of JSON. Default 16 MiB.</summary>
    public int MaxMessageBytes { get; init; } = 16 * 1024 * 1024;

    /// <summary>Messages queued towards the cloud. Default 1024.</summary>
    public int QueueLength { get; init; } = 1024;

    /// <summary>servicebus: where edge apps listen (KubeEdge: 127.0.0.1). Default 127.0.0.1.</summary>
    public IPAddress AppAddress { get; init; } = IPAddress.Loopback;

    /// <summary>servicebus: longest call to an edge app, whatever the cloud's deadline. Default 60 s.</summary>
    public TimeSpan MaxAppTimeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>servicebus: largest app reply body; larger replies are reported as an error. Default 12 MiB.</summary>
    public int MaxAppBodyBytes { get; init; } = 12 * 1024 * 1024;

    /// <summary>servicebus: calls to edge apps at once; past it the cloud gets an error at once. Default 64.</summary>
    public int MaxConcurrentAppCalls { get; init; } = 64;

    /// <summary>eventbus: the local MQTT broker (KubeEdge's mqttServerExternal), or null to run without the eventbus. Default 127.0.0.1:1883.</summary>
    public IPEndPoint? MqttBroker { get; init; } = new(IPAddress.Loopback, 1883);

    /// <summary>eventbus: MQTT client id. Default "weft-edge-" + node name.</summary>
    public string? MqttClientId { get; init; }

    /// <summary>eventbus: MQTT user name, or null.</summary>
    public string? MqttUsername { get; init; }

    /// <summary>eventbus: MQTT password, or null.</summary>
    public string? MqttPassword { get; init; }

    /// <summary>eventbus: MQTT keepalive; a PINGREQ goes out at half of it, and silence for 1.5× drops the broker link. Default 30 s.</summary>
    public TimeSpan MqttKeepalive { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>eventbus: QoS of publishes to the broker (0 or 1). Cloud messages are acknowledged only after the broker's PUBACK at QoS 1. Default 1.</summary>
    public int MqttQos { get; init; } = 1;

    /// <summary>eventbus: largest MQTT packet. Default 1 MiB + 64 KiB.</summary>
    public int MqttMaxPacketBytes { get; init; } = (1024 + 64) * 1024;

    /// <summary>eventbus: QoS 1 publishes awaiting PUBACK at once. Default 64.</summary>
    public int MqttMaxInflight { get; init; } = 64;

    /// <summary>eventbus: message ids remembered to answer a repeated cloud message without publishing it twice. Default 4096.</summary>
    public int DedupWindow { get; init; } = 4096;

    /// <summary>eventbus: edge MQTT messages waiting for the cloud's acknowledgement; past it new ones are dropped and counted. Default 1024.</summary>
    public int MaxPendingUploads { get; init; } = 1024;

    /// <summary>eventbus: how often unacknowledged uploads are sent again on a live link. Default 5 s.</summary>
    public TimeSpan UploadResendInterval { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Every problem, each with how to fix it; empty when the options are usable.</summary>
    public IReadOnlyList<string> Validate()
    {
        var p = new List<string>();
        if (!System.Text.RegularExpressions.Regex.IsMatch(NodeName, "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$") || NodeName.Length > 253)
            p.Add($"NodeName: '{NodeName}' is not a node name; set it to this node's name (lower-case letters, digits, '-', '.')");
        if (CloudUrls.Count == 0) p.Add("CloudUrls: give the load balancer's URL or every replica's, e.g. wss://cloud.example:10000");
        foreach (var u in CloudUrls)
            if (!u.IsAbsoluteUri || u.Scheme is not ("ws" or "wss")) p.Add($"CloudUrls: '{u}' must be a ws:// or wss:// URL");
        if (Token.Length == 0) p.Add("Token: set this node's hub token (weft cloud token --config CLOUD.yaml NODE)");
        if (TrustedCaFile is not null && !File.Exists(TrustedCaFile)) p.Add($"TrustedCaFile: {TrustedCaFile} does not exist; give the cloud CA's PEM file or leave it unset");
        void Positive(TimeSpan t, string name) { if (t <= TimeSpan.Zero) p.Add($"{name}: must be more than zero"); }
        Positive(KeepaliveInterval, nameof(KeepaliveInterval));
        Positive(ConnectTimeout, nameof(ConnectTimeout));
        Positive(WriteTimeout, nameof(WriteTimeout));
        Positive(ReconnectInitialDelay, nameof(ReconnectInitialDelay));
        Positive(MaxAppTimeout, nameof(MaxAppTimeout));
        Positive(MqttKeepalive, nameof(MqttKeepalive));
        Positive(UploadResendInterval, nameof(UploadResendInterval));
        if (ReadTimeout <= KeepaliveInterval) p.Add($"ReadTimeout: must be longer than KeepaliveInterval ({KeepaliveInterval.TotalSeconds} s), e.g. 3 times it");
        if (ReconnectMaxDelay < ReconnectInitialDelay) p.Add("ReconnectMaxDelay: must not be shorter than ReconnectInitialDelay");
        if (ReconnectInitialDelay >= TimeSpan.FromSeconds(1)) p.Add("ReconnectInitialDelay: keep it under 1 s so a failover stays fast");
        if (MqttKeepalive.TotalSeconds > ushort.MaxValue || MqttKeepalive < TimeSpan.FromSeconds(1)) p.Add("MqttKeepalive: must be from 1 s to 65535 s (whole seconds on the wire)");
        if (MaxMessageBytes < 4096) p.Add("MaxMessageBytes: must be at least 4096");
        if (MqttQos is not (0 or 1)) p.Add("MqttQos: must be 0 or 1");
        if (MqttMaxPacketBytes < 1024) p.Add("MqttMaxPacketBytes: must be at least 1024");
        foreach (var (v, name) in new[] { (QueueLength, nameof(QueueLength)), (MaxConcurrentAppCalls, nameof(MaxConcurrentAppCalls)), (MqttMaxInflight, nameof(MqttMaxInflight)), (DedupWindow, nameof(DedupWindow)), (MaxPendingUploads, nameof(MaxPendingUploads)), (MaxAppBodyBytes, nameof(MaxAppBodyBytes)) })
            if (v < 1) p.Add($"{name}: must be at least 1");
        if (MqttMaxInflight > 65535) p.Add("MqttMaxInflight: at most 65535 (packet identifiers)");
        return p;
    }
}
