using System.Globalization;
using System.Net;
using System.Text;

namespace Weft.Mesh.Proxy;

public enum ServiceProtocol
{
    Tcp,
    Udp,
}

/// <summary>How a new connection (or UDP flow) chooses among a service's endpoints.</summary>
public enum LoadBalancingPolicy
{
    /// <summary>Each endpoint in turn.</summary>
    RoundRobin,

    /// <summary>A uniformly random endpoint.</summary>
    Random,

    /// <summary>Rendezvous hashing on the client's IP address (not its port): a client keeps its endpoint while the endpoint lives.</summary>
    ConsistentHash,
}

/// <summary>Kubernetes' <c>sessionAffinity</c>.</summary>
public enum SessionAffinity
{
    None,

    /// <summary>A client IP sticks to the endpoint it last used until it has been quiet for the affinity timeout.</summary>
    ClientIP,
}

/// <summary>A service's namespace and name (<c>NAMESPACE/NAME</c>).</summary>
public readonly record struct ServiceName(string Namespace, string Name) : IComparable<ServiceName>
{
    public override string ToString() => Namespace + "/" + Name;

    public int CompareTo(ServiceName other)
    {
        var c = string.CompareOrdinal(Namespace, other.Namespace);
        return c != 0 ? c : string.CompareOrdinal(Name, other.Name);
    }
}

/// <summary>One port of a service: clients connect to <see cref="Port"/>, endpoints serve <see cref="TargetPort"/> (unless an endpoint names its own).</summary>
public sealed record ServicePort(string Name, int Port, ServiceProtocol Protocol, int TargetPort)
{
    public string ProtocolName => Protocol == ServiceProtocol.Tcp ? "TCP" : "UDP";
}

/// <summary>
/// An endpoint of a service: an address on node <see cref="NodeName"/> (null: reachable directly from every node).
/// <see cref="Ports"/> overrides the service ports' target ports, by port name.
/// </summary>
public sealed record ServiceEndpoint(string? NodeName, IPAddress Ip, IReadOnlyDictionary<string, int> Ports)
{
    public int PortFor(ServicePort p) => Ports.TryGetValue(p.Name, out var n) ? n : p.TargetPort;
}

/// <summary>One service as the catalogue holds it.</summary>
public sealed record ServiceSpec(
    ServiceName Name,
    IPAddress? ClusterIP,
    IReadOnlyList<ServicePort> Ports,
    IReadOnlyList<ServiceEndpoint> Endpoints,
    LoadBalancingPolicy Policy,
    SessionAffinity Affinity,
    TimeSpan AffinityTimeout)
{
    /// <summary>Kubernetes' default <c>sessionAffinityConfig.clientIP.timeoutSeconds</c> (3 hours).</summary>
    public static readonly TimeSpan DefaultAffinityTimeout = TimeSpan.FromSeconds(10800);

    /// <summary>Every field as text: two specs with the same fingerprint proxy the same way.</summary>
    public string Fingerprint()
    {
        var sb = new StringBuilder();
        var inv = CultureInfo.InvariantCulture;
        sb.Append(inv, $"{Name}|{ClusterIP}|{Policy}|{Affinity}|{AffinityTimeout.Ticks}");
        foreach (var p in Ports) sb.Append(inv, $"|p:{p.Name}:{p.Port}:{p.Protocol}:{p.TargetPort}");
        foreach (var e in Endpoints)
        {
            sb.Append(inv, $"|e:{e.NodeName}:{e.Ip}");
            foreach (var (k, v) in e.Ports.OrderBy(kv => kv.Key, StringComparer.Ordinal)) sb.Append(inv, $":{k}={v}");
        }
        return sb.ToString();
    }
}

/// <summary>
/// The services this node proxies: a value, replaced as a whole (from the services file, or pushed by the cloud
/// through <see cref="ServiceProxy.Apply"/>).
/// </summary>
public sealed class ServiceCatalog
{
    /// <summary>Most services in a catalogue.</summary>
    public const int MaxServices = 1024;

    /// <summary>Most ports per service.</summary>
    public const int MaxPortsPerService = 64;

    /// <summary>Most endpoints per service.</summary>
    public const int MaxEndpointsPerService = 1024;

    public static readonly ServiceCatalog Empty = new([]);

    public ServiceCatalog(IReadOnlyList<ServiceSpec> services)
    {
        if (services.Count > MaxServices) throw new ArgumentException($"{services.Count} services; at most {MaxServices}", nameof(services));
        if (services.Select(s => s.Name).Distinct().Count() != services.Count) throw new ArgumentException("a service is listed twice", nameof(services));
        foreach (var s in services)
        {
            if (s.Ports.Count is 0 or > MaxPortsPerService) throw new ArgumentException($"{s.Name}: 1..{MaxPortsPerService} ports", nameof(services));
            if (s.Endpoints.Count > MaxEndpointsPerService) throw new ArgumentException($"{s.Name}: at most {MaxEndpointsPerService} endpoints", nameof(services));
        }
        Services = services.OrderBy(s => s.Name).ToList();
    }

    /// <summary>The services, ordered by namespace and name.</summary>
    public IReadOnlyList<ServiceSpec> Services { get; }
}
