using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging.Abstractions;
using Weft.Mesh.Agent;
using Weft.Mesh.Config;
using Weft.Mesh.Identity;
using Weft.Mesh.Relays;
using Weft.Wire.Multiformats;

namespace Weft.Mesh.Tests.Agent;

/// <summary>Agents in this process on 127.0.0.1, each on its own port, with legacy (name-derived) identities.</summary>
public sealed class LoopbackMesh : IAsyncDisposable
{
    public static readonly TimeSpan Deadline = TimeSpan.FromSeconds(20);

    private readonly Dictionary<string, MeshAgent> _agents = new(StringComparer.Ordinal);
    private readonly Dictionary<string, int> _ports = new(StringComparer.Ordinal);

    public IReadOnlyList<RelayNode> Relays { get; private set; } = [];

    public MeshAgent this[string name] => _agents[name];

    public static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }

    /// <summary>Declares the relays (ports chosen now) every agent started afterwards is configured with.</summary>
    public void DeclareRelays(params string[] names)
    {
        foreach (var n in names) _ports[n] = FreePort();
        Relays = names.Select(n => new RelayNode(n, [Multiaddr.Parse($"/ip4/127.0.0.1/tcp/{_ports[n]}")], LegacyIdentity.DerivePeerId(n))).ToList();
    }

    public AgentConfig Config(string name, Func<TunnelConfig, TunnelConfig>? tweak = null)
    {
        if (!_ports.TryGetValue(name, out var port)) _ports[name] = port = FreePort();
        var tunnel = new TunnelConfig
        {
            ListenPort = port,
            ListenInterfaces = "lo",
            RelayNodes = Relays,
            Identity = new IdentityConfig { Mode = IdentityMode.Legacy },
            Psk = new PskConfig { Enable = false },
            HolePunching = false,
            Mdns = false, // multicast would leave on the machine's real interfaces: tests keep to 127.0.0.0/8
            DeniedTargets = [],
            // Several agents share this process's thread pool with the test's own traffic: a generous deadAfter keeps a busy
            // moment from looking like a dead relay (a stopped relay is seen at once: its connections close).
            RelayManager = new RelayManagerConfig { ProbeInterval = TimeSpan.FromMilliseconds(250), DeadAfter = TimeSpan.FromSeconds(3) },
        };
        return new AgentConfig { NodeName = name, Tunnel = tweak?.Invoke(tunnel) ?? tunnel, Admin = new AdminConfig { Enable = false } };
    }

    public async Task<MeshAgent> StartAsync(string name, Func<TunnelConfig, TunnelConfig>? tweak = null)
    {
        var agent = await MeshAgent.StartAsync(Config(name, tweak), FileLog.Create());
        _agents[name] = agent;
        return agent;
    }

    /// <summary>Stops an agent abruptly (its process dying, as far as peers can tell: its sockets close).</summary>
    public async Task StopAsync(string name)
    {
        if (_agents.Remove(name, out var a)) await a.DisposeAsync();
    }

    /// <summary>Waits until <paramref name="condition"/> holds, re-checking whenever the agent's relays change (and at least every 50 ms).</summary>
    public static async Task WaitRelays(MeshAgent agent, Func<IReadOnlyList<RelayLinkState>, bool> condition, string what, TimeSpan? deadline = null)
    {
        using var changed = new SemaphoreSlim(0);
        void OnChange() => changed.Release();
        agent.Relays.Changed += OnChange;
        try
        {
            var until = DateTime.UtcNow + (deadline ?? Deadline);
            while (!condition(agent.Relays.Links))
            {
                var left = until - DateTime.UtcNow;
                if (left <= TimeSpan.Zero)
                    throw new TimeoutException($"{agent.NodeName}: {what} did not happen; relays: {string.Join("; ", agent.Relays.Links)}");
                await changed.WaitAsync(left < TimeSpan.FromMilliseconds(50) ? left : TimeSpan.FromMilliseconds(50));
            }
        }
        finally
        {
            agent.Relays.Changed -= OnChange;
        }
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var a in _agents.Values) await a.DisposeAsync();
        _agents.Clear();
    }
}
