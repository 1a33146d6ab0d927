using System.Diagnostics.Metrics;
using System.Net;
using Microsoft.Extensions.Logging;
using Weft.P2P.Discovery;
using Weft.P2P.Host;
using Weft.Wire.Dns;
using Weft.Wire.Identity;
using Weft.Wire.Multiformats;
using ProtocolViolationException = Weft.Wire.ProtocolViolationException;

namespace Weft.P2P.Mdns;

/// <summary>
/// libp2p peer discovery by multicast DNS (discovery/mdns.md), responder and querier in one, on every usable
/// interface. Asks "SERVICE PTR" at start, again after <see cref="MdnsOptions.StartupQueryGaps"/>, then every
/// <see cref="MdnsOptions.QueryInterval"/>; answers such questions (and its own, so others learn of it passively)
/// at most once per <see cref="MdnsOptions.MinResponseInterval"/> per interface; announces itself unasked at start,
/// when the host's addresses change and when interfaces come and go; says goodbye (TTL 0) when disposed.
/// Every peer found in an answer is added to the host's peer store and reported once through
/// <see cref="Discovered"/> (again if its addresses change, or after it expired or said goodbye).
/// Another host's loopback addresses are dropped. Malformed packets are counted and dropped; at most
/// <see cref="MdnsOptions.MaxPacketsPerSecond"/> are parsed, with one reused buffer, and at most
/// <see cref="MdnsOptions.MaxTrackedPeers"/> peers are remembered, so a flood costs no memory.
/// </summary>
public sealed class MdnsService : IPeerDiscovery, IAsyncDisposable
{
    public const string MeterName = "Weft.P2P.Mdns";

    private readonly Libp2pHost _host;
    private readonly IMdnsTransport? _givenTransport;
    private readonly ILogger _log;
    private readonly DnsLimits _limits;
    private readonly CancellationTokenSource _stopping = new();
    private readonly SemaphoreSlim _wake = new(0, int.MaxValue);
    private readonly Lock _gate = new();
    private readonly Dictionary<PeerId, Tracked> _peers = new();
    private readonly Dictionary<int, ResponderState> _responders = new();
    private readonly List<Task> _loops = [];
    private readonly Meter _meter;
    private readonly Counter<long> _received;
    private readonly Counter<long> _sent;
    private readonly Counter<long> _discovered;
    private IMdnsTransport? _transport;
    private CancellationTokenSource? _burst;
    private long _windowStart;
    private int _windowCount;
    private bool _warnedNothing;
    private int _started;
    private int _disposed;

    private sealed record Tracked(DnsName Instance, IReadOnlyList<Multiaddr> Addresses, long ExpiresAt, DateTimeOffset Seen);

    private sealed class ResponderState
    {
        public long LastSent = long.MinValue / 2;
        public bool Pending;
    }

    /// <param name="host">The host whose addresses are announced and whose peer store learns what is found.</param>
    /// <param name="options">Names, limits and timers; invalid options throw <see cref="ArgumentException"/> listing every problem.</param>
    /// <param name="transport">The network; null = <see cref="MdnsUdpTransport"/> on <see cref="MdnsOptions.Port"/>, opened by <see cref="Start"/>.</param>
    public MdnsService(Libp2pHost host, MdnsOptions? options = null, IMdnsTransport? transport = null)
    {
        ArgumentNullException.ThrowIfNull(host);
        Options = options ?? new MdnsOptions();
        var problems = Options.Validate();
        if (problems.Count > 0) throw new ArgumentException("invalid mDNS options: " + string.Join("; ", problems), nameof(options));
        _host = host;
        _givenTransport = transport;
        _log = host.Loggers.CreateLogger("Weft.P2P.Mdns");
        _limits = new DnsLimits { MaxMessageSize = Options.MaxPacketSize, MaxRecords = 256 };
        Self = new MdnsSelf(Options.ServiceName, MdnsSelf.NewPeerName(), host.PeerId);
        _meter = new Meter(MeterName);
        _received = _meter.CreateCounter<long>("weft_mdns_received", description: "mDNS datagrams received, by kind (query, response, malformed, rate_limited)");
        _sent = _meter.CreateCounter<long>("weft_mdns_sent", description: "mDNS datagrams sent, by kind (query, response, announcement, goodbye)");
        _discovered = _meter.CreateCounter<long>("weft_mdns_discovered", description: "peers reported as discovered");
        _meter.CreateObservableGauge("weft_mdns_peers", () => { lock (_gate) return _peers.Count; }, description: "peers remembered");
    }

    public MdnsOptions Options { get; }

    /// <summary>Our service, instance and host names.</summary>
    public MdnsSelf Self { get; }

    /// <summary>The interfaces in use (empty before <see cref="Start"/>).</summary>
    public IReadOnlyList<MdnsInterface> Interfaces => _transport?.Interfaces ?? [];

    public event Action<PeerDiscovery>? Discovered;

    /// <summary>The peers currently remembered (not expired).</summary>
    public IReadOnlyList<PeerDiscovery> Peers
    {
        get
        {
            var now = _host.Time.GetTimestamp();
            lock (_gate)
                return _peers.Where(kv => kv.Value.ExpiresAt > now).Select(kv => new PeerDiscovery(kv.Key, kv.Value.Addresses, DiscoverySource.Mdns, kv.Value.Seen)).ToList();
        }
    }

    /// <summary>
    /// Opens the transport (binding the shared mDNS port) and starts asking, answering and announcing. Throws
    /// <see cref="System.Net.Sockets.SocketException"/> when the port cannot be shared.
    /// </summary>
    public void Start()
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        if (Interlocked.Exchange(ref _started, 1) != 0) return;
        _transport = _givenTransport ?? MdnsUdpTransport.Open(Options.Port, Options.Interfaces);
        _transport.NetworkChanged += OnNetworkChanged;
        _host.AddressesChanged += OnAddressesChanged;
        Log.Started(_log, Options.ServiceName.ToString(), Self.Instance.ToString(), Describe(_transport.Interfaces));
        _loops.Add(Task.Run(ReceiveLoopAsync));
        _loops.Add(Task.Run(QueryLoopAsync));
        StartAnnouncing();
    }

    private static string Describe(IReadOnlyList<MdnsInterface> ifaces) =>
        ifaces.Count == 0 ? "no interface" : string.Join(", ", ifaces.Select(i => $"{i.Name} ({string.Join(' ', i.Addresses)})"));

    private void OnNetworkChanged() => _wake.Release();

    private void OnAddressesChanged() => StartAnnouncing();

    /// <summary>Sends <see cref="MdnsOptions.Announcements"/> unsolicited answers, replacing a burst under way.</summary>
    private void StartAnnouncing()
    {
        if (Options.Announcements == 0 || _stopping.IsCancellationRequested) return;
        var cts = CancellationTokenSource.CreateLinkedTokenSource(_stopping.Token);
        Interlocked.Exchange(ref _burst, cts)?.Cancel();
        _ = Task.Run(async () =>
        {
            try
            {
                for (var i = 0; i < Options.Announcements; i++)
                {
                    if (i > 0) await Task.Delay(Options.AnnouncementGap, _host.Time, cts.Token).ConfigureAwait(false);
                    foreach (var iface in _transport!.Interfaces) await RespondAsync(iface, "announcement", force: true, cts.Token).ConfigureAwait(false);
                }
            }
            catch (OperationCanceledException) { }
        });
    }

    private async Task QueryLoopAsync()
    {
        var ct = _stopping.Token;
        var gaps = 0;
        var query = MdnsRecords.Query(Options.ServiceName).ToArray();
        try
        {
            while (!ct.IsCancellationRequested)
            {
                foreach (var iface in _transport!.Interfaces) await SendAsync(query, iface, "query", ct).ConfigureAwait(false);
                PurgeExpired();
                var wait = gaps < Options.StartupQueryGaps.Count ? Options.StartupQueryGaps[gaps++] : Options.QueryInterval;
                if (await _wake.WaitAsync(wait, ct).ConfigureAwait(false))
                {
                    while (_wake.CurrentCount > 0) await _wake.WaitAsync(ct).ConfigureAwait(false);
                    if (!_transport.RefreshInterfaces()) continue;
                    Log.InterfacesChanged(_log, Describe(_transport.Interfaces));
                    gaps = 0;
                    StartAnnouncing();
                }
                else if (_transport.RefreshInterfaces())
                {
                    Log.InterfacesChanged(_log, Describe(_transport.Interfaces));
                    StartAnnouncing();
                }
            }
        }
        catch (OperationCanceledException) { }
        catch (ObjectDisposedException) { }
    }

    private async Task ReceiveLoopAsync()
    {
        var ct = _stopping.Token;
        var buffer = new byte[Options.MaxPacketSize];
        while (!ct.IsCancellationRequested)
        {
            MdnsDatagram dg;
            try
            {
                dg = await _transport!.ReceiveAsync(buffer, ct).ConfigureAwait(false);
            }
            catch (OperationCanceledException) { return; }
            catch (ObjectDisposedException) { return; }
            catch (System.Net.Sockets.SocketException ex) when (!ct.IsCancellationRequested)
            {
                // An ICMP error for an earlier send can surface here; the socket itself is fine.
                Log.SendFailed(_log, "receive", ex.Message);
                continue;
            }
            catch (Exception ex)
            {
                Log.ReceiveFailed(_log, ex.Message);
                return;
            }
            if (!Admit())
            {
                _received.Add(1, new KeyValuePair<string, object?>("kind", "rate_limited"));
                continue;
            }
            DnsMessage message;
            try
            {
                if (dg.Truncated) throw new ProtocolViolationException("dns", $"datagram longer than {Options.MaxPacketSize} bytes");
                message = DnsMessage.Parse(buffer.AsSpan(0, dg.Length), _limits);
            }
            catch (ProtocolViolationException ex)
            {
                _received.Add(1, new KeyValuePair<string, object?>("kind", "malformed"));
                Log.Malformed(_log, dg.Source.ToString(), ex.Detail);
                continue;
            }
            try
            {
                if (message.IsResponse) HandleResponse(message, dg);
                else await HandleQueryAsync(message, dg, ct).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested) { return; }
            catch (Exception ex)
            {
                // One packet's trouble must not stop the service.
                Log.HandlingFailed(_log, dg.Source.ToString(), ex.GetType().Name, ex.Message);
            }
        }
    }

    /// <summary>A one-second window of at most <see cref="MdnsOptions.MaxPacketsPerSecond"/> datagrams.</summary>
    private bool Admit()
    {
        var now = _host.Time.GetTimestamp();
        if (_host.Time.GetElapsedTime(_windowStart, now) >= TimeSpan.FromSeconds(1))
        {
            _windowStart = now;
            _windowCount = 0;
        }
        return ++_windowCount <= Options.MaxPacketsPerSecond;
    }

    private async Task HandleQueryAsync(DnsMessage query, MdnsDatagram dg, CancellationToken ct)
    {
        _received.Add(1, new KeyValuePair<string, object?>("kind", "query"));
        if (query.Opcode != 0) return;
        bool wantSelf = false, wantMeta = false, unicastOnly = true;
        foreach (var q in query.Questions)
        {
            if (q.Class is not (DnsClass.Internet or DnsClass.Any)) continue;
            var any = q.Type == DnsType.ANY;
            if (q.Name == Self.Service && (any || q.Type == DnsType.PTR)
                || q.Name == Self.Instance && (any || q.Type is DnsType.SRV or DnsType.TXT)
                || q.Name == Self.Host && (any || q.Type is DnsType.A or DnsType.AAAA))
                wantSelf = true;
            else if (q.Name == MdnsRecords.ServicesMeta && (any || q.Type == DnsType.PTR))
                wantMeta = true;
            else
                continue;
            unicastOnly &= q.UnicastResponse;
        }
        // Known-answer suppression (RFC 6762 §7.1): the asker already holds our PTR with at least half its TTL.
        var ttl = (uint)Options.RecordTtl.TotalSeconds;
        if (wantSelf && query.Answers.OfType<PtrRecord>().Any(p => p.Name == Self.Service && p.Target == Self.Instance && p.Ttl >= ttl / 2)) wantSelf = false;
        if (!wantSelf && !wantMeta) return;

        var iface = _transport!.Interfaces.FirstOrDefault(i => i.Index == dg.InterfaceIndex);
        if (dg.Source.Port != Options.Port)
        {
            // A legacy (one-shot) resolver: answer it directly, echoing its id and questions, with short TTLs (RFC 6762 §6.7).
            await AnswerDirectlyAsync(query, dg.Source, wantSelf, wantMeta, legacy: true, ct).ConfigureAwait(false);
            return;
        }
        if (unicastOnly)
        {
            await AnswerDirectlyAsync(query, dg.Source, wantSelf, wantMeta, legacy: false, ct).ConfigureAwait(false);
            return;
        }
        var targets = iface is not null ? [iface] : _transport.Interfaces;
        foreach (var t in targets)
        {
            if (wantMeta) await SendAsync(MdnsRecords.ServicesAnswer(Self.Service, ttl).ToArray(), t, "response", ct).ConfigureAwait(false);
            if (wantSelf) ScheduleResponse(t, dg.Source);
        }
    }

    private async Task AnswerDirectlyAsync(DnsMessage query, IPEndPoint to, bool wantSelf, bool wantMeta, bool legacy, CancellationToken ct)
    {
        var ttl = (uint)Options.RecordTtl.TotalSeconds;
        if (legacy) ttl = Math.Min(ttl, 10);
        var records = new List<DnsRecord>();
        var additionals = new List<DnsRecord>();
        if (wantMeta) records.AddRange(MdnsRecords.ServicesAnswer(Self.Service, ttl).Answers);
        if (wantSelf && MdnsRecords.Response(Self, _host.AdvertisedAddresses, ttl, Options.MaxResponseSize) is { } r)
        {
            records.AddRange(r.Answers);
            additionals.AddRange(legacy ? r.Additionals.Select(a => a with { CacheFlush = false, Ttl = Math.Min(a.Ttl, ttl) }) : r.Additionals);
        }
        if (records.Count == 0) return;
        var answer = new DnsMessage
        {
            Id = legacy ? query.Id : (ushort)0,
            IsResponse = true,
            Authoritative = true,
            Questions = legacy ? query.Questions : [],
            Answers = records,
            Additionals = additionals,
        };
        try
        {
            await _transport!.SendUnicastAsync(answer.ToArray(), to, ct).ConfigureAwait(false);
            _sent.Add(1, new KeyValuePair<string, object?>("kind", "response"));
        }
        catch (Exception ex) when (ex is System.Net.Sockets.SocketException or ObjectDisposedException)
        {
            Log.SendFailed(_log, to.ToString(), ex.Message);
        }
    }

    /// <summary>Answers on <paramref name="iface"/> now, or once <see cref="MdnsOptions.MinResponseInterval"/> has passed since the last answer there (queries in between share it).</summary>
    private void ScheduleResponse(MdnsInterface iface, IPEndPoint asker)
    {
        TimeSpan wait;
        lock (_gate)
        {
            if (!_responders.TryGetValue(iface.Index, out var st)) _responders[iface.Index] = st = new ResponderState();
            if (st.Pending) return;
            var since = _host.Time.GetElapsedTime(st.LastSent);
            wait = since >= Options.MinResponseInterval ? TimeSpan.Zero : Options.MinResponseInterval - since;
            st.Pending = true;
        }
        Log.Answering(_log, asker.ToString(), iface.Index, wait.TotalMilliseconds);
        _ = Task.Run(async () =>
        {
            try
            {
                if (wait > TimeSpan.Zero) await Task.Delay(wait, _host.Time, _stopping.Token).ConfigureAwait(false);
                await RespondAsync(iface, "response", force: false, _stopping.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) { }
        });
    }

    private async Task RespondAsync(MdnsInterface iface, string kind, bool force, CancellationToken ct)
    {
        lock (_gate)
        {
            if (!_responders.TryGetValue(iface.Index, out var st)) _responders[iface.Index] = st = new ResponderState();
            if (!force && !st.Pending) return;
            st.Pending = false;
            st.LastSent = _host.Time.GetTimestamp();
        }
        var response = MdnsRecords.Response(Self, _host.AdvertisedAddresses, (uint)Options.RecordTtl.TotalSeconds, Options.MaxResponseSize);
        if (response is null)
        {
            if (!_warnedNothing) Log.NothingToAnnounce(_log);
            _warnedNothing = true;
            return;
        }
        await SendAsync(response.ToArray(), iface, kind, ct).ConfigureAwait(false);
    }

    private async Task SendAsync(byte[] packet, MdnsInterface iface, string kind, CancellationToken ct)
    {
        try
        {
            await _transport!.SendMulticastAsync(packet, iface, ct).ConfigureAwait(false);
            _sent.Add(1, new KeyValuePair<string, object?>("kind", kind));
            Log.Sent(_log, kind, iface.Name);
        }
        catch (Exception ex) when (ex is System.Net.Sockets.SocketException or ObjectDisposedException)
        {
            Log.SendFailed(_log, iface.Name, ex.Message);
        }
    }

    private void HandleResponse(DnsMessage response, MdnsDatagram dg)
    {
        _received.Add(1, new KeyValuePair<string, object?>("kind", "response"));
        // RFC 6762 §11: answers must come from the mDNS port.
        if (dg.Source.Port != Options.Port) return;
        var fromThisHost = _transport!.IsLocalAddress(dg.Source.Address);
        var now = _host.Time.GetTimestamp();
        foreach (var found in MdnsRecords.PeersIn(response, Options.ServiceName, Self.Instance))
        {
            if (found.Goodbye)
            {
                PeerId? leaving;
                lock (_gate)
                {
                    leaving = found.Peer ?? _peers.FirstOrDefault(kv => kv.Value.Instance == found.Instance).Key;
                    if (leaving is not null && !_peers.Remove(leaving)) leaving = null;
                }
                if (leaving is not null) Log.Goodbye(_log, leaving.ToString());
                continue;
            }
            if (found.Peer is not { } peer || peer == _host.PeerId) continue;
            var addrs = found.Addresses
                .Where(a => !IsLoopback(a) || (Options.AcceptLoopbackFromThisHost && fromThisHost))
                .Take(Options.MaxAddressesPerPeer)
                .ToList();
            if (addrs.Count == 0) continue;
            var ttl = found.Ttl < Options.RecordTtl ? found.Ttl : Options.RecordTtl;
            var expires = now + (long)(ttl.TotalSeconds * _host.Time.TimestampFrequency);
            var at = _host.Time.GetUtcNow();
            lock (_gate)
            {
                if (_peers.TryGetValue(peer, out var old) && old.ExpiresAt > now && old.Addresses.SequenceEqual(addrs))
                {
                    _peers[peer] = old with { ExpiresAt = expires, Instance = found.Instance };
                    continue;
                }
                if (old is null && _peers.Count >= Options.MaxTrackedPeers)
                {
                    PurgeExpiredLocked(now);
                    if (_peers.Count >= Options.MaxTrackedPeers)
                    {
                        Log.LimitReached(_log, nameof(MdnsOptions.MaxTrackedPeers), Options.MaxTrackedPeers, peer.ToString());
                        continue;
                    }
                }
                _peers[peer] = new Tracked(found.Instance, addrs, expires, at);
            }
            _host.Peers.AddAddresses(peer, addrs, at);
            _discovered.Add(1);
            Log.Discovered(_log, peer.ToString(), string.Join(' ', addrs));
            var d = new PeerDiscovery(peer, addrs, DiscoverySource.Mdns, at);
            try
            {
                Discovered?.Invoke(d);
            }
            catch (Exception ex)
            {
                Log.HandlerFailed(_log, ex.Message);
            }
        }
    }

    private static bool IsLoopback(Multiaddr a) =>
        (a.TryGetTcpEndPoint(out var ep) || a.TryGetUdpEndPoint(out ep)) && IPAddress.IsLoopback(ep.Address);

    private void PurgeExpired()
    {
        lock (_gate) PurgeExpiredLocked(_host.Time.GetTimestamp());
    }

    private void PurgeExpiredLocked(long now)
    {
        foreach (var p in _peers.Where(kv => kv.Value.ExpiresAt <= now).Select(kv => kv.Key).ToList()) _peers.Remove(p);
    }

    /// <summary>Says goodbye on every interface (best effort), stops and closes the transport.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        _host.AddressesChanged -= OnAddressesChanged;
        if (_transport is not null)
        {
            _transport.NetworkChanged -= OnNetworkChanged;
            using var bye = new CancellationTokenSource(TimeSpan.FromSeconds(1));
            var goodbye = MdnsRecords.Goodbye(Self).ToArray();
            foreach (var iface in _transport.Interfaces) await SendAsync(goodbye, iface, "goodbye", bye.Token).ConfigureAwait(false);
        }
        _stopping.Cancel();
        if (_transport is not null) await _transport.DisposeAsync().ConfigureAwait(false);
        try { await Task.WhenAll(_loops).ConfigureAwait(false); } catch (Exception) { /* loops end on cancel */ }
        _burst?.Dispose();
        _meter.Dispose();
    }
}
