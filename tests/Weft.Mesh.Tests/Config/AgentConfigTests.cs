using Weft.Mesh.Config;
using Weft.Mesh.Identity;
using Weft.Wire.Multiformats;

namespace Weft.Mesh.Tests.Config;

public sealed class AgentConfigTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("weft-config-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "rename", SetLastError = true)]
    private static extern int Rename(string from, string to);

    private static Func<string, string?> Env(string? nodeName = null) => k => k == "NODE_NAME" ? nodeName : null;

    /// <summary>The edgemesh-agent.yaml of EdgeMesh's manifests (build/agent/resources), with two relays.</summary>
    private const string EdgeMeshManifest = """
        apiVersion: agent.edgemesh.config.kubeedge.io/v1alpha1
        kind: EdgeMeshAgent
        kubeAPIConfig:
          kubeConfig: ""
          master: ""
        commonConfig:
          bridgeDeviceName: edgemesh0
          bridgeDeviceIP: 169.254.96.16
        modules:
          edgeDNS:
            enable: false
            listenPort: 53
          edgeProxy:
            enable: false
          edgeTunnel:
            enable: true
            listenPort: 20006
            transport: tcp
            rendezvous: EDGEMESH_PLAYGOUND
            maxCandidates: 5
            heartbeatPeriod: 120
            finderPeriod: 60
            psk:
              enable: false
              path: /etc/edgemesh/psk
            tunnelLimitConfig:
              enable: true
              tunnelBaseStreamIn: 10240
              tunnelBaseStreamOut: 10240
              tunnelPeerBaseStreamIn: 1024
              tunnelPeerBaseStreamOut: 1024
            relayNodes:
            - nodeName: k8s-master
              advertiseAddress:
              - 1.1.1.1
            - nodeName: ke-edge1
              advertiseAddress:
              - 2.2.2.2
              - 2.2.2.3
            metricConfig:
              enable: false
              port: 9999
        """;

    [Fact]
    public void EdgeMeshs_own_config_is_read_as_it_is()
    {
        var c = AgentConfigLoader.Parse(EdgeMeshManifest, null, Env("ke-edge2"));
        Assert.Equal("ke-edge2", c.NodeName);
        Assert.Equal(20006, c.Tunnel.ListenPort);
        Assert.Equal("EDGEMESH_PLAYGOUND", c.Tunnel.Rendezvous);
        Assert.Equal(2, c.Tunnel.RelayNodes.Count);
        Assert.Equal([Multiaddr.Parse("/ip4/2.2.2.2/tcp/20006"), Multiaddr.Parse("/ip4/2.2.2.3/tcp/20006")], c.Tunnel.RelayNodes[1].Addresses);
        Assert.Null(c.Tunnel.RelayNodes[0].PeerId); // persisted identities: learned at the first connection
        Assert.Equal(TimeSpan.FromSeconds(120), c.Tunnel.HeartbeatPeriod);
        Assert.Equal(5, c.Tunnel.MaxCandidates);
        Assert.False(c.Tunnel.Psk.Enable);
        Assert.False(c.IsRelay);
        Assert.Contains(c.Warnings, w => w.Contains("kubeAPIConfig", StringComparison.Ordinal));
    }

    [Fact]
    public void Keys_match_without_regard_to_case_as_in_EdgeMesh()
    {
        var c = AgentConfigLoader.Parse("""
            MODULES:
              EdgeTunnel:
                NodeName: ke-edge1
                LISTENPORT: 30006
                relaynodes:
                - NODENAME: ke-edge1
                  AdvertiseAddress: [10.0.0.1]
                psk: {enable: false}
            """, null, Env());
        Assert.Equal("ke-edge1", c.NodeName);
        Assert.Equal(30006, c.Tunnel.ListenPort);
        Assert.True(c.IsRelay);
        Assert.Equal(Multiaddr.Parse("/ip4/10.0.0.1/tcp/30006"), Assert.Single(c.Tunnel.RelayNodes[0].Addresses));
    }

    [Fact]
    public void Node_name_alone_is_enough_and_NODE_NAME_wins_over_the_file()
    {
        Assert.Equal("from-env", AgentConfigLoader.Parse("", null, Env("from-env")).NodeName);
        Assert.Equal("from-env", AgentConfigLoader.Parse("modules: {edgeTunnel: {nodeName: from-file}}", null, Env("from-env")).NodeName);
        var c = AgentConfigLoader.Parse("modules: {edgeTunnel: {nodeName: from-file}}", null, Env());
        Assert.Equal("from-file", c.NodeName);
        Assert.Equal(IdentityMode.Persisted, c.Tunnel.Identity.Mode);
        Assert.Equal(20006, c.Tunnel.ListenPort);
        Assert.Equal(System.Net.IPAddress.Loopback, c.Admin.Listen.Address);
    }

    [Fact]
    public void Every_problem_is_listed_at_once_with_its_line_and_a_fix()
    {
        var ex = Assert.Throws<ConfigException>(() => AgentConfigLoader.Parse("""
            modules:
              edgeTunnel:
                listenPort: 99999
                transport: quic
                mode: Sometimes
                heartbeatPeriod: soon
                relayNode:
                - nodeName: r1
                relayNodes:
                - advertiseAddress: [not-an-ip]
                - nodeName: r2
                  advertiseAddress: [10.0.0.2:0]
                identity: {mode: random}
                relayManager: {probeInterval: 500ms, deadAfter: 200ms}
              admin:
                listen: 0.0.0.0:20016
              edgeCNI: {enable: true}
            """, null, Env()));
        var all = string.Join("\n", ex.Problems);
        Assert.Contains("modules.edgeTunnel.listenPort (line 3): 99999 is out of range; use 1..65535", all);
        Assert.Contains("transport", all);
        Assert.Contains("'Sometimes' is not a mode", all);
        Assert.Contains("'soon' is not a duration", all);
        Assert.Contains("modules.edgeTunnel.relayNode (line 7): unknown key; did you mean 'relayNodes'?", all);
        Assert.Contains("every relay needs a nodeName", all);
        Assert.Contains("'not-an-ip' is not an IP address", all);
        Assert.Contains("'10.0.0.2:0'", all);
        Assert.Contains("relay 'r2' has no address", all);
        Assert.Contains("'random' is not an identity mode", all);
        Assert.Contains("must be longer than probeInterval", all);
        Assert.Contains("no authentication", all);
        Assert.Contains("Weft has no CNI mode", all);
        Assert.Contains("no node name", all);
        Assert.True(ex.Problems.Count >= 14, all);
    }

    [Fact]
    public void Advertise_addresses_may_be_ips_ip_ports_or_multiaddrs()
    {
        Assert.True(AgentConfigLoader.TryParseAdvertise("10.0.0.1", 20006, out var a, out _));
        Assert.Equal("/ip4/10.0.0.1/tcp/20006", a.ToString());
        Assert.True(AgentConfigLoader.TryParseAdvertise("10.0.0.1:7000", 20006, out a, out _));
        Assert.Equal("/ip4/10.0.0.1/tcp/7000", a.ToString());
        Assert.True(AgentConfigLoader.TryParseAdvertise("fd00::1", 20006, out a, out _));
        Assert.Equal("/ip6/fd00::1/tcp/20006", a.ToString());
        Assert.True(AgentConfigLoader.TryParseAdvertise("[fd00::1]:7000", 20006, out a, out _));
        Assert.Equal("/ip6/fd00::1/tcp/7000", a.ToString());
        Assert.True(AgentConfigLoader.TryParseAdvertise("/ip4/1.2.3.4/tcp/5/p2p/12D3KooWB5qVCMrMNLpBDfMu6o4dy6ci2UqDVsFVomcd2PfYVzfW", 20006, out a, out _));
        Assert.Equal("/ip4/1.2.3.4/tcp/5", a.ToString());
        foreach (var bad in (string[])["7", "10.1", "relay.example.com", "/ip4/1.2.3.4/udp/5", "1.2.3.4:99999"])
            Assert.False(AgentConfigLoader.TryParseAdvertise(bad, 20006, out _, out _), bad);
    }

    [Fact]
    public void Legacy_identity_derives_relay_peer_ids_and_checks_configured_ones()
    {
        var c = AgentConfigLoader.Parse("""
            modules:
              edgeTunnel:
                nodeName: n1
                identity: {mode: legacy}
                relayNodes:
                - {nodeName: k8s-master, advertiseAddress: [1.1.1.1]}
            """, null, Env());
        Assert.Equal("12D3KooWB5qVCMrMNLpBDfMu6o4dy6ci2UqDVsFVomcd2PfYVzfW", c.Tunnel.RelayNodes[0].PeerId!.ToString());
        var ex = Assert.Throws<ConfigException>(() => AgentConfigLoader.Parse("""
            modules:
              edgeTunnel:
                nodeName: n1
                identity: {mode: legacy}
                relayNodes:
                - {nodeName: k8s-master, advertiseAddress: [1.1.1.1], peerID: 12D3KooWErZ4m27CEinjcnXNvem2KFUJUFRBcd9NdcWnYRqyr1Sn}
            """, null, Env()));
        Assert.Contains("differs from", Assert.Single(ex.Problems));
    }

    [Fact]
    public void Psk_defaults_to_edgemesh_path_but_starts_without_when_the_file_is_absent_unless_asked_for()
    {
        var c = AgentConfigLoader.Parse("modules: {edgeTunnel: {nodeName: n, psk: null}}", null, Env());
        Assert.False(c.Tunnel.Psk.Enable);
        Assert.Contains(c.Warnings, w => w.Contains("not in a private network", StringComparison.Ordinal));
        var missing = Path.Combine(_dir, "nope");
        var ex = Assert.Throws<ConfigException>(() => AgentConfigLoader.Parse($"modules: {{edgeTunnel: {{nodeName: n, psk: {{enable: true, path: {missing}}}}}}}", null, Env()));
        Assert.Contains("does not exist", Assert.Single(ex.Problems));
        var psk = Path.Combine(_dir, "psk");
        File.WriteAllText(psk, "JugH9HP1XBouyO5pWGeZa8LtipDURrf17EJvUHcJGuQ=");
        Assert.True(AgentConfigLoader.Parse($"modules: {{edgeTunnel: {{nodeName: n, psk: {{path: {psk}}}}}}}", null, Env()).Tunnel.Psk.Enable);
    }

    [Fact]
    public void Malformed_yaml_is_a_config_error_with_its_line()
    {
        var ex = Assert.Throws<ConfigException>(() => AgentConfigLoader.Parse("modules:\n  edgeTunnel: [\n", null, Env("n")));
        Assert.Contains("line", Assert.Single(ex.Problems));
        ex = Assert.Throws<ConfigException>(() => AgentConfigLoader.Parse("- just\n- a list\n", null, Env("n")));
        Assert.Contains("mapping", Assert.Single(ex.Problems));
        var missing = Assert.Throws<ConfigException>(() => AgentConfigLoader.Load(Path.Combine(_dir, "absent.yaml"), Env("n")));
        Assert.Contains("does not exist", Assert.Single(missing.Problems));
    }

    [Fact]
    public void Watcher_applies_a_configmap_style_symlink_swap_and_rejects_a_bad_edit()
    {
        // Kubernetes mounts a ConfigMap as DIR/config.yaml -> ..data/config.yaml, ..data -> ..2026_12_01_A; an update
        // writes a new timestamped directory and renames a new ..data symlink over the old one.
        var v1 = Directory.CreateDirectory(Path.Combine(_dir, "..v1")).FullName;
        File.WriteAllText(Path.Combine(v1, "agent.yaml"), "modules: {edgeTunnel: {nodeName: n, psk: {enable: false}}}");
        File.CreateSymbolicLink(Path.Combine(_dir, "..data"), "..v1");
        File.CreateSymbolicLink(Path.Combine(_dir, "agent.yaml"), "..data/agent.yaml");
        var applied = new System.Collections.Concurrent.BlockingCollection<AgentConfig>();
        var rejected = new System.Collections.Concurrent.BlockingCollection<string>();
        var watcher = new ConfigWatcher(Path.Combine(_dir, "agent.yaml"), c => { applied.Add(c); return Task.CompletedTask; }, rejected.Add,
            Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance, Env());
        try
        {
            var v2 = Directory.CreateDirectory(Path.Combine(_dir, "..v2")).FullName;
            File.WriteAllText(Path.Combine(v2, "agent.yaml"), """
                modules: {edgeTunnel: {nodeName: n, psk: {enable: false}, relayNodes: [{nodeName: r9, advertiseAddress: [10.9.9.9]}]}}
                """);
            File.CreateSymbolicLink(Path.Combine(_dir, "..data_tmp"), "..v2");
            Assert.Equal(0, Rename(Path.Combine(_dir, "..data_tmp"), Path.Combine(_dir, "..data"))); // atomic, as kubelet does
            Assert.True(applied.TryTake(out var next, TimeSpan.FromSeconds(10)), "the swap was not picked up");
            Assert.Equal("r9", Assert.Single(next!.Tunnel.RelayNodes).NodeName);

            File.WriteAllText(Path.Combine(v2, "agent.yaml"), "modules: {edgeTunnel: {nodeName: n, listenPort: nope}}");
            Assert.True(rejected.TryTake(out var why, TimeSpan.FromSeconds(10)), "the bad edit was not reported");
            Assert.Contains("not a whole number", why);
            Assert.Empty(applied);
        }
        finally
        {
            watcher.DisposeAsync().AsTask().Wait(TimeSpan.FromSeconds(5));
        }
    }
}
