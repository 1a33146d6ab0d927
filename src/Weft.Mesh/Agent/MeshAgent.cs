using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Globalization;
using Microsoft.Extensions.Logging;
using Weft.Mesh.Config;
using Weft.Mesh.Identity;
using Weft.Mesh.Paths;
using Weft.Mesh.Relays;
using Weft.Mesh.Tunnel;
using Weft.P2P.AutoNat;
using Weft.P2P.Dcutr;
using Weft.P2P.Host;
using Weft.P2P.Ping;
using Weft.P2P.Relay;
using Weft.Wire.AutoNat;
using Weft.Wire.Identity;
using Weft.Wire.Multiformats;
using Weft.Wire.Pnet;

namespace Weft.Mesh.Agent;

/// <summary>
/// The edge agent: one libp2p host with the relay role when named in relayNodes, the relay manager, the node
/// directory, the path choice for new streams, and the EdgeMesh tunnel. <see cref="ApplyConfigAsync"/> applies
/// relay changes without a restart.
/// </summary>
public sealed class MeshAgent : IAsyncDisposable
{
    /// <summary>The <see cref="Libp2pHost.SetAddresses"/> source of a relay node's advertise addresses.</summary>
    public const string AdvertiseSource = "advertise";

    /// <summary>How often a relay node checks that its advertise addresses reach it from outside.</summary>
    public static readonly TimeSpan RelayCheckInterval = TimeSpan.FromMinutes(5);

    /// <summary>How often the RTT of open paths to peers is measured (for status).</summary>
    public static readonly TimeSpan PathProbeInterval = TimeSpan.FromSeconds(2);

    /// <summary>Peers whose path RTT is measured per round.</summary>
    public const int MaxProbedPeers = 256;

    private readonly ILoggerFactory _loggers;
    private readonly ILogger _log;
    private readonly CancellationTokenSource _stop = new();
    private readonly ConcurrentDictionary<PeerId, double> _pathRtt = new();
    private readonly ConcurrentDictionary<string, string> _relayReachability = new(StringComparer.Ordinal);
    private readonly object _gate = new();
    private readonly List<Task> _loops = [];
    private readonly SemaphoreSlim _relayCheckNow = new(0, 1);
    private readonly DcutrService? _dcutr;
    private readonly AutoNatServer _autonatServer;
    private readonly AutoNatClient _autonat;
    private RelayServer? _relayServer;
    private AgentConfig _config;
    private int _reloads;
    private string? _lastConfigError;
    private int _disposed;

    private MeshAgent(AgentConfig config, Libp2pHost host, ILoggerFactory loggers)
    {
        _config = config;
        Host = host;
        _loggers = loggers;
        _log = loggers.CreateLogger("Weft.Mesh.Agent");
        // The agent's own meters carry its host as their scope; meters without one (the libp2p layers') are shared by
        // every agent in the process, which is one in production.
        Metrics = new MeshMetrics(scope: host);
        Exporter = new Wire.Metrics.PrometheusExporter(m => m.Scope is null || ReferenceEquals(m.Scope, host), "Weft");
        Relays = new RelayManager(host, config.Tunnel.RelayManager, Metrics, loggers.CreateLogger("Weft.Mesh.Relays"));
        Directory = new NodeNames(config.Tunnel.Identity.Mode, host.Time, new Discovery.NodeDirectory());
        Dialer = new MeshDialer(host, Relays, new MeshDialerOptions(), loggers.CreateLogger("Weft.Mesh.Paths"));
        Tunnel = TunnelService.Register(host, config.NodeName, Dialer, TunnelOptionsOf(config.Tunnel), Metrics, loggers.CreateLogger("Weft.Mesh.Tunnel"), serve: !config.Tunnel.IsClientOnly);
        Resume = config.Tunnel.Resume.Enable
            ? Weft.Mesh.Resume.ResumeService.Register(host, Tunnel, Dialer, config.Tunnel.Resume, loggers.CreateLogger("Weft.Mesh.Resume"), serve: !config.Tunnel.IsClientOnly)
            : null;
        PingService.Register(host);
        RelayClient.Register(host);
        _dcutr = config.Tunnel.HolePunching ? DcutrService.Register(host) : null;
        if (_dcutr is not null) _dcutr.Completed += OnPunch;
        _autonatServer = AutoNatServer.Register(host);
        _autonat = new AutoNatClient(host);
        StartedAt = host.Time.GetUtcNow();
        Relays.Changed += () =>
        {
            foreach (var l in Relays.Links)
                if (l.Peer is { } p) Directory.Learn(l.NodeName, p, "config");
        };
        Relays.RelayDown += OnRelayDown;

        // Discovery: mDNS in the LAN, the DHT rendezvous across LANs, and a name for every peer either finds.
        Exchange = new Discovery.NodeNameExchange(host, new Discovery.NodeNameExchangeOptions
        {
            NodeName = config.NodeName,
            Check = config.Tunnel.Identity.Mode == IdentityMode.Legacy ? Discovery.NodeNameCheck.LegacyIdentity : Discovery.NodeNameCheck.None,
        }, Directory.Store);
        var loopbackOnly = config.Tunnel.ListenInterfaces.Trim() == "lo";
        if (config.Tunnel.Mdns)
        {
            Mdns = new P2P.Mdns.MdnsService(host, P2P.Mdns.MdnsOptions.ForRendezvous(config.Tunnel.Rendezvous));
            Mdns.Discovered += OnDiscovered;
            Exchange.Attach(Mdns);
        }
        Dht = new P2P.Kad.KadDht(host, new P2P.Kad.KadOptions
        {
            Mode = config.IsRelay ? P2P.Kad.KadMode.Server : P2P.Kad.KadMode.Client,
            // Every node of a loopback lab shares 127.0.0.1: the per-IP cap would keep all but two out.
            MaxPeersPerIpPerBucket = loopbackOnly ? 0 : new P2P.Kad.KadOptions().MaxPeersPerIpPerBucket,
        });
        Rendezvous = new P2P.Discovery.RendezvousService(host, Dht, new P2P.Discovery.RendezvousOptions
        {
            Rendezvous = config.Tunnel.Rendezvous,
            FindInterval = config.Tunnel.FinderPeriod,
        });
        Rendezvous.Discovered += OnDiscovered;
        Exchange.Attach(new ThroughRelays(Rendezvous, this));
        RelayFinder = new P2P.Discovery.RendezvousService(host, Dht, new P2P.Discovery.RendezvousOptions
        {
            Rendezvous = config.Tunnel.Rendezvous + RelaysRendezvousSuffix,
            Advertise = false,
            FindInterval = config.Tunnel.FinderPeriod,
        });
        RelayFinder.Discovered += OnRelayFound;
        _autonat.ReachabilityChanged += OnReachability;
        Metrics.Observe(ObservePeers, ObservePaths, ObserveReservations, ObserveRelayRtt, ObserveRelayUp);
    }

    public Libp2pHost Host { get; }
    public MeshMetrics Metrics { get; }
    public Wire.Metrics.PrometheusExporter Exporter { get; }
    public RelayManager Relays { get; }
    public NodeNames Directory { get; }
    public MeshDialer Dialer { get; }
    public TunnelService Tunnel { get; }

    /// <summary>The service proxy (modules.edgeProxy); null when it is off.</summary>
    public Proxy.ServiceProxy? Proxy { get; private set; }

    /// <summary>The edge DNS server (modules.edgeDNS); null when it is off.</summary>
    public Dns.EdgeDnsServer? Dns { get; private set; }

    /// <summary>EdgeMesh's node-name exchange (<c>/libp2p/tunnel-discovery/1.0.0</c>): names for the peers discovery finds.</summary>
    public Discovery.NodeNameExchange Exchange { get; }

    /// <summary>How long a request for a node not known yet waits for the lookup it starts (<see cref="ResolveAsync"/>).</summary>
    public static readonly TimeSpan ResolveWait = TimeSpan.FromSeconds(3);

    /// <summary>
    /// The peer of a node; when it is not known yet, a DHT rendezvous lookup is started at once (rather than at the next
    /// timer round) and the name is waited for, at most <paramref name="wait"/>. Null if it is still unknown then.
    /// </summary>
    public async Task<PeerId?> ResolveAsync(string node, TimeSpan wait, CancellationToken ct)
    {
        if (Directory.Resolve(node) is { } known) return known;
        var learned = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        void OnLearned(Discovery.NodeNameLearned l) { if (l.NodeName == node) learned.TrySetResult(); }
        Directory.Store.Learned += OnLearned; // before asking, so an answer is not missed
        try
        {
            if (Directory.Resolve(node) is { } now) return now;
            Rendezvous.LookNow();
            try { await learned.Task.WaitAsync(wait, Host.Time, ct).ConfigureAwait(false); }
            catch (TimeoutException) { }
            return Directory.Resolve(node);
        }
        finally
        {
            Directory.Store.Learned -= OnLearned;
        }
    }

    /// <summary>LAN discovery by multicast DNS (service name = the rendezvous string), when enabled.</summary>
    public P2P.Mdns.MdnsService? Mdns { get; }

    /// <summary>The Kademlia DHT: server on relays, client elsewhere; bootstraps from the connections it sees (the relays).</summary>
    public P2P.Kad.KadDht Dht { get; }

    /// <summary>Finds the other nodes under the rendezvous string (provider records), again and again.</summary>
    public P2P.Discovery.RendezvousService Rendezvous { get; }

    /// <summary>Finds relays that offered themselves (offerRelay) in the DHT.</summary>
    public P2P.Discovery.RendezvousService RelayFinder { get; }

    /// <summary>The resumable tunnel (proxied TCP that survives path failures), when enabled.</summary>
    public Resume.ResumeService? Resume { get; }
    public DateTimeOffset StartedAt { get; }
    public AgentConfig Config { get { lock (_gate) return _config; } }
    public string NodeName => Config.NodeName;

    /// <summary>What the cloud link reports for <c>/status</c> (set by whoever runs one; Weft.Mesh does not talk to the cloud).</summary>
    public Func<object?>? CloudStatus { get; set; }

    /// <summary>Raised after each hole punch (for status lines and tests).</summary>
    public event Action<DcutrResult>? Punched;

    /// <summary>Builds the host from <paramref name="config"/>, starts listening, the relay role and the relay manager.</summary>
    public static async Task<MeshAgent> StartAsync(AgentConfig config, ILoggerFactory loggers, CancellationToken ct = default, TimeProvider? time = null)
    {
        var key = LoadIdentity(config);
        var listen = ListenPlanner.Resolve(config.Tunnel);
        if (listen.Count == 0)
            throw new ConfigException([$"modules.edgeTunnel.listenInterfaces: no IPv4 address on '{config.Tunnel.ListenInterfaces}' to listen on; name an interface that has one"]);
        byte[]? psk = null;
        if (config.Tunnel.Psk.Enable)
        {
            try { psk = PskFile.ParseKey(File.ReadAllBytes(config.Tunnel.Psk.Path)); }
            catch (Exception ex) when (ex is FormatException or IOException or UnauthorizedAccessException)
            {
                throw new ConfigException([$"modules.edgeTunnel.psk.path: {config.Tunnel.Psk.Path}: {ex.Message}"]);
            }
        }
        var relayCaps = config.Tunnel.RelayService;
        var options = new HostOptions
        {
            Key = key,
            ListenAddresses = listen,
            PrivateNetworkKey = psk,
            Limits = new ConnectionLimits
            {
                // A relay holds a connection per reserved peer; every node may be reached through relays.
                MaxConnections = Math.Max(1024, relayCaps.MaxReservations + 256),
                MaxRelayedConnections = Math.Max(128, config.Tunnel.Limits.TunnelPeerBaseStreamIn / 4),
                MaxInboundStreamsPerProtocol = Math.Max(256, relayCaps.MaxCircuitsPerPeer),
            },
        };
        var host = new Libp2pHost(options, loggers, time);
        MeshAgent? agent = null;
        try
        {
            agent = new MeshAgent(config, host, loggers);
            await host.StartAsync(ct).ConfigureAwait(false);
            foreach (var w in config.Warnings) Log.ConfigWarning(agent._log, w);
            if (psk is null) Log.NoPsk(agent._log);
            agent.ApplyRelayRole(config);
            agent.UpdateRelays(config);
            agent._autonat.Start();
            agent.Exchange.Start();
            agent.Mdns?.Start();
            agent.Dht.Start();
            if (config.Tunnel.Dht)
            {
                agent.Rendezvous.Start();
                agent.RelayFinder.Start();
            }
            agent._loops.Add(Task.Run(() => agent.BootstrapLoopAsync(agent._stop.Token)));
            if (config.Proxy.Enable) agent.Proxy = Mesh.Proxy.ServiceProxy.Start(config.Proxy, config.NodeName, agent.Directory.Resolve, agent.Tunnel, host.Time, loggers, agent.Resume, meterScope: host);
            if (config.Dns.Enable && agent.Proxy is { } proxy) agent.Dns = Mesh.Dns.EdgeDnsServer.Start(config.Dns, proxy.Lookup, loggers, meterScope: host);
            agent._loops.Add(Task.Run(() => agent.ProbePathsAsync(agent._stop.Token)));
            agent._loops.Add(Task.Run(() => agent.CheckRelayLoopAsync(agent._stop.Token)));
            Log.Started(agent._log, config.NodeName, host.PeerId.ToString(), string.Join(' ', host.ListenAddresses), config.IsRelay);
            return agent;
        }
        catch
        {
            if (agent is not null) await agent.DisposeAsync().ConfigureAwait(false);
            else await host.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    private static Ed25519PrivateKey LoadIdentity(AgentConfig config)
    {
        if (config.Tunnel.Identity.Mode == IdentityMode.Legacy) return LegacyIdentity.DeriveKey(config.NodeName);
        var path = config.Tunnel.Identity.KeyFile;
        try
        {
            return KeyFiles.LoadOrCreate(path).Key;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or InvalidDataException)
        {
            throw new ConfigException([$"modules.edgeTunnel.identity.keyFile: {path}: {ex.Message} (the agent keeps its identity key there; make the directory writable or choose another path)"]);
        }
    }

    private static List<RelayNode> OtherRelays(AgentConfig c) => c.Tunnel.RelayNodes.Where(r => r.NodeName != c.NodeName).ToList();

    private static TunnelOptions TunnelOptionsOf(TunnelConfig t)
    {
        var o = new TunnelOptions { DeniedTargets = t.DeniedTargets };
        return t.Limits.Enable
            ? o with
            {
                MaxStreamsIn = t.Limits.TunnelBaseStreamIn,
                MaxStreamsOut = t.Limits.TunnelBaseStreamOut,
                MaxStreamsInPerPeer = t.Limits.TunnelPeerBaseStreamIn,
                MaxStreamsOutPerPeer = t.Limits.TunnelPeerBaseStreamOut,
            }
            : o with { MaxStreamsIn = 1_000_000, MaxStreamsOut = 1_000_000, MaxStreamsInPerPeer = 100_000, MaxStreamsOutPerPeer = 100_000 };
    }

    // ------------------------------------------------------------------ config changes

    /// <summary>
    /// Applies a re-read configuration: relays added, removed or changed, and this node becoming or ceasing to be a
    /// relay, take effect now. Other changes need a restart and are reported as warnings.
    /// </summary>
    public Task ApplyConfigAsync(AgentConfig next)
    {
        AgentConfig before;
        lock (_gate)
        {
            before = _config;
            _config = next;
            _reloads++;
            _lastConfigError = null;
        }
        var restartNeeded = new List<string>();
        if (next.NodeName != before.NodeName) restartNeeded.Add("nodeName");
        if (next.Tunnel.ListenPort != before.Tunnel.ListenPort) restartNeeded.Add("listenPort");
        if (next.Tunnel.Psk != before.Tunnel.Psk) restartNeeded.Add("psk");
        if (next.Tunnel.Identity != before.Tunnel.Identity) restartNeeded.Add("identity");
        if (next.Tunnel.ListenInterfaces != before.Tunnel.ListenInterfaces) restartNeeded.Add("listenInterfaces");
        if (next.Admin != before.Admin) restartNeeded.Add("admin");
        if (next.Proxy != before.Proxy) restartNeeded.Add("edgeProxy (its services file is watched on its own)");
        if (!DnsEquals(next.Dns, before.Dns)) restartNeeded.Add("edgeDNS");
        foreach (var k in restartNeeded) Log.RestartNeeded(_log, k);
        ApplyRelayRole(next);
        UpdateRelays(next);
        Metrics.ConfigReloads.Add(1, new KeyValuePair<string, object?>("result", "applied"));
        Log.ConfigApplied(_log, next.Tunnel.RelayNodes.Count, next.IsRelay);
        return Task.CompletedTask;
    }

    private static bool DnsEquals(Dns.EdgeDnsConfig a, Dns.EdgeDnsConfig b) =>
        a with { Upstreams = [] } == b with { Upstreams = [] } && a.Upstreams.SequenceEqual(b.Upstreams);

    /// <summary>Records a reload that failed validation (the running configuration stays).</summary>
    public void ReportConfigError(string error)
    {
        lock (_gate) _lastConfigError = error;
        Metrics.ConfigReloads.Add(1, new KeyValuePair<string, object?>("result", "rejected"));
    }

    /// <summary>The rendezvous suffix under which offered relays announce themselves in the DHT.</summary>
    public const string RelaysRendezvousSuffix = "/weft-relays";

    /// <summary>True while this node serves as a relay it offered itself as (offerRelay and AutoNAT says public).</summary>
    public bool OfferingRelay { get { lock (_gate) return _offering; } }

    private bool _offering;
    private P2P.Discovery.RendezvousService? _relayAds;
    private readonly ConcurrentDictionary<PeerId, RelayNode> _discoveredRelays = new();

    /// <summary>Relays the relay finder found in the DHT (offered ones), besides those in config.</summary>
    public IReadOnlyCollection<RelayNode> DiscoveredRelays => _discoveredRelays.Values.ToList();

    private void OnReachability(Reachability r)
    {
        var config = Config;
        if (!config.Tunnel.OfferRelay || config.IsRelay) return;
        ApplyRelayRole(config);
    }

    /// <summary>The relay finder found an offered relay: keep a connection and a reservation on it as on configured ones.</summary>
    private void OnRelayFound(P2P.Discovery.PeerDiscovery d)
    {
        var config = Config;
        if (d.Peer == Host.PeerId || config.Tunnel.RelayNodes.Any(r => r.PeerId == d.Peer)) return;
        var addrs = d.Addresses.Where(a => !a.IsCircuit && a.TryGetTcpEndPoint(out _)).Select(a => a.WithoutPeerId()).Distinct().Take(8).ToList();
        if (addrs.Count == 0) return;
        var name = _discoveredRelays.TryGetValue(d.Peer, out var known) ? known.NodeName
            : Directory.NameOf(d.Peer) ?? "relay-" + d.Peer.ToString()[^8..];
        var node = new RelayNode(name, addrs, d.Peer);
        if (_discoveredRelays.TryGetValue(d.Peer, out var old) && old.Equals(node)) return;
        if (!_discoveredRelays.ContainsKey(d.Peer) && _discoveredRelays.Count >= config.Tunnel.MaxCandidates) return;
        _discoveredRelays[d.Peer] = node;
        Log.RelayDiscovered(_log, name, d.Peer.ToString(), string.Join(' ', addrs));
        UpdateRelays(config);
    }

    private void UpdateRelays(AgentConfig config)
    {
        bool serving;
        lock (_gate) serving = _relayServer is not null;
        var relays = OtherRelays(config).Concat(_discoveredRelays.Values.Where(r => config.Tunnel.RelayNodes.All(c => c.NodeName != r.NodeName))).ToList();
        Relays.SetRelays(relays, reserve: !serving, maxReservations: config.Tunnel.MaxCandidates);
    }

    private void ApplyRelayRole(AgentConfig config)
    {
        var me = config.IsRelay ? config.Tunnel.RelayNodes.First(r => r.NodeName == config.NodeName) : null;
        // Offered: public, by AutoNAT's dial-backs, at the addresses it confirmed.
        var offer = me is null && config.Tunnel.OfferRelay && _autonat.Reachability == Reachability.Public && _autonat.PublicAddresses.Count > 0;
        if (offer) me = new RelayNode(config.NodeName, _autonat.PublicAddresses, Host.PeerId);
        bool changed;
        lock (_gate)
        {
            changed = _offering != offer;
            _offering = offer;
            if (me is not null && _relayServer is null)
            {
                var caps = config.Tunnel.RelayService;
                _relayServer = RelayServer.Register(Host, new RelayServerOptions
                {
                    Limit = RelayLimitPolicy.Off,
                    MaxReservations = caps.MaxReservations,
                    MaxReservationsPerIp = caps.MaxReservationsPerIp,
                    MaxCircuits = caps.MaxCircuits,
                    MaxCircuitsPerPeer = caps.MaxCircuitsPerPeer,
                });
                Log.RelayServing(_log, string.Join(' ', me.Addresses));
            }
            else if (me is null && _relayServer is not null)
            {
                _relayServer.Dispose();
                _relayServer = null;
                _relayReachability.Clear();
                Log.RelayStopped(_log);
            }
        }
        Host.SetAddresses(AdvertiseSource, me is not null && !offer ? me.Addresses : []);
        Dht?.SetMode(me is not null ? P2P.Kad.KadMode.Server : P2P.Kad.KadMode.Client);
        if (me is not null && !offer) _relayCheckNow.Release1();
        if (changed)
        {
            if (offer)
            {
                Log.RelayOffered(_log, string.Join(' ', me!.Addresses));
                _relayAds = new P2P.Discovery.RendezvousService(Host, Dht!, new P2P.Discovery.RendezvousOptions { Rendezvous = config.Tunnel.Rendezvous + RelaysRendezvousSuffix });
                _relayAds.Start();
            }
            else if (_relayAds is not null)
            {
                _ = _relayAds.DisposeAsync().AsTask();
                _relayAds = null;
            }
            UpdateRelays(config);
        }
    }

    /// <summary>Keeps a connection to each bootstrap peer (the DHT's way in when no relay is configured).</summary>
    private async Task BootstrapLoopAsync(CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            foreach (var addr in Config.Tunnel.BootstrapPeers)
            {
                if (Host.Connections.Any(c => !c.IsRelayed && c.RemoteAddress.WithoutPeerId() == addr)) continue;
                using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
                cts.CancelAfter(TimeSpan.FromSeconds(5));
                try { await Host.DialAsync(addr, cts.Token).ConfigureAwait(false); }
                catch (Exception ex) when (!ct.IsCancellationRequested) { Log.BootstrapFailed(_log, addr.ToString(), ex.Message); }
            }
            try { await Task.Delay(BootstrapInterval, Host.Time, ct).ConfigureAwait(false); }
            catch (OperationCanceledException) { return; }
        }
    }

    /// <summary>How often the bootstrap peers are checked (and dialled again when not connected).</summary>
    public static readonly TimeSpan BootstrapInterval = TimeSpan.FromSeconds(10);

    // ------------------------------------------------------------------ relay self-check

    private async Task CheckRelayLoopAsync(CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            try
            {
                var next = await CheckRelayOnceAsync(ct).ConfigureAwait(false);
                using var wait = CancellationTokenSource.CreateLinkedTokenSource(ct);
                await Task.WhenAny(Task.Delay(next, Host.Time, wait.Token), _relayCheckNow.WaitAsync(wait.Token)).ConfigureAwait(false);
                await wait.CancelAsync().ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex)
            {
                Log.RelayCheckFailed(_log, ex.Message);
                try { await Task.Delay(TimeSpan.FromSeconds(5), Host.Time, ct).ConfigureAwait(false); }
                catch (OperationCanceledException) { return; }
            }
        }
    }

    /// <summary>
    /// Asks peers (other relays first) to dial each advertise address back (AutoNAT). Returns when to check again:
    /// soon while no peer could be asked, else <see cref="RelayCheckInterval"/>.
    /// </summary>
    private async Task<TimeSpan> CheckRelayOnceAsync(CancellationToken ct)
    {
        var config = Config;
        if (!config.IsRelay) return RelayCheckInterval;
        var me = config.Tunnel.RelayNodes.First(r => r.NodeName == config.NodeName);
        var relayPeers = Relays.Links.Where(l => l.Peer is not null).Select(l => l.Peer!).ToHashSet();
        var servers = Host.Connections
            .Where(c => !c.IsRelayed && !c.IsClosed && (Host.Peers.Get(c.RemotePeer)?.Protocols.Contains(AutoNatMessage.ProtocolId) ?? false))
            .GroupBy(c => c.RemotePeer).Select(g => g.First())
            .OrderBy(c => relayPeers.Contains(c.RemotePeer) ? 0 : 1)
            .Take(3).ToList();
        var again = RelayCheckInterval;
        foreach (var addr in me.Addresses)
        {
            var key = addr.ToString();
            if (servers.Count == 0)
            {
                _relayReachability[key] = "unknown: no peer connected yet to dial it back";
                again = TimeSpan.FromSeconds(2);
                continue;
            }
            string? verdict = null;
            var refusals = new List<string>();
            foreach (var server in servers)
            {
                using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
                cts.CancelAfter(TimeSpan.FromSeconds(10));
                try
                {
                    var answer = await AutoNatClient.RequestAsync(server, AutoNatMessage.DialRequest(Host.PeerId, [addr]), cts.Token).ConfigureAwait(false);
                    if (answer.Status == AutoNatResponseStatus.Ok && answer.Addr?.WithoutPeerId() == addr) { verdict = "reachable"; break; }
                    if (answer.Status == AutoNatResponseStatus.Ok)
                    {
                        // The server reached us, but at the address our connection comes from, not at the advertised one.
                        verdict = $"unreachable: {server.RemotePeer} reaches this node at {answer.Addr} instead";
                        break;
                    }
                    if (answer.Status == AutoNatResponseStatus.DialError) { verdict = $"unreachable: {server.RemotePeer} could not dial it ({answer.StatusText})"; break; }
                    refusals.Add($"{server.RemotePeer} refused ({answer.StatusText}; it sees us at {server.RemoteAddress})");
                }
                catch (Exception ex) when (!ct.IsCancellationRequested)
                {
                    refusals.Add($"{server.RemotePeer}: {ex.Message}");
                }
            }
            // Servers refuse to dial an IP other than the one our connection comes from: a wrong advertise address.
            verdict ??= "unreachable: " + string.Join("; ", refusals);
            var old = _relayReachability.TryGetValue(key, out var o) ? o : null;
            _relayReachability[key] = verdict;
            if (verdict != "reachable" && old != verdict) Log.RelayUnreachable(_log, key, verdict);
            else if (verdict == "reachable" && old != verdict) Log.RelayReachable(_log, key);
        }
        return again;
    }

    // ------------------------------------------------------------------ paths

    private void OnRelayDown(PeerId relay)
    {
        // The relay's connection is about to close and its circuits with it; nothing else to do: the next stream
        // to each affected peer takes the next relay (MeshDialer sees the relay is no longer live).
        Log.RelayFailover(_log, Relays.NameOf(relay) ?? relay.ToString(), Relays.Preferred is { } p ? Relays.NameOf(p) ?? p.ToString() : "none");
    }

    /// <summary>
    /// Peers the rendezvous finds, with circuit addresses through our live relays added (EdgeMesh adds them too): a
    /// node in another LAN is often reachable only that way, and its provider record may predate its reservations.
    /// </summary>
    private sealed class ThroughRelays : P2P.Discovery.IPeerDiscovery
    {
        private readonly MeshAgent _agent;

        public ThroughRelays(P2P.Discovery.IPeerDiscovery inner, MeshAgent agent)
        {
            _agent = agent;
            inner.Discovered += d =>
            {
                var circuits = _agent.Relays.Ranked.Take(4)
                    .SelectMany(r => _agent.Relays.RelayAddresses(r).Take(1))
                    .Select(a => a.Encapsulate("/p2p-circuit"));
                Discovered?.Invoke(d with { Addresses = _agent.Reachable(d.Addresses).Concat(circuits).Distinct().ToList() });
            };
        }

        public event Action<P2P.Discovery.PeerDiscovery>? Discovered;
    }

    /// <summary>
    /// A remote peer's addresses we could dial: its loopback ones only lead back to ourselves (unless this whole mesh
    /// lives on loopback, as in a lab without root).
    /// </summary>
    private IEnumerable<Multiaddr> Reachable(IEnumerable<Multiaddr> addresses)
    {
        var loopbackMesh = Host.ListenAddresses.All(a => a.TryGetTcpEndPoint(out var ep) && ep is not null && System.Net.IPAddress.IsLoopback(ep.Address));
        return loopbackMesh ? addresses : addresses.Where(a => a.IsCircuit || !a.TryGetTcpEndPoint(out var ep) || ep is null || !System.Net.IPAddress.IsLoopback(ep.Address));
    }

    /// <summary>A peer found by mDNS or the DHT: remember where it is; one found in the LAN is worth a direct dial.</summary>
    private void OnDiscovered(P2P.Discovery.PeerDiscovery d)
    {
        Host.Peers.AddAddresses(d.Peer, Reachable(d.Addresses), Host.Time.GetUtcNow());
        if (d.Source == P2P.Discovery.DiscoverySource.Mdns) Dialer.DirectMayWork(d.Peer);
    }

    private void OnPunch(DcutrResult r)
    {
        if (r.Succeeded)
        {
            Dialer.DirectMayWork(r.Peer);
            Metrics.PathSwitches.Add(1);
        }
        try { Punched?.Invoke(r); } catch (Exception ex) { Log.HandlerFailed(_log, "punched", ex.Message); }
    }

    private async Task ProbePathsAsync(CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(PathProbeInterval, Host.Time, ct).ConfigureAwait(false);
                var relays = Relays.Links.Where(l => l.Peer is not null).Select(l => l.Peer!).ToHashSet();
                var peers = Host.Connections.Select(c => c.RemotePeer).Distinct().Where(p => !relays.Contains(p)).Take(MaxProbedPeers).ToList();
                foreach (var gone in _pathRtt.Keys.Where(k => !peers.Contains(k)).ToList()) _pathRtt.TryRemove(gone, out _);
                await Parallel.ForEachAsync(peers, new ParallelOptions { MaxDegreeOfParallelism = 16, CancellationToken = ct }, async (peer, token) =>
                {
                    if (Dialer.Best(peer) is not { } conn) return;
                    using var cts = CancellationTokenSource.CreateLinkedTokenSource(token);
                    cts.CancelAfter(TimeSpan.FromSeconds(1));
                    try
                    {
                        var rtt = (await conn.PingAsync(cts.Token).ConfigureAwait(false)).TotalMilliseconds;
                        _pathRtt.AddOrUpdate(peer, rtt, (_, old) => old + 0.3 * (rtt - old));
                    }
                    catch (Exception) when (!token.IsCancellationRequested) { /* slow or gone: keep the last value */ }
                }).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                return;
            }
        }
    }

    /// <summary>
    /// One tunnel ping to <paramref name="node"/>: a new stream on the best path (as a new proxied connection would
    /// take), one /ipfs/ping round trip on it. Throws <see cref="KeyNotFoundException"/> for an unknown node.
    /// </summary>
    public async Task<PingReply> PingNodeAsync(string node, int seq, CancellationToken ct)
    {
        var peer = (node == NodeName ? Host.PeerId : await ResolveAsync(node, ResolveWait, ct).ConfigureAwait(false)) ?? throw new KeyNotFoundException($"unknown node '{node}': not found by discovery");
        var started = Host.Time.GetTimestamp();
        try
        {
            var (stream, _, conn) = await Dialer.OpenStreamAsync(peer, [PingService.ProtocolId], ct).ConfigureAwait(false);
            var open = Host.Time.GetElapsedTime(started);
            try
            {
                var rtt = await PingService.PingAsync(stream, Host.Time, ct).ConfigureAwait(false);
                return new PingReply(seq, true, rtt.TotalMilliseconds, open.TotalMilliseconds, conn.IsRelayed ? "relay" : "direct",
                    conn.Relay is { } r ? Relays.NameOf(r) ?? r.ToString() : null, null, Utc());
            }
            finally
            {
                await stream.DisposeAsync().ConfigureAwait(false);
            }
        }
        catch (Exception ex) when (ex is not OperationCanceledException || !ct.IsCancellationRequested)
        {
            return new PingReply(seq, false, null, Host.Time.GetElapsedTime(started).TotalMilliseconds, null, null, ex.Message, Utc());
        }
    }

    private string Utc() => Host.Time.GetUtcNow().ToString("yyyy-MM-ddTHH:mm:ss.fffZ", CultureInfo.InvariantCulture);

    // ------------------------------------------------------------------ status and metrics

    public AgentStatus Status()
    {
        var config = Config;
        var links = Relays.Links;
        var relayPeers = links.Where(l => l.Peer is not null).ToDictionary(l => l.Peer!, l => l.NodeName);
        var notReady = new List<string>();
        var otherRelays = links.Count;
        if (!config.IsRelay && otherRelays > 0 && !links.Any(l => l.Status == RelayLinkStatus.Up))
            notReady.Add("no relay is reachable");
        var reserved = links.Count(l => l.Reserved);
        var warnings = config.Warnings.ToList();
        var wanted = Math.Min(config.Tunnel.RelayManager.Reservations, otherRelays);
        if (!config.IsRelay && reserved < wanted) warnings.Add($"degraded: {reserved} of {wanted} wanted relay reservations held");
        foreach (var (addr, verdict) in _relayReachability)
            if (verdict.StartsWith("unreachable", StringComparison.Ordinal)) warnings.Add($"configured as relay but unreachable at {addr} ({verdict})");

        var peers = new List<PathView>();
        var byPeer = Host.Connections.GroupBy(c => c.RemotePeer).ToDictionary(g => g.Key, g => g.ToList());
        foreach (var (peer, conns) in byPeer)
        {
            if (relayPeers.ContainsKey(peer)) continue;
            var best = Dialer.Best(peer) ?? conns.FirstOrDefault(c => !c.IsClosed);
            var kind = best is null ? "none" : best.IsRelayed ? "relay" : "direct";
            var via = best?.Relay is { } r ? relayPeers.GetValueOrDefault(r) ?? r.ToString() : null;
            Tunnel.PerPeer.TryGetValue(peer, out var bytes);
            peers.Add(new PathView(Directory.NameOf(peer), peer.ToString(), kind, via, _pathRtt.TryGetValue(peer, out var rtt) ? Math.Round(rtt, 3) : null,
                bytes?.DirectBytes ?? 0, bytes?.RelayedBytes ?? 0, conns.Count));
        }
        peers.Sort((a, b) => string.CompareOrdinal(a.Name ?? "~" + a.PeerId, b.Name ?? "~" + b.PeerId));

        var me = config.IsRelay ? config.Tunnel.RelayNodes.First(r => r.NodeName == config.NodeName) : null;
        RelayServer? server;
        lock (_gate) server = _relayServer;
        var role = new RelayRoleView(me is not null, server is not null, me?.Addresses.Select(a => a.ToString()).ToList() ?? [],
            new Dictionary<string, string>(_relayReachability), server?.ReservationCount ?? 0, server?.CircuitCount ?? 0);
        int reloads;
        string? configError;
        lock (_gate)
        {
            reloads = _reloads;
            configError = _lastConfigError;
        }
        if (configError is not null) warnings.Add("the last configuration change was rejected: " + configError);
        if (Proxy is not null) warnings.AddRange(Proxy.Warnings());
        if (Dns is not null) warnings.AddRange(Dns.Warnings());
        return new AgentStatus(
            config.NodeName, Host.PeerId.ToString(), typeof(MeshAgent).Assembly.GetName().Version?.ToString(3) ?? "?",
            StartedAt.ToString("O", CultureInfo.InvariantCulture), notReady.Count == 0, notReady,
            Host.ListenAddresses.Select(a => a.ToString()).ToList(), Host.AdvertisedAddresses.Select(a => a.ToString()).ToList(),
            _autonat.Reachability.ToString().ToLowerInvariant(), role,
            links.Select(l => new RelayStatusView(l.NodeName, l.Peer?.ToString(), l.Status.ToString().ToLowerInvariant(), l.Reserved, l.Preferred,
                l.Rtt is { } t ? Math.Round(t.TotalMilliseconds, 3) : null, l.Since?.ToString("O", CultureInfo.InvariantCulture), l.LastError, l.Failures,
                l.Addresses.Select(a => a.ToString()).ToList())).ToList(),
            Relays.Preferred is { } pr ? Relays.NameOf(pr) : null, Relays.Failovers, peers, warnings, config.ConfigPath, reloads, configError, CloudStatus?.Invoke())
        {
            Proxy = Proxy?.View(),
            Services = Proxy?.Services() ?? [],
            Dns = Dns?.View(),
        };
    }

    private IEnumerable<Measurement<long>> ObservePeers()
    {
        var relays = Relays.Links.Where(l => l.Peer is not null).Select(l => l.Peer!).ToHashSet();
        var all = Host.Connections.Select(c => c.RemotePeer).Distinct().ToList();
        yield return new Measurement<long>(all.Count(relays.Contains), new KeyValuePair<string, object?>("kind", "relay"));
        yield return new Measurement<long>(all.Count(p => !relays.Contains(p)), new KeyValuePair<string, object?>("kind", "node"));
    }

    private IEnumerable<Measurement<long>> ObservePaths()
    {
        var relays = Relays.Links.Where(l => l.Peer is not null).Select(l => l.Peer!).ToHashSet();
        long direct = 0, relayed = 0;
        foreach (var p in Host.Connections.Select(c => c.RemotePeer).Distinct())
        {
            if (relays.Contains(p)) continue;
            if (Dialer.Best(p) is { } c) { if (c.IsRelayed) relayed++; else direct++; }
        }
        yield return new Measurement<long>(direct, new KeyValuePair<string, object?>("kind", "direct"));
        yield return new Measurement<long>(relayed, new KeyValuePair<string, object?>("kind", "relay"));
    }

    private IEnumerable<Measurement<long>> ObserveReservations()
    {
        yield return new Measurement<long>(Relays.Links.Count(l => l.Reserved));
    }

    private IEnumerable<Measurement<double>> ObserveRelayRtt()
    {
        foreach (var l in Relays.Links)
            if (l.Rtt is { } r) yield return new Measurement<double>(r.TotalSeconds, new KeyValuePair<string, object?>("relay", l.NodeName));
    }

    private IEnumerable<Measurement<long>> ObserveRelayUp()
    {
        foreach (var l in Relays.Links)
            yield return new Measurement<long>(l.Status == RelayLinkStatus.Up ? 1 : 0,
                new KeyValuePair<string, object?>("relay", l.NodeName), new KeyValuePair<string, object?>("preferred", l.Preferred ? "true" : "false"));
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        await _stop.CancelAsync().ConfigureAwait(false);
        try { await Task.WhenAll(_loops).ConfigureAwait(false); } catch (Exception) { /* loops end on cancel */ }
        await Rendezvous.DisposeAsync().ConfigureAwait(false);
        await RelayFinder.DisposeAsync().ConfigureAwait(false);
        if (_relayAds is not null) await _relayAds.DisposeAsync().ConfigureAwait(false);
        await Dht.DisposeAsync().ConfigureAwait(false);
        if (Mdns is not null) await Mdns.DisposeAsync().ConfigureAwait(false);
        await Exchange.DisposeAsync().ConfigureAwait(false);
        await Relays.DisposeAsync().ConfigureAwait(false);
        await _autonat.DisposeAsync().ConfigureAwait(false);
        _autonatServer.Dispose();
        _dcutr?.Dispose();
        if (Dns is not null) await Dns.DisposeAsync().ConfigureAwait(false);
        if (Proxy is not null) await Proxy.DisposeAsync().ConfigureAwait(false);
        Resume?.Dispose();
        Tunnel.Dispose();
        lock (_gate) _relayServer?.Dispose();
        await Host.DisposeAsync().ConfigureAwait(false);
        Exporter.Dispose();
        Metrics.Dispose();
        _stop.Dispose();
        _relayCheckNow.Dispose();
    }
}

internal static class SemaphoreExtensions
{
    /// <summary>Releases a 0/1 semaphore unless it is already released (a "check now" signal).</summary>
    public static void Release1(this SemaphoreSlim s)
    {
        try
        {
            if (s.CurrentCount == 0) s.Release();
        }
        catch (SemaphoreFullException)
        {
            // already signalled
        }
    }
}
