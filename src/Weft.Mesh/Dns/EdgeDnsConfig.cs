using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Weft.Mesh.Config;
using Weft.Wire.Dns;

namespace Weft.Mesh.Dns;

/// <summary>Every limit and timeout of the edge DNS server (<c>modules.edgeDNS.limits</c>).</summary>
public sealed record EdgeDnsLimits
{
    /// <summary>Forwarded queries waiting for an upstream at once (UDP and TCP together); one more is answered SERVFAIL.</summary>
    public int MaxForwarding { get; init; } = 1024;

    /// <summary>How long one upstream has to answer a forwarded query before the next is tried.</summary>
    public TimeSpan UpstreamTimeout { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>DNS-over-TCP client connections open at once; one more is closed at accept.</summary>
    public int MaxTcpConnections { get; init; } = 256;

    /// <summary>A TCP client connection with no query for this long is closed (RFC 7766 §6.2.3 suggests seconds).</summary>
    public TimeSpan TcpIdleTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Largest DNS message read or forwarded (the TCP length prefix's maximum).</summary>
    public const int MaxMessage = 65_535;

    /// <summary>Largest answer sent over UDP to a client that did not advertise a larger buffer (RFC 1035 §4.2.1).</summary>
    public const int ClassicUdpPayload = 512;

    /// <summary>How often a listener that could not be bound is tried again.</summary>
    public static readonly TimeSpan ListenRetryInterval = TimeSpan.FromSeconds(5);

    /// <summary>Backlog of the TCP listener.</summary>
    public const int ListenBacklog = 128;
}

/// <summary>
/// <c>modules.edgeDNS</c>: EdgeMesh's keys (<c>enable</c>, <c>listenPort</c>; <c>cacheDNS.upstreamServers</c> used when
/// <c>cacheDNS.enable</c>, its other keys accepted) and Weft's own. The server answers A queries for
/// <c>NAME.NAMESPACE.svc.DOMAIN</c> of the services the proxy serves with the service's address, and forwards every other
/// query to <see cref="Upstreams"/> (refused when there are none).
/// </summary>
public sealed record EdgeDnsConfig
{
    public const string DefaultDomain = "cluster.local";

    public bool Enable { get; init; }

    /// <summary>The address the server listens on, UDP and TCP (EdgeMesh uses its bridge device's 169.254.96.16).</summary>
    public IPAddress ListenAddress { get; init; } = IPAddress.Loopback;

    public int ListenPort { get; init; } = 53;

    /// <summary>The cluster domain: service names are NAME.NAMESPACE.svc.DOMAIN.</summary>
    public DnsName Domain { get; init; } = DnsName.Parse(DefaultDomain);

    /// <summary>Where other queries go, tried in order; empty: they are refused (and unknown names in the domain get NXDOMAIN).</summary>
    public IReadOnlyList<IPEndPoint> Upstreams { get; init; } = [];

    /// <summary>TTL of the answers for services, in seconds.</summary>
    public uint Ttl { get; init; } = 5;

    public EdgeDnsLimits Limits { get; init; } = new();

    public IPEndPoint ListenEndPoint => new(ListenAddress, ListenPort);

    /// <summary>Reads <c>modules.edgeDNS</c>; problems and warnings are added to the loader's lists.</summary>
    public static EdgeDnsConfig Read(YamlSection? s, bool proxyEnabled, ConfigProblems problems, List<string> warnings)
    {
        var c = new EdgeDnsConfig();
        if (s is null) return c;
        var enable = s.Bool("enable") ?? false;
        var port = s.Int("listenPort", 1, 65535) ?? c.ListenPort;
        var address = c.ListenAddress;
        if (s.String("listenAddress") is { } text)
        {
            if (!IPAddress.TryParse(text, out var a) || a.AddressFamily != AddressFamily.InterNetwork || text.Split('.').Length != 4)
                problems.Add(s.Path + ".listenAddress", s.Node, $"'{text}' is not an IPv4 address (e.g. 127.0.0.1, or EdgeMesh's 169.254.96.16 when that device exists)");
            else address = a;
        }
        var domain = c.Domain;
        if (s.String("domain") is { } d)
        {
            try
            {
                domain = DnsName.Parse(d.TrimEnd('.'));
                if (domain.Labels.Count == 0) throw new FormatException("the root");
            }
            catch (Exception ex) when (ex is FormatException or ArgumentException)
            {
                problems.Add(s.Path + ".domain", s.Node, $"'{d}' is not a domain name (e.g. {DefaultDomain}): {ex.Message}");
            }
        }
        var ttl = s.Int("ttl", 0, 86_400) is { } t ? (uint)t : c.Ttl;

        IReadOnlyList<string>? upstreamText = s.Strings("upstreamServers");
        if (s.Section("cacheDNS") is { } cache)
        {
            cache.Accept("autoDetect", "cacheTTL");
            var cacheEnabled = cache.Bool("enable") ?? false;
            var fromCache = cache.Strings("upstreamServers");
            if (cacheEnabled && upstreamText is null) upstreamText = fromCache;
            if (cacheEnabled)
                warnings.Add("modules.edgeDNS.cacheDNS: Weft forwards to the upstream servers without caching and does not auto-detect the cluster DNS (no Kubernetes API); autoDetect and cacheTTL are not used");
        }
        var upstreams = new List<IPEndPoint>();
        foreach (var u in upstreamText ?? [])
        {
            if (u.StartsWith('/'))
            {
                if (!File.Exists(u)) problems.Add(s.Path + ".upstreamServers", s.Node, $"{u} does not exist; name an IP[:port] or a resolv.conf-style file");
                else upstreams.AddRange(ReadResolvConf(u));
            }
            else if (ParseEndPoint(u) is { } ep) upstreams.Add(ep);
            else problems.Add(s.Path + ".upstreamServers", s.Node, $"'{u}' is not an IPv4 address with an optional port (e.g. 10.96.0.10 or 10.96.0.10:53) or a resolv.conf path");
        }
        // Never forward to ourselves: a resolv.conf naming this server would loop each query until it timed out.
        var self = new IPEndPoint(address, port);
        if (upstreams.RemoveAll(u => u.Equals(self) || (u.Port == port && address.Equals(IPAddress.Any))) > 0)
            warnings.Add($"modules.edgeDNS.upstreamServers named this server ({self}); left out so queries do not loop");

        var limits = c.Limits;
        if (s.Section("limits") is { } l)
        {
            limits = new EdgeDnsLimits
            {
                MaxForwarding = l.Int("maxForwarding", 1, 1_000_000) ?? limits.MaxForwarding,
                UpstreamTimeout = l.Duration("upstreamTimeout", TimeSpan.FromMilliseconds(50), TimeSpan.FromSeconds(30), TimeSpan.FromSeconds(1)) ?? limits.UpstreamTimeout,
                MaxTcpConnections = l.Int("maxTcpConnections", 1, 100_000) ?? limits.MaxTcpConnections,
                TcpIdleTimeout = l.Duration("tcpIdleTimeout", TimeSpan.FromMilliseconds(100), TimeSpan.FromMinutes(10), TimeSpan.FromSeconds(1)) ?? limits.TcpIdleTimeout,
            };
        }
        if (enable && !proxyEnabled)
            problems.Add(s.Path + ".enable", s.Node, "edge DNS answers for the services the proxy serves; enable modules.edgeProxy too, or set this to false");
        return new EdgeDnsConfig { Enable = enable, ListenAddress = address, ListenPort = port, Domain = domain, Upstreams = upstreams, Ttl = ttl, Limits = limits };
    }

    /// <summary>"IP" (port 53) or "IP:PORT", IPv4 only; null when it is neither.</summary>
    internal static IPEndPoint? ParseEndPoint(string text)
    {
        var parts = text.Split(':');
        if (parts.Length is < 1 or > 2 || parts[0].Split('.').Length != 4 || !IPAddress.TryParse(parts[0], out var a) || a.AddressFamily != AddressFamily.InterNetwork)
            return null;
        var port = 53;
        if (parts.Length == 2 && (!int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out port) || port is < 1 or > 65535)) return null;
        return new IPEndPoint(a, port);
    }

    /// <summary>The IPv4 <c>nameserver</c> lines of a resolv.conf-style file.</summary>
    internal static IEnumerable<IPEndPoint> ReadResolvConf(string path)
    {
        foreach (var raw in File.ReadLines(path).Take(1000))
        {
            var line = raw.Split('#', ';')[0].Trim();
            var fields = line.Split((char[])[' ', '\t'], StringSplitOptions.RemoveEmptyEntries);
            if (fields is ["nameserver", var ip, ..] && ParseEndPoint(ip) is { } ep) yield return ep;
        }
    }
}
