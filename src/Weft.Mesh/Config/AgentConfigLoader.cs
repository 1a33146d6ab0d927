using System.Net;
using Weft.Mesh.Identity;
using Weft.Wire.Identity;
using Weft.Wire.Multiformats;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace Weft.Mesh.Config;

/// <summary>The configuration could not be used; <see cref="Problems"/> lists every problem with how to fix it.</summary>
public sealed class ConfigException(IReadOnlyList<string> problems)
    : Exception("invalid configuration:\n  " + string.Join("\n  ", problems))
{
    public IReadOnlyList<string> Problems { get; } = problems;
}

/// <summary>
/// Reads EdgeMesh's <c>edgemesh-agent.yaml</c> as it is (keys matched without regard to case, as EdgeMesh's parser
/// does) plus Weft's own keys in the same tree, and checks everything before the agent starts: every problem is
/// reported at once, each with its line and a fix. Unknown keys are errors (a typo must not silently fall back
/// to a default). The key reference is docs/agent-config.md.
/// </summary>
public static class AgentConfigLoader
{
    /// <summary>Largest config file read.</summary>
    public const int MaxConfigBytes = 1 << 20;

    /// <summary>Most relay nodes accepted.</summary>
    public const int MaxRelayNodes = 64;

    /// <summary>EdgeMesh never listens on interfaces whose names start with these.</summary>
    public static readonly IReadOnlyList<string> FilteredInterfacePrefixes = ["docker", "edgemesh", "tunl", "flannel", "cni", "br", "kube-ipvs"];

    /// <summary>Reads and checks <paramref name="path"/>; <paramref name="environment"/> supplies NODE_NAME (default: the process environment).</summary>
    public static AgentConfig Load(string path, Func<string, string?>? environment = null)
    {
        var info = new FileInfo(path);
        if (!info.Exists) throw new ConfigException([$"{path}: the config file does not exist; pass the path of an edgemesh-agent.yaml with --config"]);
        if (info.Length > MaxConfigBytes) throw new ConfigException([$"{path}: {info.Length} bytes is more than a config file may have ({MaxConfigBytes})"]);
        return Parse(File.ReadAllText(path), System.IO.Path.GetFullPath(path), environment);
    }

    public static AgentConfig Parse(string yaml, string? path = null, Func<string, string?>? environment = null)
    {
        environment ??= Environment.GetEnvironmentVariable;
        var problems = new ConfigProblems();
        var warnings = new List<string>();
        YamlMappingNode root;
        try
        {
            var stream = new YamlStream();
            stream.Load(new StringReader(yaml));
            if (stream.Documents.Count == 0 || stream.Documents[0].RootNode is YamlScalarNode { Value: null or "" })
                root = new YamlMappingNode();
            else if (stream.Documents[0].RootNode is YamlMappingNode m)
                root = m;
            else
                throw new ConfigException(["the config must be a YAML mapping (key: value lines)"]);
            if (stream.Documents.Count > 1) problems.Add("the config file holds more than one YAML document; keep one");
        }
        catch (YamlException ex)
        {
            throw new ConfigException([$"line {ex.Start.Line}, column {ex.Start.Column}: not valid YAML: {ex.InnerException?.Message ?? ex.Message}"]);
        }

        var top = new YamlSection(root, "", problems);
        var apiVersion = top.String("apiVersion");
        if (apiVersion is not null && apiVersion != "agent.edgemesh.config.kubeedge.io/v1alpha1")
            problems.Add("apiVersion", null, $"'{apiVersion}' is not agent.edgemesh.config.kubeedge.io/v1alpha1; fix or remove it");
        var kind = top.String("kind");
        if (kind is not null && kind != "EdgeMeshAgent") problems.Add("kind", null, $"'{kind}' is not EdgeMeshAgent; fix or remove it");
        if (top.Section("kubeAPIConfig") is { } kube)
        {
            kube.Accept("master", "contentType", "qps", "burst", "kubeConfig", "metaServer", "deleteKubeConfig");
            warnings.Add("kubeAPIConfig is accepted but not used: Weft does not read the Kubernetes API (services come from modules.edgeProxy)");
        }
        if (top.Section("commonConfig") is { } common)
            common.Accept("bridgeDeviceName", "bridgeDeviceIP", "pprofConfig");

        var modules = top.Section("modules");
        var tunnel = ReadTunnel(modules?.Section("edgeTunnel"), problems, warnings, out var nodeNameFromConfig, out var metrics);
        var admin = ReadAdmin(modules?.Section("admin"), problems);
        var cloud = ReadCloudLink(modules?.Section("cloudLink"), problems);
        var proxy = Proxy.EdgeProxyConfig.Read(modules?.Section("edgeProxy"), problems, warnings, path);
        var dns = Dns.EdgeDnsConfig.Read(modules?.Section("edgeDNS"), proxy.Enable, problems, warnings);
        if (modules?.Section("edgeCNI") is { } cni)
        {
            cni.Accept("encapsulationIP", "tunMode", "meshCIDRConfig");
            if (cni.Bool("enable") == true) problems.Add("modules.edgeCNI.enable", cni.Node, "Weft has no CNI mode; set it to false");
        }
        top.ReportUnknown();

        // NODE_NAME wins over the file, as in EdgeMesh (its DaemonSet sets it from spec.nodeName).
        var nodeName = environment("NODE_NAME") is { Length: > 0 } env ? env : nodeNameFromConfig;
        if (string.IsNullOrWhiteSpace(nodeName))
            problems.Add("modules.edgeTunnel.nodeName", null, "no node name: set modules.edgeTunnel.nodeName or the NODE_NAME environment variable");
        else if (nodeName.Length > 253 || nodeName.Any(c => char.IsWhiteSpace(c) || char.IsControl(c)))
            problems.Add("modules.edgeTunnel.nodeName", null, $"'{nodeName}' is not a node name (at most 253 characters, no spaces)");

        // Relay peer IDs: configured, or derived from the node name in legacy mode (then both must agree).
        var relays = new List<RelayNode>();
        foreach (var r in tunnel.RelayNodes)
        {
            var derived = tunnel.Identity.Mode == IdentityMode.Legacy && r.NodeName.Length > 0 ? LegacyIdentity.DerivePeerId(r.NodeName) : null;
            if (r.PeerId is not null && derived is not null && r.PeerId != derived)
                problems.Add($"modules.edgeTunnel.relayNodes[{r.NodeName}].peerID", null,
                    $"{r.PeerId} differs from {derived}, the ID legacy identity mode derives from the name; remove peerID or fix it");
            relays.Add(r with { PeerId = r.PeerId ?? derived });
        }

        if (tunnel.Psk.Enable && (tunnel.Psk.Explicit || File.Exists(tunnel.Psk.Path)) && !File.Exists(tunnel.Psk.Path))
            problems.Add("modules.edgeTunnel.psk.path", null, $"{tunnel.Psk.Path} does not exist; create it (the same file on every node) or set psk.enable: false");
        if (tunnel.Psk.Enable && !tunnel.Psk.Explicit && !File.Exists(tunnel.Psk.Path))
        {
            warnings.Add($"no PSK file at {tunnel.Psk.Path}: this node is not in a private network (any libp2p peer may connect); set modules.edgeTunnel.psk");
            tunnel = tunnel with { Psk = tunnel.Psk with { Enable = false } };
        }

        if (problems.Any) throw new ConfigException(problems.Items);
        return new AgentConfig
        {
            NodeName = nodeName!,
            ConfigPath = path,
            Tunnel = tunnel with { RelayNodes = relays },
            Admin = admin,
            Metrics = metrics,
            CloudLink = cloud,
            Proxy = proxy,
            Dns = dns,
            Warnings = warnings,
        };
    }

    private static TunnelConfig ReadTunnel(YamlSection? s, ConfigProblems problems, List<string> warnings, out string? nodeName, out MetricConfig metrics)
    {
        var t = new TunnelConfig();
        nodeName = null;
        metrics = new MetricConfig();
        if (s is null) return t;
        s.Accept("configPath");
        if (s.Section("metricConfig") is { } mc)
            metrics = new MetricConfig { Enable = mc.Bool("enable") ?? false, Port = mc.Int("port", 1, 65535) ?? metrics.Port };
        nodeName = s.String("nodeName");
        var mode = s.String("mode");
        if (mode is not null && !string.Equals(mode, "ServerAndClient", StringComparison.OrdinalIgnoreCase) && !string.Equals(mode, "ClientOnly", StringComparison.OrdinalIgnoreCase))
            problems.Add(Path(s, "mode"), null, $"'{mode}' is not a mode; use ServerAndClient or ClientOnly");
        var transport = s.String("transport");
        if (transport is not null && !string.Equals(transport, "tcp", StringComparison.OrdinalIgnoreCase))
            problems.Add(Path(s, "transport"), null, $"'{transport}': Weft speaks tcp only; set transport: tcp (every node must use the same transport)");
        var listenPort = s.Int("listenPort", 1, 65535) ?? t.ListenPort;
        var rendezvous = s.String("rendezvous");
        if (rendezvous is { Length: 0 or > 255 }) problems.Add(Path(s, "rendezvous"), null, "must be 1..255 characters");

        var psk = t.Psk;
        if (s.Section("psk") is { } p)
        {
            var path = p.String("path");
            if (path is { Length: 0 }) problems.Add(Path(p, "path"), p.Node, "is empty; name the PSK file");
            psk = new PskConfig { Enable = p.Bool("enable") ?? true, Path = path ?? psk.Path, Explicit = true };
        }

        var limits = t.Limits;
        if (s.Section("tunnelLimitConfig") is { } l)
        {
            limits = new TunnelLimitConfig
            {
                Enable = l.Bool("enable") ?? limits.Enable,
                TunnelBaseStreamIn = l.Int("tunnelBaseStreamIn", 1, 1_000_000) ?? limits.TunnelBaseStreamIn,
                TunnelBaseStreamOut = l.Int("tunnelBaseStreamOut", 1, 1_000_000) ?? limits.TunnelBaseStreamOut,
                TunnelPeerBaseStreamIn = l.Int("tunnelPeerBaseStreamIn", 1, 1_000_000) ?? limits.TunnelPeerBaseStreamIn,
                TunnelPeerBaseStreamOut = l.Int("tunnelPeerBaseStreamOut", 1, 1_000_000) ?? limits.TunnelPeerBaseStreamOut,
            };
        }

        var identity = t.Identity;
        if (s.Section("identity") is { } id)
        {
            var m = id.String("mode");
            var idMode = m switch
            {
                null => identity.Mode,
                _ when string.Equals(m, "persisted", StringComparison.OrdinalIgnoreCase) => IdentityMode.Persisted,
                _ when string.Equals(m, "legacy", StringComparison.OrdinalIgnoreCase) => IdentityMode.Legacy,
                _ => Bad(problems, Path(id, "mode"), $"'{m}' is not an identity mode; use persisted (a random key kept in keyFile) or legacy (EdgeMesh's name-derived key)", identity.Mode),
            };
            var keyFile = id.String("keyFile");
            if (keyFile is { Length: 0 }) problems.Add(Path(id, "keyFile"), id.Node, "is empty; name a file for the identity key");
            identity = new IdentityConfig { Mode = idMode, KeyFile = keyFile ?? identity.KeyFile };
        }

        var rm = t.RelayManager;
        if (s.Section("relayManager") is { } r)
        {
            rm = new RelayManagerConfig
            {
                Reservations = r.Int("reservations", 1, 32) ?? rm.Reservations,
                ProbeInterval = r.Duration("probeInterval", TimeSpan.FromMilliseconds(50), TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1)) ?? rm.ProbeInterval,
                DeadAfter = r.Duration("deadAfter", TimeSpan.FromMilliseconds(100), TimeSpan.FromSeconds(60), TimeSpan.FromSeconds(1)) ?? rm.DeadAfter,
                SwitchMinGain = r.Duration("switchMinGain", TimeSpan.Zero, TimeSpan.FromSeconds(10), TimeSpan.FromMilliseconds(1)) ?? rm.SwitchMinGain,
                SwitchMinFraction = r.Double("switchMinFraction", 0, 0.99) ?? rm.SwitchMinFraction,
                MaxRetryDelay = r.Duration("maxRetryDelay", TimeSpan.FromMilliseconds(100), TimeSpan.FromMinutes(5), TimeSpan.FromSeconds(1)) ?? rm.MaxRetryDelay,
            };
            if (rm.DeadAfter <= rm.ProbeInterval)
                problems.Add(Path(r, "deadAfter"), r.Node, $"{YamlSection.FormatDuration(rm.DeadAfter)} must be longer than probeInterval ({YamlSection.FormatDuration(rm.ProbeInterval)}), or one late ping kills the relay");
        }

        var rs = t.RelayService;
        if (s.Section("relayService") is { } svc)
        {
            rs = new RelayServiceConfig
            {
                MaxReservations = svc.Int("maxReservations", 1, 100_000) ?? rs.MaxReservations,
                MaxReservationsPerIp = svc.Int("maxReservationsPerIp", 1, 100_000) ?? rs.MaxReservationsPerIp,
                MaxCircuits = svc.Int("maxCircuits", 1, 100_000) ?? rs.MaxCircuits,
                MaxCircuitsPerPeer = svc.Int("maxCircuitsPerPeer", 1, 100_000) ?? rs.MaxCircuitsPerPeer,
            };
        }

        if (s.Bool("enableIpfsLog") == true) warnings.Add("enableIpfsLog: use --log-level debug for Weft's connection logs");

        var relays = ReadRelays(s, listenPort, problems);
        var bootstrap = new List<Multiaddr>();
        foreach (var b in s.Strings("bootstrapPeers") ?? [])
        {
            if (TryParseAdvertise(b, listenPort, out var m, out var why)) bootstrap.Add(m);
            else problems.Add(Path(s, "bootstrapPeers"), s.Node, $"'{b}' {why}");
        }
        var resume = t.Resume;
        if (s.Section("resume") is { } rs2)
        {
            resume = new Resume.ResumeOptions
            {
                Enable = rs2.Bool("enable") ?? resume.Enable,
                ResendBufferBytes = rs2.Int("resendBufferBytes", 64 * 1024, 256 * 1024 * 1024) ?? resume.ResendBufferBytes,
                ResendBufferBytesPerPeer = rs2.Int("resendBufferBytesPerPeer", 64 * 1024, int.MaxValue) ?? resume.ResendBufferBytesPerPeer,
                Grace = rs2.Duration("grace", TimeSpan.FromSeconds(1), TimeSpan.FromHours(1), TimeSpan.FromSeconds(1)) ?? resume.Grace,
                MaxSessions = rs2.Int("maxSessions", 1, 1_000_000) ?? resume.MaxSessions,
                MaxSessionsPerPeer = rs2.Int("maxSessionsPerPeer", 1, 1_000_000) ?? resume.MaxSessionsPerPeer,
            };
            if (resume.ResendBufferBytesPerPeer < resume.ResendBufferBytes)
                problems.Add(Path(rs2, "resendBufferBytesPerPeer"), rs2.Node, "must be at least resendBufferBytes");
        }
        var denied = t.DeniedTargets;
        if (s.Strings("deniedTargets") is { } cidrs)
        {
            var list = new List<IPNetwork>();
            foreach (var c in cidrs)
            {
                if (IPNetwork.TryParse(c, out var n)) list.Add(n);
                else problems.Add(Path(s, "deniedTargets"), s.Node, $"'{c}' is not a CIDR range (e.g. 127.0.0.0/8)");
            }
            denied = list;
        }
        var maxCandidates = s.Int("maxCandidates", 1, 1000) ?? t.MaxCandidates;
        return t with
        {
            Enable = s.Bool("enable") ?? t.Enable,
            Mode = mode ?? t.Mode,
            ListenPort = listenPort,
            Rendezvous = rendezvous ?? t.Rendezvous,
            RelayNodes = relays,
            MaxCandidates = Math.Max(maxCandidates, relays.Count),
            HeartbeatPeriod = s.Duration("heartbeatPeriod", TimeSpan.FromSeconds(1), TimeSpan.FromDays(1), TimeSpan.FromSeconds(1)) ?? t.HeartbeatPeriod,
            FinderPeriod = s.Duration("finderPeriod", TimeSpan.FromSeconds(1), TimeSpan.FromDays(1), TimeSpan.FromSeconds(1)) ?? t.FinderPeriod,
            Psk = psk,
            Limits = limits,
            ListenInterfaces = s.String("listenInterfaces") ?? t.ListenInterfaces,
            ExtraFilteredInterfaces = s.String("extraFilteredInterfaces") ?? t.ExtraFilteredInterfaces,
            EnableIpfsLog = s.Bool("enableIpfsLog") ?? false,
            Identity = identity,
            RelayManager = rm,
            RelayService = rs,
            OfferRelay = s.Bool("offerRelay") ?? t.OfferRelay,
            BootstrapPeers = bootstrap,
            Mdns = s.Bool("mdns") ?? t.Mdns,
            Dht = s.Bool("dht") ?? t.Dht,
            HolePunching = s.Bool("holePunching") ?? t.HolePunching,
            DeniedTargets = denied,
            Resume = resume,
        };
    }

    private static List<RelayNode> ReadRelays(YamlSection s, int listenPort, ConfigProblems problems)
    {
        var relays = new List<RelayNode>();
        var items = s.Sections("relayNodes");
        if (items.Count > MaxRelayNodes) problems.Add(Path(s, "relayNodes"), s.Node, $"{items.Count} relays; at most {MaxRelayNodes}");
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var item in items.Take(MaxRelayNodes))
        {
            var name = item.String("nodeName");
            if (string.IsNullOrWhiteSpace(name))
            {
                problems.Add(Path(item, "nodeName"), item.Node, "every relay needs a nodeName");
                name = "";
            }
            else if (!seen.Add(name))
            {
                problems.Add(Path(item, "nodeName"), item.Node, $"relay '{name}' is listed twice; merge its advertiseAddress lists");
            }
            var addrs = new List<Multiaddr>();
            foreach (var a in item.Strings("advertiseAddress") ?? [])
            {
                if (TryParseAdvertise(a, listenPort, out var m, out var why)) { if (!addrs.Contains(m)) addrs.Add(m); }
                else problems.Add(Path(item, "advertiseAddress"), item.Node, $"'{a}' {why}");
            }
            if (addrs.Count == 0 && name.Length > 0)
                problems.Add(Path(item, "advertiseAddress"), item.Node, $"relay '{name}' has no address; list the IP addresses others reach it at");
            PeerId? peer = null;
            if (item.String("peerID") is { } pid)
            {
                try { peer = PeerId.Parse(pid); }
                catch (FormatException ex) { problems.Add(Path(item, "peerID"), item.Node, $"'{pid}' is not a peer ID ({ex.Message}); copy it from 'weft key show'"); }
            }
            relays.Add(new RelayNode(name, addrs, peer));
        }
        return relays;
    }

    /// <summary>
    /// An advertise address: an IP (EdgeMesh: every node listens on the same port, so the local listenPort is
    /// used), IP:port, or a TCP multiaddr.
    /// </summary>
    public static bool TryParseAdvertise(string s, int listenPort, out Multiaddr addr, out string why)
    {
        addr = null!;
        why = "";
        s = s.Trim();
        try
        {
            if (s.StartsWith('/'))
            {
                var m = Multiaddr.Parse(s);
                if (m.PeerId is not null) m = m.WithoutPeerId();
                if (!m.TryGetTcpEndPoint(out _)) { why = "is not a TCP address (/ip4/A.B.C.D/tcp/PORT)"; return false; }
                addr = m;
                return true;
            }
        }
        catch (FormatException ex)
        {
            why = "is not a multiaddr: " + ex.Message;
            return false;
        }
        // IPAddress.TryParse also takes "10.1" or "7" as IPv4; EdgeMesh's addresses are dotted quads.
        static bool Plausible(string text, IPAddress a) =>
            a.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6 || text.Split('.').Length == 4;
        var withPort = s.StartsWith('[') || s.Count(c => c == ':') == 1;
        if (!withPort && IPAddress.TryParse(s, out var ip) && Plausible(s, ip))
        {
            addr = Multiaddr.FromTcp(new IPEndPoint(ip, listenPort));
            return true;
        }
        if (IPEndPoint.TryParse(s, out var ep) && ep.Port > 0 && Plausible(s.StartsWith('[') ? "::" : s[..s.LastIndexOf(':')], ep.Address))
        {
            addr = Multiaddr.FromTcp(ep);
            return true;
        }
        why = "is not an IP address, IP:port or TCP multiaddr (host names are not resolved)";
        return false;
    }

    private static AdminConfig ReadAdmin(YamlSection? s, ConfigProblems problems)
    {
        var a = new AdminConfig();
        if (s is null) return a;
        var allowRemote = s.Bool("allowRemote") ?? false;
        var listen = a.Listen;
        if (s.String("listen") is { } l)
        {
            if (IPEndPoint.TryParse(l, out var ep) && ep.Port is > 0 and <= 65535) listen = ep;
            else problems.Add(Path(s, "listen"), s.Node, $"'{l}' is not IP:port (e.g. 127.0.0.1:{AdminConfig.DefaultPort})");
            if (!IPAddress.IsLoopback(listen.Address) && !allowRemote)
                problems.Add(Path(s, "listen"), s.Node, $"{listen} is not a loopback address and the admin API has no authentication; use 127.0.0.1 or set allowRemote: true");
        }
        return new AdminConfig { Enable = s.Bool("enable") ?? true, Listen = listen, AllowRemote = allowRemote };
    }

    private static CloudLinkConfig ReadCloudLink(YamlSection? s, ConfigProblems problems)
    {
        var c = new CloudLinkConfig();
        if (s is null) return c;
        var urls = new List<Uri>();
        foreach (var u in s.Strings("urls") ?? [])
        {
            if (Uri.TryCreate(u, UriKind.Absolute, out var uri) && uri.Scheme is "ws" or "wss") urls.Add(uri);
            else problems.Add(Path(s, "urls"), s.Node, $"'{u}' is not a ws:// or wss:// URL (e.g. wss://cloud.example:10000)");
        }
        var enable = s.Bool("enable") ?? true;
        var token = s.String("tokenFile");
        if (enable && urls.Count == 0) problems.Add(Path(s, "urls"), s.Node, "name the cloud hub: the load balancer's URL or every replica's");
        if (enable && string.IsNullOrEmpty(token)) problems.Add(Path(s, "tokenFile"), s.Node, "name the file with this node's hub token (weft cloud token --config CLOUD.yaml NODE > FILE)");
        else if (enable && !File.Exists(token)) problems.Add(Path(s, "tokenFile"), s.Node, $"{token} does not exist; write this node's hub token there");
        var ca = s.String("trustedCaFile");
        if (ca is not null && !File.Exists(ca)) problems.Add(Path(s, "trustedCaFile"), s.Node, $"{ca} does not exist; give the cloud CA's PEM file or remove the key");
        var app = c.AppAddress;
        if (s.String("appAddress") is { } a && !IPAddress.TryParse(a, out app!))
        {
            problems.Add(Path(s, "appAddress"), s.Node, $"'{a}' is not an IP address");
            app = c.AppAddress;
        }
        var broker = c.MqttBroker;
        if (s.String("mqttBroker") is { } b)
        {
            if (b is "" or "none" or "off") broker = null;
            else if (IPEndPoint.TryParse(b, out var ep) && ep.Port > 0) broker = ep;
            else problems.Add(Path(s, "mqttBroker"), s.Node, $"'{b}' is not IP:port (e.g. 127.0.0.1:1883), or leave it empty to run without the eventbus");
        }
        return new CloudLinkConfig { Enable = enable, Urls = urls, TokenFile = token, TrustedCaFile = ca, AppAddress = app, MqttBroker = broker };
    }

    private static T Bad<T>(ConfigProblems problems, string path, string message, T fallback)
    {
        problems.Add(path, null, message);
        return fallback;
    }

    private static string Path(YamlSection s, string key) => s.Path + "." + key;
}
