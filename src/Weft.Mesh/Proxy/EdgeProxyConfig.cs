using System.Net;
using System.Net.Sockets;
using Weft.Mesh.Config;

namespace Weft.Mesh.Proxy;

/// <summary>Every limit and timeout of the service proxy (<c>modules.edgeProxy.limits</c>).</summary>
public sealed record ProxyLimits
{
    /// <summary>Proxied TCP connections open at once, all services together; one more is reset at accept.</summary>
    public int MaxConnections { get; init; } = 8192;

    /// <summary>Proxied TCP connections open at once to one service (all its ports); one more is reset at accept.</summary>
    public int MaxConnectionsPerService { get; init; } = 1024;

    /// <summary>UDP flows (one per client address and port) tracked at once, all services together.</summary>
    public int MaxUdpFlows { get; init; } = 4096;

    /// <summary>A UDP flow with no datagram either way for this long is closed (its tunnel stream with it).</summary>
    public TimeSpan UdpIdleTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Datagrams queued per UDP flow while its upstream is opening or slow; more are dropped (counted).</summary>
    public int UdpFlowQueue { get; init; } = 1024;

    /// <summary>One attempt to reach an endpoint: the TCP connect, or opening the tunnel stream with the far node's dial.</summary>
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Attempts to reach an endpoint for one client connection or UDP flow before it is given up (reset).</summary>
    public int MaxAttempts { get; init; } = 3;

    /// <summary>
    /// Wait before an endpoint that already failed for this connection is tried again (only when no untried endpoint is
    /// left: a single-endpoint service rides out a relay failover); doubles with each such retry.
    /// </summary>
    public TimeSpan RetryDelay { get; init; } = TimeSpan.FromMilliseconds(250);

    /// <summary>How long an endpoint that failed is passed over (doubling on each further failure)...</summary>
    public TimeSpan EndpointCooldown { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>...up to this long.</summary>
    public TimeSpan MaxEndpointCooldown { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Clients remembered per service port for ClientIP session affinity; past it, new clients are not pinned.</summary>
    public int MaxAffinityClients { get; init; } = 16384;

    /// <summary>Largest UDP datagram carried (the IPv4 maximum payload).</summary>
    public const int MaxDatagram = 65507;

    /// <summary>Backlog of each TCP service listener.</summary>
    public const int ListenBacklog = 512;

    /// <summary>How often a service port that could not be bound is tried again.</summary>
    public static readonly TimeSpan ListenRetryInterval = TimeSpan.FromSeconds(5);
}

/// <summary>
/// <c>modules.edgeProxy</c>: EdgeMesh's keys (<c>enable</c>; <c>serviceFilterMode</c>, <c>socks5Proxy</c> and
/// <c>loadBalancer.consistentHash</c> accepted, not used) and Weft's own. Services come from <see cref="ServicesFile"/>
/// (watched; later pushed by the cloud). Each service listens on its own address in <see cref="ServiceCidr"/>
/// (see docs/adr/0009-proxy-service-addresses.md).
/// </summary>
public sealed record EdgeProxyConfig
{
    /// <summary>The default <see cref="ServiceCidr"/>: a loopback range, so nothing is reachable from outside the node.</summary>
    public static readonly IPNetwork DefaultServiceCidr = IPNetwork.Parse("127.10.0.0/16");

    public bool Enable { get; init; }

    /// <summary>The YAML services file (absolute; a relative one in the config is taken from the config's folder). Null: no services until pushed.</summary>
    public string? ServicesFile { get; init; }

    /// <summary>Where service addresses come from: one per service, derived from namespace/name unless the file pins a clusterIP.</summary>
    public IPNetwork ServiceCidr { get; init; } = DefaultServiceCidr;

    public ProxyLimits Limits { get; init; } = new();

    /// <summary>Reads <c>modules.edgeProxy</c>; problems and warnings are added to the loader's lists.</summary>
    public static EdgeProxyConfig Read(YamlSection? s, ConfigProblems problems, List<string> warnings, string? configPath)
    {
        var c = new EdgeProxyConfig();
        if (s is null) return c;
        s.Accept("serviceFilterMode", "socks5Proxy", "loadBalancer");
        if (s.Section("socks5Proxy") is { } socks)
        {
            socks.Accept("listenPort");
            if (socks.Bool("enable") == true) warnings.Add("modules.edgeProxy.socks5Proxy is not served by this Weft version (use the service proxy or weft ping)");
        }
        if (s.Section("loadBalancer") is { } lb)
        {
            lb.Accept("consistentHash");
            if (lb.Has("consistentHash"))
                warnings.Add("modules.edgeProxy.loadBalancer.consistentHash is accepted but not used: Weft's consistent hash (policy: consistentHash in the services file) is rendezvous hashing on the client IP and needs no tuning");
        }
        var enable = s.Bool("enable") ?? c.Enable;
        string? file = null;
        if (s.String("servicesFile") is { } f)
        {
            if (f.Length == 0) problems.Add(s.Path + ".servicesFile", s.Node, "is empty; name the YAML file that lists the services, or remove the key");
            else
            {
                var dir = configPath is null ? Environment.CurrentDirectory : System.IO.Path.GetDirectoryName(configPath)!;
                file = System.IO.Path.GetFullPath(f, dir);
                if (enable && !File.Exists(file))
                    problems.Add(s.Path + ".servicesFile", s.Node, $"{file} does not exist; create it (an empty list is 'services: []') or remove the key");
            }
        }
        var cidr = c.ServiceCidr;
        if (s.String("serviceCIDR") is { } text)
        {
            var parts = text.Split('/');
            if (parts.Length != 2 || !IPAddress.TryParse(parts[0], out var a) || a.AddressFamily != AddressFamily.InterNetwork || parts[0].Split('.').Length != 4
                || !int.TryParse(parts[1], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var prefix) || prefix > 32)
                problems.Add(s.Path + ".serviceCIDR", s.Node, $"'{text}' is not an IPv4 CIDR range (e.g. {DefaultServiceCidr})");
            else if (prefix < 8)
                problems.Add(s.Path + ".serviceCIDR", s.Node, $"{text} is wider than a /8; use a smaller range");
            else if (!a.Equals(Masked(a, prefix)))
                problems.Add(s.Path + ".serviceCIDR", s.Node, $"'{text}' has host bits set; write {Masked(a, prefix)}/{prefix}");
            else cidr = new IPNetwork(a, prefix);
        }
        var limits = c.Limits;
        if (s.Section("limits") is { } l)
        {
            limits = new ProxyLimits
            {
                MaxConnections = l.Int("maxConnections", 1, 1_000_000) ?? limits.MaxConnections,
                MaxConnectionsPerService = l.Int("maxConnectionsPerService", 1, 1_000_000) ?? limits.MaxConnectionsPerService,
                MaxUdpFlows = l.Int("maxUdpFlows", 1, 1_000_000) ?? limits.MaxUdpFlows,
                UdpIdleTimeout = l.Duration("udpIdleTimeout", TimeSpan.FromMilliseconds(100), TimeSpan.FromHours(1), TimeSpan.FromSeconds(1)) ?? limits.UdpIdleTimeout,
                UdpFlowQueue = l.Int("udpFlowQueue", 1, 65536) ?? limits.UdpFlowQueue,
                ConnectTimeout = l.Duration("connectTimeout", TimeSpan.FromMilliseconds(100), TimeSpan.FromMinutes(2), TimeSpan.FromSeconds(1)) ?? limits.ConnectTimeout,
                MaxAttempts = l.Int("maxAttempts", 1, 16) ?? limits.MaxAttempts,
                RetryDelay = l.Duration("retryDelay", TimeSpan.Zero, TimeSpan.FromSeconds(10), TimeSpan.FromSeconds(1)) ?? limits.RetryDelay,
                EndpointCooldown = l.Duration("endpointCooldown", TimeSpan.Zero, TimeSpan.FromHours(1), TimeSpan.FromSeconds(1)) ?? limits.EndpointCooldown,
                MaxEndpointCooldown = l.Duration("maxEndpointCooldown", TimeSpan.Zero, TimeSpan.FromHours(1), TimeSpan.FromSeconds(1)) ?? limits.MaxEndpointCooldown,
                MaxAffinityClients = l.Int("maxAffinityClients", 1, 10_000_000) ?? limits.MaxAffinityClients,
            };
            if (limits.MaxConnectionsPerService > limits.MaxConnections)
                problems.Add(l.Path + ".maxConnectionsPerService", l.Node, $"{limits.MaxConnectionsPerService} is more than maxConnections ({limits.MaxConnections}); lower it or raise maxConnections");
            if (limits.MaxEndpointCooldown < limits.EndpointCooldown)
                problems.Add(l.Path + ".maxEndpointCooldown", l.Node, $"{YamlSection.FormatDuration(limits.MaxEndpointCooldown)} is shorter than endpointCooldown ({YamlSection.FormatDuration(limits.EndpointCooldown)})");
        }
        if (enable && file is null)
            warnings.Add("modules.edgeProxy is enabled without a servicesFile: no services are proxied until a catalogue is pushed");
        return new EdgeProxyConfig { Enable = enable, ServicesFile = file, ServiceCidr = cidr, Limits = limits };
    }

    internal static IPAddress Masked(IPAddress a, int prefix)
    {
        var b = a.GetAddressBytes();
        for (var i = 0; i < b.Length; i++) b[i] &= (byte)(0xFF << (8 - Math.Clamp(prefix - i * 8, 0, 8)));
        return new IPAddress(b);
    }
}
