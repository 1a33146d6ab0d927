using System.Net;
using System.Net.Sockets;
using System.Text.RegularExpressions;
using Weft.Mesh.Config;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace Weft.Mesh.Proxy;

/// <summary>
/// Reads the services file (YAML; keys matched without regard to case, unknown keys are errors, every problem is
/// listed at once with its line and a fix):
/// <code>
/// services:
/// - name: demo                 # a DNS label
///   namespace: default         # default "default"
///   clusterIP: 127.10.0.80     # optional, inside modules.edgeProxy.serviceCIDR; derived from namespace/name if absent
///   ports:
///   - {name: http, port: 80, protocol: TCP, targetPort: 8080}   # protocol TCP (default) or UDP; targetPort defaults to port
///   policy: roundRobin          # roundRobin (default) | random | consistentHash
///   sessionAffinity: ClientIP   # None (default) | ClientIP
///   sessionAffinityConfig: {clientIP: {timeoutSeconds: 10800}}
///   endpoints:
///   - {nodeName: lan2-a, ip: 192.168.2.21}                      # serves every port at its targetPort
///   - {nodeName: lan2-b, ip: 192.168.2.22, ports: [{name: http, port: 8081}]}
///   - {ip: 10.0.0.5, port: 8080}                                # no nodeName: dialled directly from every node; port: single-port services only
/// </code>
/// </summary>
public static partial class ServicesFile
{
    /// <summary>Largest services file read.</summary>
    public const int MaxFileBytes = 4 << 20;

    /// <summary>Reads and checks <paramref name="path"/>; throws <see cref="ConfigException"/> listing every problem.</summary>
    public static ServiceCatalog Load(string path, IPNetwork serviceCidr)
    {
        var info = new FileInfo(path);
        if (!info.Exists) throw new ConfigException([$"{path}: the services file does not exist; create it (an empty list is 'services: []')"]);
        if (info.Length > MaxFileBytes) throw new ConfigException([$"{path}: {info.Length} bytes is more than a services file may have ({MaxFileBytes})"]);
        try
        {
            return Parse(File.ReadAllText(path), serviceCidr);
        }
        catch (ConfigException ex)
        {
            throw new ConfigException(ex.Problems.Select(p => $"{path}: {p}").ToList());
        }
    }

    public static ServiceCatalog Parse(string yaml, IPNetwork serviceCidr)
    {
        var problems = new ConfigProblems();
        YamlMappingNode root;
        try
        {
            var stream = new YamlStream();
            stream.Load(new StringReader(yaml));
            if (stream.Documents.Count == 0 || stream.Documents[0].RootNode is YamlScalarNode { Value: null or "" })
                return ServiceCatalog.Empty;
            root = stream.Documents[0].RootNode as YamlMappingNode
                ?? throw new ConfigException(["the services file must be a YAML mapping with a 'services:' list"]);
            if (stream.Documents.Count > 1) problems.Add("the services file holds more than one YAML document; keep one");
        }
        catch (YamlException ex)
        {
            throw new ConfigException([$"line {ex.Start.Line}, column {ex.Start.Column}: not valid YAML: {ex.InnerException?.Message ?? ex.Message}"]);
        }
        var top = new YamlSection(root, "", problems);
        var items = top.Sections("services");
        if (items.Count > ServiceCatalog.MaxServices)
            problems.Add("services", root, $"{items.Count} services; at most {ServiceCatalog.MaxServices}");
        var services = new List<ServiceSpec>();
        var names = new HashSet<ServiceName>();
        var clusterIps = new Dictionary<IPAddress, ServiceName>();
        foreach (var item in items.Take(ServiceCatalog.MaxServices))
        {
            if (ReadService(item, serviceCidr, problems) is not { } spec) continue;
            if (!names.Add(spec.Name))
                problems.Add(item.Path + ".name", item.Node, $"service {spec.Name} is listed twice; keep one");
            else if (spec.ClusterIP is { } ip && !clusterIps.TryAdd(ip, spec.Name))
                problems.Add(item.Path + ".clusterIP", item.Node, $"{ip} is already the clusterIP of {clusterIps[ip]}; give each service its own or remove it (one is derived)");
            else services.Add(spec);
        }
        top.ReportUnknown();
        if (problems.Any) throw new ConfigException(problems.Items);
        return new ServiceCatalog(services);
    }

    [GeneratedRegex("^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")]
    private static partial Regex ServiceNameRegex();

    [GeneratedRegex("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")]
    private static partial Regex LabelRegex();

    private static ServiceSpec? ReadService(YamlSection s, IPNetwork cidr, ConfigProblems problems)
    {
        var ok = true;
        var name = s.String("name");
        if (string.IsNullOrEmpty(name))
        {
            problems.Add(s.Path + ".name", s.Node, "every service needs a name (a DNS label: lower-case letters, digits and '-')");
            ok = false;
        }
        else if (!ServiceNameRegex().IsMatch(name))
        {
            problems.Add(s.Path + ".name", s.Node, $"'{name}' is not a DNS label: use at most 63 lower-case letters, digits and '-', starting with a letter");
            ok = false;
        }
        var ns = s.String("namespace") ?? "default";
        if (!LabelRegex().IsMatch(ns))
        {
            problems.Add(s.Path + ".namespace", s.Node, $"'{ns}' is not a DNS label: use at most 63 lower-case letters, digits and '-'");
            ok = false;
        }

        IPAddress? clusterIp = null;
        if (s.String("clusterIP") is { } cip)
        {
            if (!IPAddress.TryParse(cip, out var a) || a.AddressFamily != AddressFamily.InterNetwork || cip.Split('.').Length != 4)
                problems.Add(s.Path + ".clusterIP", s.Node, $"'{cip}' is not an IPv4 address; remove it to have one derived from the name");
            else if (!cidr.Contains(a))
                problems.Add(s.Path + ".clusterIP", s.Node, $"{a} is outside modules.edgeProxy.serviceCIDR ({cidr}); pick one inside, remove it (one is derived), or widen serviceCIDR");
            else clusterIp = a;
        }

        var ports = ReadPorts(s, problems);
        if (ports is null) ok = false;

        var policy = LoadBalancingPolicy.RoundRobin;
        if (s.String("policy") is { } p)
        {
            switch (p.Replace("_", "", StringComparison.Ordinal).ToLowerInvariant())
            {
                case "roundrobin": policy = LoadBalancingPolicy.RoundRobin; break;
                case "random": policy = LoadBalancingPolicy.Random; break;
                case "consistenthash": policy = LoadBalancingPolicy.ConsistentHash; break;
                default:
                    problems.Add(s.Path + ".policy", s.Node, $"'{p}' is not a policy; use roundRobin, random or consistentHash");
                    ok = false;
                    break;
            }
        }
        var affinity = SessionAffinity.None;
        if (s.String("sessionAffinity") is { } aff)
        {
            if (string.Equals(aff, "ClientIP", StringComparison.OrdinalIgnoreCase)) affinity = SessionAffinity.ClientIP;
            else if (!string.Equals(aff, "None", StringComparison.OrdinalIgnoreCase))
            {
                problems.Add(s.Path + ".sessionAffinity", s.Node, $"'{aff}' is not a session affinity; use None or ClientIP");
                ok = false;
            }
        }
        var timeout = ServiceSpec.DefaultAffinityTimeout;
        if (s.Section("sessionAffinityConfig")?.Section("clientIP") is { } cfg && cfg.Int("timeoutSeconds", 1, 86400) is { } secs)
            timeout = TimeSpan.FromSeconds(secs);

        var endpoints = ports is null ? null : ReadEndpoints(s, ports, problems);
        if (endpoints is null) ok = false;
        return ok ? new ServiceSpec(new ServiceName(ns, name!), clusterIp, ports!, endpoints!, policy, affinity, timeout) : null;
    }

    private static List<ServicePort>? ReadPorts(YamlSection s, ConfigProblems problems)
    {
        var items = s.Sections("ports");
        if (items.Count == 0)
        {
            problems.Add(s.Path + ".ports", s.Node, "a service needs at least one port: ports: [{port: 80}]");
            return null;
        }
        if (items.Count > ServiceCatalog.MaxPortsPerService)
        {
            problems.Add(s.Path + ".ports", s.Node, $"{items.Count} ports; at most {ServiceCatalog.MaxPortsPerService}");
            return null;
        }
        var list = new List<ServicePort>();
        var ok = true;
        foreach (var item in items)
        {
            var name = item.String("name") ?? "";
            if (name.Length == 0 && items.Count > 1)
            {
                problems.Add(item.Path + ".name", item.Node, "a service with several ports must name each one (e.g. http, dns)");
                ok = false;
            }
            else if (name.Length > 0 && !LabelRegex().IsMatch(name))
            {
                problems.Add(item.Path + ".name", item.Node, $"'{name}' is not a port name: use lower-case letters, digits and '-'");
                ok = false;
            }
            var port = item.Int("port", 1, 65535);
            if (port is null && !item.Has("port"))
                problems.Add(item.Path + ".port", item.Node, "every port needs a port number (1..65535)");
            var protocol = ServiceProtocol.Tcp;
            if (item.String("protocol") is { } proto)
            {
                if (string.Equals(proto, "UDP", StringComparison.OrdinalIgnoreCase)) protocol = ServiceProtocol.Udp;
                else if (!string.Equals(proto, "TCP", StringComparison.OrdinalIgnoreCase))
                {
                    problems.Add(item.Path + ".protocol", item.Node, $"'{proto}' is not a protocol; use TCP or UDP");
                    ok = false;
                }
            }
            var target = item.Int("targetPort", 1, 65535);
            if (port is null || (item.Has("targetPort") && target is null)) { ok = false; continue; }
            if (list.Any(x => x.Name == name))
            {
                problems.Add(item.Path + ".name", item.Node, $"port name '{name}' is used twice; names must differ");
                ok = false;
            }
            if (list.Any(x => x.Port == port && x.Protocol == protocol))
            {
                problems.Add(item.Path + ".port", item.Node, $"{protocol.ToString().ToUpperInvariant()} port {port} is listed twice; keep one");
                ok = false;
            }
            list.Add(new ServicePort(name, port.Value, protocol, target ?? port.Value));
        }
        return ok ? list : null;
    }

    private static List<ServiceEndpoint>? ReadEndpoints(YamlSection s, List<ServicePort> ports, ConfigProblems problems)
    {
        var items = s.Sections("endpoints");
        if (items.Count > ServiceCatalog.MaxEndpointsPerService)
        {
            problems.Add(s.Path + ".endpoints", s.Node, $"{items.Count} endpoints; at most {ServiceCatalog.MaxEndpointsPerService}");
            return null;
        }
        var list = new List<ServiceEndpoint>();
        var ok = true;
        foreach (var item in items)
        {
            var node = item.String("nodeName");
            if (node is not null && (node.Length is 0 or > 253 || node.Any(c => char.IsWhiteSpace(c) || char.IsControl(c))))
            {
                problems.Add(item.Path + ".nodeName", item.Node, $"'{node}' is not a node name (1..253 characters, no spaces); remove it for an endpoint every node dials directly");
                ok = false;
            }
            var ipText = item.String("ip");
            IPAddress? ip = null;
            if (ipText is null)
                problems.Add(item.Path + ".ip", item.Node, "every endpoint needs an ip");
            else if (!IPAddress.TryParse(ipText, out ip) || (ip.AddressFamily == AddressFamily.InterNetwork && ipText.Split('.').Length != 4))
            {
                problems.Add(item.Path + ".ip", item.Node, $"'{ipText}' is not an IP address (host names are not resolved)");
                ip = null;
            }
            var overrides = new Dictionary<string, int>(StringComparer.Ordinal);
            if (item.Int("port", 1, 65535) is { } single)
            {
                if (ports.Count != 1)
                {
                    problems.Add(item.Path + ".port", item.Node, "'port' is only for a service with one port; list ports: [{name: NAME, port: N}] instead");
                    ok = false;
                }
                else overrides[ports[0].Name] = single;
            }
            foreach (var ep in item.Sections("ports"))
            {
                var pname = ep.String("name") ?? "";
                var n = ep.Int("port", 1, 65535);
                if (ports.All(x => x.Name != pname))
                {
                    problems.Add(ep.Path + ".name", ep.Node, $"the service has no port named '{pname}' (it has: {string.Join(", ", ports.Select(x => x.Name.Length == 0 ? "''" : x.Name))})");
                    ok = false;
                }
                else if (n is null)
                {
                    if (!ep.Has("port")) problems.Add(ep.Path + ".port", ep.Node, "needs a port number (1..65535)");
                    ok = false;
                }
                else overrides[pname] = n.Value;
            }
            if (ip is null) { ok = false; continue; }
            var endpoint = new ServiceEndpoint(node, ip, overrides);
            if (list.Any(e => e.NodeName == node && e.Ip.Equals(ip) && ports.All(p => e.PortFor(p) == endpoint.PortFor(p))))
            {
                problems.Add(item.Path, item.Node, $"endpoint {node ?? "(any node)"} {ip} with the same ports is listed twice; keep one");
                ok = false;
                continue;
            }
            list.Add(endpoint);
        }
        return ok ? list : null;
    }
}
