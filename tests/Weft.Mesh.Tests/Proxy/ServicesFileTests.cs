using System.Net;
using Weft.Mesh.Config;
using Weft.Mesh.Proxy;

namespace Weft.Mesh.Tests.Proxy;

public sealed class ServicesFileTests : IDisposable
{
    private static readonly IPNetwork Cidr = EdgeProxyConfig.DefaultServiceCidr;
    private readonly string _dir = Directory.CreateTempSubdirectory("weft-services-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static Func<string, string?> Env(string? nodeName) => k => k == "NODE_NAME" ? nodeName : null;

    [Fact]
    public void A_full_service_is_read_with_defaults_filled_in()
    {
        var catalog = ServicesFile.Parse("""
            services:
            - name: demo
              namespace: lab
              clusterIP: 127.10.0.80
              Ports:
              - {name: http, port: 80, targetPort: 8080}
              - {name: echo, port: 7, protocol: tcp, targetPort: 7007}
              - {name: echo-udp, port: 7, protocol: UDP, targetPort: 7007}
              policy: CONSISTENT_HASH
              sessionAffinity: clientip
              sessionAffinityConfig: {clientIP: {timeoutSeconds: 60}}
              endpoints:
              - {nodeName: lan2-a, ip: 192.168.2.21}
              - {nodeName: lan2-b, ip: 192.168.2.22, ports: [{name: http, port: 8081}]}
            - name: dns
              ports: [{port: 53, protocol: UDP}]
              endpoints: [{ip: 10.0.0.5, port: 5353}]
            """, Cidr);
        Assert.Equal(2, catalog.Services.Count);
        var demo = catalog.Services.Single(s => s.Name == new ServiceName("lab", "demo"));
        Assert.Equal(IPAddress.Parse("127.10.0.80"), demo.ClusterIP);
        Assert.Equal(LoadBalancingPolicy.ConsistentHash, demo.Policy);
        Assert.Equal(SessionAffinity.ClientIP, demo.Affinity);
        Assert.Equal(TimeSpan.FromSeconds(60), demo.AffinityTimeout);
        Assert.Equal([new ServicePort("http", 80, ServiceProtocol.Tcp, 8080), new ServicePort("echo", 7, ServiceProtocol.Tcp, 7007), new ServicePort("echo-udp", 7, ServiceProtocol.Udp, 7007)], demo.Ports);
        Assert.Equal(8080, demo.Endpoints[0].PortFor(demo.Ports[0]));
        Assert.Equal(8081, demo.Endpoints[1].PortFor(demo.Ports[0]));
        Assert.Equal(7007, demo.Endpoints[1].PortFor(demo.Ports[2]));
        var dns = catalog.Services.Single(s => s.Name.Name == "dns");
        Assert.Equal("default", dns.Name.Namespace);
        Assert.Null(dns.ClusterIP);
        Assert.Equal(LoadBalancingPolicy.RoundRobin, dns.Policy);
        Assert.Equal(SessionAffinity.None, dns.Affinity);
        Assert.Equal(ServiceSpec.DefaultAffinityTimeout, dns.AffinityTimeout);
        Assert.Null(dns.Endpoints[0].NodeName);
        Assert.Equal(5353, dns.Endpoints[0].PortFor(dns.Ports[0]));
    }

    [Theory]
    [InlineData("", 0)]
    [InlineData("services: []", 0)]
    [InlineData("services:", 0)]
    [InlineData("services: [{name: a, ports: [{port: 1}]}]", 1)]
    public void Empty_files_and_services_without_endpoints_are_valid(string yaml, int count) =>
        Assert.Equal(count, ServicesFile.Parse(yaml, Cidr).Services.Count);

    [Theory]
    [InlineData("services: [{ports: [{port: 80}]}]", "services[0].name (line 1): every service needs a name")]
    [InlineData("services: [{name: Demo, ports: [{port: 80}]}]", "'Demo' is not a DNS label")]
    [InlineData("services: [{name: 1demo, ports: [{port: 80}]}]", "'1demo' is not a DNS label")]
    [InlineData("services: [{name: a, namespace: 'x y', ports: [{port: 80}]}]", "services[0].namespace (line 1): 'x y' is not a DNS label")]
    [InlineData("services: [{name: a}]", "a service needs at least one port")]
    [InlineData("services: [{name: a, ports: [{port: 0}]}]", "services[0].ports[0].port (line 1): 0 is out of range; use 1..65535")]
    [InlineData("services: [{name: a, ports: [{name: x}]}]", "every port needs a port number")]
    [InlineData("services: [{name: a, ports: [{port: 80, protocol: SCTP}]}]", "'SCTP' is not a protocol; use TCP or UDP")]
    [InlineData("services: [{name: a, ports: [{port: 80, targetPort: 70000}]}]", "70000 is out of range")]
    [InlineData("services: [{name: a, ports: [{name: x, port: 80}, {port: 81}]}]", "must name each one")]
    [InlineData("services: [{name: a, ports: [{name: x, port: 80}, {name: x, port: 81}]}]", "port name 'x' is used twice")]
    [InlineData("services: [{name: a, ports: [{name: x, port: 80}, {name: y, port: 80}]}]", "TCP port 80 is listed twice")]
    [InlineData("services: [{name: a, ports: [{port: 80}], policy: leastConn}]", "'leastConn' is not a policy; use roundRobin, random or consistentHash")]
    [InlineData("services: [{name: a, ports: [{port: 80}], sessionAffinity: Cookie}]", "'Cookie' is not a session affinity")]
    [InlineData("services: [{name: a, ports: [{port: 80}], sessionAffinityConfig: {clientIP: {timeoutSeconds: 0}}}]", "0 is out of range; use 1..86400")]
    [InlineData("services: [{name: a, clusterIP: 10.96.0.10, ports: [{port: 80}]}]", "10.96.0.10 is outside modules.edgeProxy.serviceCIDR (127.10.0.0/16)")]
    [InlineData("services: [{name: a, clusterIP: None, ports: [{port: 80}]}]", "'None' is not an IPv4 address")]
    [InlineData("services: [{name: a, ports: [{port: 80}], endpoints: [{nodeName: n}]}]", "services[0].endpoints[0].ip (line 1): every endpoint needs an ip")]
    [InlineData("services: [{name: a, ports: [{port: 80}], endpoints: [{ip: lan2-a.local}]}]", "'lan2-a.local' is not an IP address (host names are not resolved)")]
    [InlineData("services: [{name: a, ports: [{port: 80}], endpoints: [{ip: 10.1}]}]", "'10.1' is not an IP address")]
    [InlineData("services: [{name: a, ports: [{port: 80}], endpoints: [{ip: 10.0.0.1, nodeName: 'a b'}]}]", "'a b' is not a node name")]
    [InlineData("services: [{name: a, ports: [{name: x, port: 80}, {name: y, port: 81}], endpoints: [{ip: 10.0.0.1, port: 8080}]}]", "'port' is only for a service with one port")]
    [InlineData("services: [{name: a, ports: [{name: x, port: 80}], endpoints: [{ip: 10.0.0.1, ports: [{name: z, port: 1}]}]}]", "the service has no port named 'z' (it has: x)")]
    [InlineData("services: [{name: a, ports: [{port: 80}], endpoints: [{ip: 10.0.0.1}, {ip: 10.0.0.1}]}]", "endpoint (any node) 10.0.0.1 with the same ports is listed twice")]
    [InlineData("services: [{name: a, ports: [{port: 80}]}, {name: a, ports: [{port: 81}]}]", "service default/a is listed twice")]
    [InlineData("services: [{name: a, clusterIP: 127.10.0.9, ports: [{port: 80}]}, {name: b, clusterIP: 127.10.0.9, ports: [{port: 81}]}]", "127.10.0.9 is already the clusterIP of default/a")]
    [InlineData("services: [{name: a, prots: [{port: 80}]}]", "services[0].prots (line 1): unknown key; did you mean 'ports'?")]
    [InlineData("service: []", "service (line 1): unknown key; did you mean 'services'?")]
    [InlineData("services: {name: a}", "services (line 1): must be a list")]
    [InlineData("- a\n- b", "must be a YAML mapping")]
    [InlineData("services: [", "not valid YAML")]
    public void Every_bad_entry_is_reported_with_where_and_how_to_fix(string yaml, string expected)
    {
        var ex = Assert.Throws<ConfigException>(() => ServicesFile.Parse(yaml, Cidr));
        Assert.Contains(expected, string.Join("\n", ex.Problems));
    }

    [Fact]
    public void All_problems_of_a_file_come_at_once_and_name_the_file()
    {
        var path = Path.Combine(_dir, "services.yaml");
        File.WriteAllText(path, """
            services:
            - name: ok
              ports: [{port: 80}]
            - name: Bad
              ports: [{port: 0}]
              endpoints: [{ip: nowhere}]
            """);
        var ex = Assert.Throws<ConfigException>(() => ServicesFile.Load(path, Cidr));
        Assert.Equal(3, ex.Problems.Count);
        Assert.All(ex.Problems, p => Assert.StartsWith(path + ": services[1]", p, StringComparison.Ordinal));
        Assert.Contains(ex.Problems, p => p.Contains("(line 5)", StringComparison.Ordinal));
        Assert.Throws<ConfigException>(() => ServicesFile.Load(Path.Combine(_dir, "missing.yaml"), Cidr));
    }

    [Fact]
    public void The_edgeProxy_section_takes_EdgeMesh_keys_and_Weft_limits()
    {
        var services = Path.Combine(_dir, "services.yaml");
        File.WriteAllText(services, "services: []");
        var config = Path.Combine(_dir, "agent.yaml");
        File.WriteAllText(config, """
            modules:
              edgeTunnel: {nodeName: n1}
              edgeProxy:
                enable: true
                serviceFilterMode: FilterIfLabelExists
                socks5Proxy: {enable: false, listenPort: 10800}
                loadBalancer: {consistentHash: {partitionCount: 100, replicationFactor: 10, load: 1.25}}
                servicesFile: services.yaml
                serviceCIDR: 127.20.0.0/24
                limits: {maxConnections: 100, maxConnectionsPerService: 10, maxUdpFlows: 5, udpIdleTimeout: 2s, udpFlowQueue: 8,
                         connectTimeout: 750ms, maxAttempts: 2, retryDelay: 100ms, endpointCooldown: 1s, maxEndpointCooldown: 4s, maxAffinityClients: 3}
            """);
        var c = AgentConfigLoader.Load(config, Env(null));
        Assert.True(c.Proxy.Enable);
        Assert.Equal(services, c.Proxy.ServicesFile); // relative to the config's folder
        Assert.Equal(IPNetwork.Parse("127.20.0.0/24"), c.Proxy.ServiceCidr);
        Assert.Equal(new ProxyLimits
        {
            MaxConnections = 100, MaxConnectionsPerService = 10, MaxUdpFlows = 5, UdpIdleTimeout = TimeSpan.FromSeconds(2), UdpFlowQueue = 8,
            ConnectTimeout = TimeSpan.FromMilliseconds(750), MaxAttempts = 2, RetryDelay = TimeSpan.FromMilliseconds(100), EndpointCooldown = TimeSpan.FromSeconds(1),
            MaxEndpointCooldown = TimeSpan.FromSeconds(4), MaxAffinityClients = 3,
        }, c.Proxy.Limits);
        Assert.Contains(c.Warnings, w => w.Contains("consistentHash is accepted but not used", StringComparison.Ordinal));
        Assert.Equal(c.Proxy, AgentConfigLoader.Load(config, Env(null)).Proxy); // value equality: a reload with no change is no change

        var off = AgentConfigLoader.Parse("modules: {edgeTunnel: {nodeName: n1}}", null, Env(null));
        Assert.False(off.Proxy.Enable);
        Assert.Equal(EdgeProxyConfig.DefaultServiceCidr, off.Proxy.ServiceCidr);
        var bare = AgentConfigLoader.Parse("modules: {edgeTunnel: {nodeName: n1}, edgeProxy: {enable: true}}", null, Env(null));
        Assert.Contains(bare.Warnings, w => w.Contains("without a servicesFile", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("servicesFile: /nonexistent/services.yaml", "modules.edgeProxy.servicesFile (line 4): /nonexistent/services.yaml does not exist; create it")]
    [InlineData("servicesFile: ''", "is empty; name the YAML file")]
    [InlineData("serviceCIDR: 127.10.0.0", "'127.10.0.0' is not an IPv4 CIDR range")]
    [InlineData("serviceCIDR: fd00::/64", "is not an IPv4 CIDR range")]
    [InlineData("serviceCIDR: 10.0.0.0/4", "wider than a /8")]
    [InlineData("serviceCIDR: 127.10.0.1/16", "has host bits set; write 127.10.0.0/16")]
    [InlineData("limits: {maxConnections: 0}", "modules.edgeProxy.limits.maxConnections (line 5): 0 is out of range")]
    [InlineData("limits: {maxConnections: 10, maxConnectionsPerService: 20}", "20 is more than maxConnections (10)")]
    [InlineData("limits: {udpIdleTimeout: forever}", "'forever' is not a duration")]
    [InlineData("limits: {endpointCooldown: 10s, maxEndpointCooldown: 1s}", "is shorter than endpointCooldown")]
    [InlineData("limits: {maxAttempt: 2}", "modules.edgeProxy.limits.maxAttempt (line 5): unknown key; did you mean 'maxAttempts'?")]
    [InlineData("servicefile: x", "did you mean 'servicesFile'?")]
    public void Bad_edgeProxy_settings_fail_with_a_fix(string inner, string expected)
    {
        var yaml = "modules:\n  edgeTunnel: {nodeName: n1}\n  edgeProxy:\n    enable: true\n    " + inner;
        var ex = Assert.Throws<ConfigException>(() => AgentConfigLoader.Parse(yaml, null, Env(null)));
        Assert.Contains(expected, string.Join("\n", ex.Problems));
    }
}
