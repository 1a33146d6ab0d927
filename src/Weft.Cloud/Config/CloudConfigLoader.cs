using System.Net;
using System.Text.RegularExpressions;

namespace Weft.Cloud.Config;

/// <summary>Thrown when a configuration has problems; <see cref="Problems"/> lists every one with its fix.</summary>
public sealed class CloudConfigException(IReadOnlyList<string> problems)
    : Exception("configuration problems:\n  " + string.Join("\n  ", problems))
{
    public IReadOnlyList<string> Problems { get; } = problems;
}

/// <summary>Reads the YAML file of `weft cloud --config PATH`; see docs/architecture.md "Cloud" for every key.</summary>
public static partial class CloudConfigLoader
{
    /// <summary>Largest config file read.</summary>
    public const int MaxConfigBytes = 4 * 1024 * 1024;

    public static CloudOptions LoadFile(string path)
    {
        var info = new FileInfo(path);
        if (!info.Exists) throw new CloudConfigException([$"{path}: no such file; pass the cloud config with --config PATH"]);
        if (info.Length > MaxConfigBytes) throw new CloudConfigException([$"{path}: {info.Length} bytes is over the limit of {MaxConfigBytes}"]);
        return Parse(File.ReadAllText(path), Path.GetDirectoryName(Path.GetFullPath(path))!);
    }

    /// <summary>Parses and validates; relative file paths are taken from <paramref name="baseDir"/>.</summary>
    public static CloudOptions Parse(string yaml, string baseDir)
    {
        var problems = new List<string>();
        var root = YamlTree.Parse(yaml, problems);

        var replica = root.Map("replica");
        var name = replica.String("name");
        if (string.IsNullOrEmpty(name)) replica.Problem("name", "is required: a unique name for this replica, e.g. cloud-a");
        else if (!ReplicaName().IsMatch(name)) replica.Problem("name", $"'{name}' may hold only letters, digits, '-', '.', '_' (at most 63)");
        var advertise = replica.String("advertiseAddress");
        replica.RejectUnknown();

        var hubMap = root.Map("hub");
        var d = new HubOptions();
        var hub = new HubOptions
        {
            Listen = EndPoint(hubMap, "listen", d.Listen),
            TlsCertFile = FilePath(hubMap, "tlsCertFile", baseDir),
            TlsKeyFile = FilePath(hubMap, "tlsKeyFile", baseDir),
            AllowPlaintext = hubMap.Bool("allowPlaintext", d.AllowPlaintext),
            TokenSecretFile = FilePath(hubMap, "tokenSecretFile", baseDir) ?? "",
            KeepaliveInterval = hubMap.Duration("keepaliveInterval", d.KeepaliveInterval, TimeSpan.FromMilliseconds(100), TimeSpan.FromMinutes(5)),
            ReadTimeout = hubMap.Duration("readTimeout", d.ReadTimeout, TimeSpan.FromMilliseconds(300), TimeSpan.FromMinutes(15)),
            WriteTimeout = hubMap.Duration("writeTimeout", d.WriteTimeout, TimeSpan.FromMilliseconds(100), TimeSpan.FromMinutes(5)),
            MaxMessageBytes = (int)hubMap.Bytes("maxMessageBytes", d.MaxMessageBytes, 4096, 64 << 20),
            MaxSessions = hubMap.Int("maxSessions", d.MaxSessions, 1, 1_000_000),
            SessionQueueLength = hubMap.Int("sessionQueueLength", d.SessionQueueLength, 1, 1_000_000),
            ClaimTimeout = hubMap.Duration("claimTimeout", d.ClaimTimeout, TimeSpan.FromMilliseconds(100), TimeSpan.FromMinutes(1)),
        };
        hubMap.RejectUnknown();
        if (hub.TokenSecretFile.Length == 0) hubMap.Problem("tokenSecretFile", "is required: a file of at least 16 random bytes (e.g. head -c 32 /dev/urandom > secret); node tokens derive from it");
        else if (File.Exists(hub.TokenSecretFile) && new FileInfo(hub.TokenSecretFile).Length < 16) hubMap.Problem("tokenSecretFile", $"{hub.TokenSecretFile} holds fewer than 16 bytes; use at least 16 random bytes");
        if (hub.TlsCertFile is null != (hub.TlsKeyFile is null)) hubMap.Problem("tlsCertFile", "tlsCertFile and tlsKeyFile go together; set both (PEM files)");
        if (hub.TlsCertFile is null && !hub.AllowPlaintext) hubMap.Problem("tlsCertFile", "the hub needs TLS: set tlsCertFile and tlsKeyFile, or allowPlaintext: true for a lab on one machine");
        if (hub.ReadTimeout <= hub.KeepaliveInterval) hubMap.Problem("readTimeout", $"must be longer than keepaliveInterval ({YamlTree.Show(hub.KeepaliveInterval)}), e.g. 3 times it");

        var routerMap = root.Map("router");
        var r = new RouterOptions();
        var router = new RouterOptions
        {
            Listen = EndPoint(routerMap, "listen", r.Listen),
            RequestTimeout = routerMap.Duration("requestTimeout", r.RequestTimeout, TimeSpan.FromMilliseconds(10), TimeSpan.FromHours(1)),
            MaxRequestTimeout = routerMap.Duration("maxRequestTimeout", r.MaxRequestTimeout, TimeSpan.FromMilliseconds(10), TimeSpan.FromHours(1)),
            MaxBodyBytes = (int)routerMap.Bytes("maxBodyBytes", r.MaxBodyBytes, 1, 64 << 20),
            ForwardConnectTimeout = routerMap.Duration("forwardConnectTimeout", r.ForwardConnectTimeout, TimeSpan.FromMilliseconds(10), TimeSpan.FromMinutes(1)),
        };
        routerMap.RejectUnknown();
        if (router.RequestTimeout > router.MaxRequestTimeout) routerMap.Problem("requestTimeout", "must not be longer than maxRequestTimeout");
        if (router.Listen.Port == hub.Listen.Port && (router.Listen.Address.Equals(hub.Listen.Address) || router.Listen.Address.Equals(IPAddress.Any) || hub.Listen.Address.Equals(IPAddress.Any)))
            routerMap.Problem("listen", $"uses the same port as hub.listen ({hub.Listen}); give the router and the hub different ports");

        var ebMap = root.Map("eventBus");
        var e = new EventBusOptions();
        var eventBus = new EventBusOptions
        {
            ResendInterval = ebMap.Duration("resendInterval", e.ResendInterval, TimeSpan.FromMilliseconds(100), TimeSpan.FromHours(1)),
            MaxQueuedPerNode = ebMap.Int("maxQueuedPerNode", e.MaxQueuedPerNode, 1, 10_000_000),
            MaxMessageBytes = (int)ebMap.Bytes("maxMessageBytes", e.MaxMessageBytes, 1, 1 << 20),
            DedupWindow = ebMap.Int("dedupWindow", e.DedupWindow, 16, 1_000_000),
            TargetTimeout = ebMap.Duration("targetTimeout", e.TargetTimeout, TimeSpan.FromMilliseconds(10), TimeSpan.FromHours(1)),
        };
        ebMap.RejectUnknown();

        var dirMap = root.Map("directory");
        var dd = new DirectoryOptions();
        var backendName = dirMap.String("backend", "embedded");
        var backend = backendName switch
        {
            "embedded" => DirectoryBackend.Embedded,
            "etcd" => DirectoryBackend.Etcd,
            _ => Bad(dirMap, "backend", $"'{backendName}' is not embedded or etcd"),
        };
        var endpoints = new List<Uri>();
        foreach (var s in dirMap.Strings("etcdEndpoints"))
        {
            if (Uri.TryCreate(s, UriKind.Absolute, out var u) && u.Scheme is "http" or "https" && u.AbsolutePath == "/") endpoints.Add(u);
            else dirMap.Problem("etcdEndpoints", $"'{s}' is not an etcd client URL such as http://127.0.0.1:2379");
        }
        var directory = new DirectoryOptions
        {
            Backend = backend,
            EmbeddedPath = FilePath(dirMap, "embeddedPath", baseDir, mustExist: false),
            EtcdEndpoints = endpoints,
            EtcdPrefix = dirMap.String("etcdPrefix", dd.EtcdPrefix),
            LeaseTtl = dirMap.Duration("leaseTtl", dd.LeaseTtl, TimeSpan.FromSeconds(2), TimeSpan.FromHours(1)),
            RequestTimeout = dirMap.Duration("requestTimeout", dd.RequestTimeout, TimeSpan.FromMilliseconds(50), TimeSpan.FromMinutes(1)),
        };
        dirMap.RejectUnknown();
        if (backend == DirectoryBackend.Etcd && endpoints.Count == 0) dirMap.Problem("etcdEndpoints", "the etcd backend needs at least one endpoint, e.g. [http://127.0.0.1:2379]");
        if (backend == DirectoryBackend.Embedded && endpoints.Count > 0) dirMap.Problem("etcdEndpoints", "is set but backend is embedded; set backend: etcd or remove etcdEndpoints");
        if (!directory.EtcdPrefix.StartsWith('/') || !directory.EtcdPrefix.EndsWith('/')) dirMap.Problem("etcdPrefix", "must start and end with '/', e.g. /weft/");

        var ruleEndpoints = root.List("ruleEndpoints").Select(t =>
        {
            var ep = new RuleEndpoint(t.String("namespace", "default"), Required(t, "name"), Required(t, "ruleEndpointType"), t.StringMap("properties"));
            t.RejectUnknown();
            return ep;
        }).ToList();
        var rules = root.List("rules").Select(t =>
        {
            var rule = new Rule(t.String("namespace", "default"), Required(t, "name"), Required(t, "source"), t.StringMap("sourceResource"), Required(t, "target"), t.StringMap("targetResource"));
            t.RejectUnknown();
            return rule;
        }).ToList();
        root.RejectUnknown();
        var table = RuleTable.Build(ruleEndpoints, rules, problems);

        Uri? adv = null;
        if (advertise is not null)
        {
            if (!Uri.TryCreate(advertise, UriKind.Absolute, out adv) || adv.Scheme is not ("http" or "https") || adv.AbsolutePath != "/")
                replica.Problem("advertiseAddress", $"'{advertise}' must be the router's base URL such as http://10.0.0.5:9443");
        }
        else if (router.Listen.Address.Equals(IPAddress.Any) || router.Listen.Address.Equals(IPAddress.IPv6Any))
        {
            replica.Problem("advertiseAddress", "is required when router.listen is a wildcard address: other replicas need an address they can reach");
        }
        else
        {
            adv = new UriBuilder("http", router.Listen.Address.ToString(), router.Listen.Port).Uri;
        }
        if (problems.Count > 0) throw new CloudConfigException(problems);
        return new CloudOptions
        {
            Replica = new ReplicaOptions { Name = name!, AdvertiseAddress = adv! },
            Hub = hub, Router = router, EventBus = eventBus, Directory = directory, Rules = table,
        };
    }

    private static DirectoryBackend Bad(YamlTree t, string key, string message)
    {
        t.Problem(key, message);
        return DirectoryBackend.Embedded;
    }

    private static string Required(YamlTree t, string key)
    {
        var v = t.String(key);
        if (string.IsNullOrEmpty(v)) t.Problem(key, "is required");
        return v ?? "";
    }

    private static string? FilePath(YamlTree t, string key, string baseDir, bool mustExist = true)
    {
        var v = t.String(key);
        if (string.IsNullOrEmpty(v)) return null;
        var full = Path.GetFullPath(v, baseDir);
        if (mustExist && !File.Exists(full)) t.Problem(key, $"{full}: no such file");
        return full;
    }

    public static IPEndPoint EndPoint(YamlTree t, string key, IPEndPoint fallback)
    {
        var v = t.String(key);
        if (v is null) return fallback;
        if (IPEndPoint.TryParse(v, out var ep) && ep.Port is > 0 and <= 65535) return ep;
        t.Problem(key, $"'{v}' must be ADDRESS:PORT with a numeric address, e.g. 127.0.0.1:9443");
        return fallback;
    }

    [GeneratedRegex("^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")]
    private static partial Regex ReplicaName();
}
