using Microsoft.Extensions.Logging;
using Weft.Mesh.Config;
using Weft.P2P.Host;
using Weft.P2P.Relay;
using Weft.Wire.Identity;
using Weft.Wire.Multiformats;

namespace Weft.Mesh.Relays;

public enum RelayLinkStatus { Connecting, Up, Down }

/// <summary>What the agent knows of one relay, for status and metrics.</summary>
public sealed record RelayLinkState(
    string NodeName,
    PeerId? Peer,
    RelayLinkStatus Status,
    bool Reserved,
    TimeSpan? Rtt,
    bool Preferred,
    DateTimeOffset? Since,
    string? LastError,
    int Failures,
    IReadOnlyList<Multiaddr> Addresses);

/// <summary>
/// Keeps this node's relays: a connection to each configured relay, a reservation on each (up to
/// <see cref="TunnelConfig.MaxCandidates"/>; a relay node itself reserves nowhere), yamux pings every
/// <see cref="RelayManagerConfig.ProbeInterval"/> for RTT and liveness, and a ranking with hysteresis. A relay that
/// sent nothing for <see cref="RelayManagerConfig.DeadAfter"/> (no pong, no data) is declared dead at once: its
/// connection is closed, so the circuits through it end and new streams take the next relay; it is dialled again
/// with a short backoff and its reservation comes back with it.
/// </summary>
public sealed class RelayManager : IAsyncDisposable
{
    /// <summary>The <see cref="Libp2pHost.SetAddresses"/> source prefix of a relay's circuit addresses.</summary>
    public const string AddressSourcePrefix = "relay/";

    /// <summary>
    /// RTT samples kept per relay. A relay's RTT is the smallest of them: queueing and a busy CPU only ever add delay,
    /// so the minimum over a few seconds is the path's own RTT, steady under load, and still follows a real change
    /// within one window.
    /// </summary>
    public const int RttWindow = 16;

    /// <summary>Dialling one relay (connect and handshake) and reserving on it.</summary>
    public static readonly TimeSpan ConnectTimeout = TimeSpan.FromSeconds(5);

    /// <summary>First wait before dialling a relay again after it failed (doubles up to <see cref="RelayManagerConfig.MaxRetryDelay"/>).</summary>
    public static readonly TimeSpan MinRetryDelay = TimeSpan.FromMilliseconds(100);

    private readonly Libp2pHost _host;
    private readonly RelayManagerConfig _config;
    private readonly ILogger _log;
    private readonly MeshMetrics _metrics;
    private readonly object _gate = new();
    private readonly Dictionary<string, RelayLink> _links = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource _stop = new();
    private bool _reserve;
    private int _maxReservations;
    private PeerId? _preferred;
    private int _disposed;

    public RelayManager(Libp2pHost host, RelayManagerConfig config, MeshMetrics metrics, ILogger log)
    {
        _host = host;
        _config = config;
        _metrics = metrics;
        _log = log;
    }

    /// <summary>Raised (from any thread) when a relay goes up or down, gains or loses its reservation, or the preferred relay changes.</summary>
    public event Action? Changed;

    /// <summary>Raised when a relay this node was using is declared dead (before its connection is closed).</summary>
    public event Action<PeerId>? RelayDown;

    /// <summary>How many times the preferred relay died and traffic moved to another one.</summary>
    public long Failovers => Interlocked.Read(ref _failovers);

    private long _failovers;

    /// <summary>
    /// Sets the relays to keep (a change of config applies here): new ones are dialled, removed ones closed, the rest
    /// kept as they are. <paramref name="reserve"/> is false on a relay node; <paramref name="maxReservations"/> caps
    /// how many reservations are held.
    /// </summary>
    public void SetRelays(IReadOnlyList<RelayNode> relays, bool reserve, int maxReservations)
    {
        List<RelayLink> removed = [];
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed != 0, this);
            var wanted = relays.ToDictionary(r => r.NodeName, StringComparer.Ordinal);
            foreach (var (name, link) in _links.ToList())
            {
                if (!wanted.TryGetValue(name, out var node) || !node.Equals(link.Node) || reserve != _reserve)
                {
                    removed.Add(link);
                    _links.Remove(name);
                }
            }
            _reserve = reserve;
            _maxReservations = maxReservations;
            foreach (var node in relays)
            {
                if (_links.ContainsKey(node.NodeName)) continue;
                var link = new RelayLink(this, node);
                _links[node.NodeName] = link;
                link.Start(_stop.Token);
            }
        }
        foreach (var link in removed)
        {
            Log.RelayRemoved(_log, link.Node.NodeName);
            _ = link.DisposeAsync().AsTask();
        }
        Reevaluate();
    }

    /// <summary>Every relay's state, by name.</summary>
    public IReadOnlyList<RelayLinkState> Links
    {
        get
        {
            lock (_gate) return _links.Values.OrderBy(l => l.Node.NodeName, StringComparer.Ordinal).Select(l => l.State(_preferred)).ToList();
        }
    }

    /// <summary>The relay new relayed streams go through first.</summary>
    public PeerId? Preferred { get { lock (_gate) return _preferred; } }

    /// <summary>Live relays (up, and reserved unless this node reserves nowhere), the preferred one first, then by RTT.</summary>
    public IReadOnlyList<PeerId> Ranked
    {
        get
        {
            lock (_gate)
            {
                return _links.Values.Where(l => l.IsLive(_reserve)).OrderBy(l => l.Peer == _preferred ? 0 : 1).ThenBy(l => l.SmoothedRtt ?? double.MaxValue)
                    .Select(l => l.Peer!).ToList();
            }
        }
    }

    /// <summary>True if <paramref name="relay"/> is one of ours and up.</summary>
    public bool IsUp(PeerId relay)
    {
        lock (_gate) return _links.Values.Any(l => l.Peer == relay && l.Status == RelayLinkStatus.Up);
    }

    /// <summary>The relays' addresses with their peer IDs, for dialling through them.</summary>
    public IReadOnlyList<Multiaddr> RelayAddresses(PeerId relay)
    {
        lock (_gate)
        {
            var link = _links.Values.FirstOrDefault(l => l.Peer == relay);
            return link is null ? [] : link.Node.Addresses.Select(a => a.WithPeerId(relay)).ToList();
        }
    }

    /// <summary>The node name of a relay by its peer ID.</summary>
    public string? NameOf(PeerId relay)
    {
        lock (_gate) return _links.Values.FirstOrDefault(l => l.Peer == relay)?.Node.NodeName;
    }

    /// <summary>The peer ID of a relay by its node name (once known).</summary>
    public PeerId? PeerOf(string nodeName)
    {
        lock (_gate) return _links.TryGetValue(nodeName, out var l) ? l.Peer : null;
    }

    /// <summary>Smoothed RTT to a relay, if measured.</summary>
    public TimeSpan? RttOf(PeerId relay)
    {
        lock (_gate)
        {
            var ms = _links.Values.FirstOrDefault(l => l.Peer == relay)?.SmoothedRtt;
            return ms is null ? null : TimeSpan.FromMilliseconds(ms.Value);
        }
    }

    private bool ShouldReserve(RelayLink link)
    {
        lock (_gate)
        {
            if (!_reserve) return false;
            var held = _links.Values.Count(l => l != link && l.Reserved);
            return held < _maxReservations;
        }
    }

    /// <summary>Picks the preferred relay: keep the current one while it lives unless another is clearly faster.</summary>
    internal void Reevaluate()
    {
        PeerId? before, after;
        lock (_gate)
        {
            before = _preferred;
            var live = _links.Values.Where(l => l.IsLive(_reserve) && l.SmoothedRtt is not null).ToList();
            var current = live.FirstOrDefault(l => l.Peer == _preferred);
            var best = live.OrderBy(l => l.SmoothedRtt).FirstOrDefault();
            if (current is null)
            {
                _preferred = best?.Peer;
            }
            else if (best is not null && best != current)
            {
                var cur = current.SmoothedRtt!.Value;
                var cand = best.SmoothedRtt!.Value;
                if (cur - cand >= _config.SwitchMinGain.TotalMilliseconds && cand <= cur * (1 - _config.SwitchMinFraction))
                    _preferred = best.Peer;
            }
            after = _preferred;
        }
        if (before != after)
        {
            Log.PreferredChanged(_log, before is null ? "none" : NameOf(before) ?? before.ToString(), after is null ? "none" : NameOf(after) ?? after.ToString());
            RaiseChanged();
        }
    }

    private void OnDead(RelayLink link, string why)
    {
        bool wasPreferred;
        lock (_gate) wasPreferred = link.Peer is not null && link.Peer == _preferred;
        if (wasPreferred)
        {
            Interlocked.Increment(ref _failovers);
            _metrics.Failovers.Add(1);
        }
        Log.RelayDead(_log, link.Node.NodeName, why);
        Reevaluate();
        if (link.Peer is { } p)
        {
            try { RelayDown?.Invoke(p); } catch (Exception ex) { Log.HandlerFailed(_log, "relay-down", ex.Message); }
        }
    }

    private void RaiseChanged()
    {
        try { Changed?.Invoke(); } catch (Exception ex) { Log.HandlerFailed(_log, "relays-changed", ex.Message); }
    }

    public async ValueTask DisposeAsync()
    {
        List<RelayLink> links;
        lock (_gate)
        {
            if (_disposed != 0) return;
            _disposed = 1;
            links = [.. _links.Values];
            _links.Clear();
        }
        _stop.Cancel();
        foreach (var l in links) await l.DisposeAsync().ConfigureAwait(false);
        _stop.Dispose();
    }

    /// <summary>One relay: connect, reserve, probe; again after a failure.</summary>
    private sealed class RelayLink(RelayManager owner, RelayNode node) : IAsyncDisposable
    {
        private readonly CancellationTokenSource _cts = new();
        private Task _loop = Task.CompletedTask;
        private volatile RelayLinkStatus _status = RelayLinkStatus.Connecting;
        private volatile bool _reserved;
        private readonly Queue<double> _samples = new();
        private double? _rtt;
        private DateTimeOffset? _since;
        private string? _lastError;
        private int _failures;
        private PeerId? _peer = node.PeerId;

        public RelayNode Node { get; } = node;
        public PeerId? Peer => Volatile.Read(ref _peer);
        public RelayLinkStatus Status => _status;
        public bool Reserved => _reserved;
        public double? SmoothedRtt { get { lock (this) return _rtt; } }

        public bool IsLive(bool reserving) => _status == RelayLinkStatus.Up && Peer is not null && (!reserving || _reserved);

        public RelayLinkState State(PeerId? preferred)
        {
            lock (this)
            {
                return new RelayLinkState(Node.NodeName, Peer, _status, _reserved, _rtt is { } r ? TimeSpan.FromMilliseconds(r) : null,
                    Peer is not null && Peer == preferred, _since, _lastError, _failures, Node.Addresses);
            }
        }

        public void Start(CancellationToken stopping)
        {
            var linked = CancellationTokenSource.CreateLinkedTokenSource(stopping, _cts.Token);
            _loop = Task.Run(async () =>
            {
                using (linked) await RunAsync(linked.Token).ConfigureAwait(false);
            });
        }

        private async Task RunAsync(CancellationToken ct)
        {
            var backoff = MinRetryDelay;
            while (!ct.IsCancellationRequested)
            {
                Connection? conn = null;
                string why;
                try
                {
                    conn = await ConnectAsync(ct).ConfigureAwait(false);
                    var peer = conn.RemotePeer;
                    if (Peer is { } expected && expected != peer)
                        throw new InvalidOperationException($"{Node.NodeName} answered as {peer}, not {expected}");
                    Volatile.Write(ref _peer, peer);
                    lock (this)
                    {
                        _since = owner._host.Time.GetUtcNow();
                        _lastError = null;
                    }
                    _status = RelayLinkStatus.Up;
                    Log.RelayUp(owner._log, Node.NodeName, peer.ToString(), conn.RemoteAddress.ToString());
                    owner.RaiseChanged();
                    backoff = MinRetryDelay;
                    why = await HoldAsync(conn, ct).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (ct.IsCancellationRequested)
                {
                    break;
                }
                catch (Exception ex)
                {
                    why = ex is OperationCanceledException ? "timed out" : ex.Message;
                }
                var wasUp = _status == RelayLinkStatus.Up;
                lock (this)
                {
                    _lastError = why;
                    _failures++;
                    _since = owner._host.Time.GetUtcNow();
                }
                Unpublish();
                _status = RelayLinkStatus.Down;
                if (wasUp) owner.OnDead(this, why);
                else Log.RelayUnreachable(owner._log, Node.NodeName, why, backoff.TotalMilliseconds);
                owner.RaiseChanged();
                if (conn is not null)
                {
                    try { await conn.DisposeAsync().ConfigureAwait(false); } catch (Exception) { /* closing anyway */ }
                }
                if (ct.IsCancellationRequested) break;
                try { await Task.Delay(Jitter(backoff), owner._host.Time, ct).ConfigureAwait(false); }
                catch (OperationCanceledException) { break; }
                backoff = TimeSpan.FromTicks(Math.Min(backoff.Ticks * 2, owner._config.MaxRetryDelay.Ticks));
                _status = RelayLinkStatus.Connecting;
            }
            Unpublish();
        }

        private static TimeSpan Jitter(TimeSpan t) => TimeSpan.FromTicks((long)(t.Ticks * (0.8 + Random.Shared.NextDouble() * 0.4)));

        private async Task<Connection> ConnectAsync(CancellationToken ct)
        {
            using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
            cts.CancelAfter(ConnectTimeout);
            var host = owner._host;
            if (Peer is { } id) return await host.DialPeerAsync(id, Node.Addresses.Select(a => a.WithPeerId(id)).ToList(), cts.Token).ConfigureAwait(false);
            // Peer ID not configured: the first address that answers tells it (the PSK, when set, is what admits us).
            var errors = new List<string>();
            foreach (var a in Node.Addresses)
            {
                try { return await host.DialAsync(a, cts.Token).ConfigureAwait(false); }
                catch (Exception ex) when (ex is not OperationCanceledException || !ct.IsCancellationRequested) { errors.Add($"{a}: {ex.Message}"); }
            }
            throw new InvalidOperationException(string.Join("; ", errors));
        }

        /// <summary>Reserves (and refreshes), probes; returns why the relay is considered gone.</summary>
        private async Task<string> HoldAsync(Connection conn, CancellationToken ct)
        {
            var host = owner._host;
            var time = host.Time;
            var cfg = owner._config;
            DateTimeOffset refreshAt = DateTimeOffset.MaxValue;
            var lastPong = time.GetTimestamp();
            Task<TimeSpan>? ping = null;
            long pingStarted = 0;
            var tick = TimeSpan.FromTicks(Math.Max(TimeSpan.FromMilliseconds(10).Ticks, Math.Min(cfg.ProbeInterval.Ticks, cfg.DeadAfter.Ticks / 4)));
            var nextPing = 0L;
            while (true)
            {
                ct.ThrowIfCancellationRequested();
                if (conn.IsClosed) return "the connection to the relay closed";

                // Reservation: take one if we should hold one and have none, refresh before it expires.
                if (!_reserved && owner.ShouldReserve(this) || _reserved && time.GetUtcNow() >= refreshAt)
                {
                    using var rcts = CancellationTokenSource.CreateLinkedTokenSource(ct);
                    rcts.CancelAfter(ConnectTimeout);
                    var info = await RelayClient.ReserveAsync(host, conn.RemoteAddress.WithoutPeerId().WithPeerId(conn.RemotePeer), rcts.Token).ConfigureAwait(false);
                    var left = info.Expire - time.GetUtcNow();
                    refreshAt = time.GetUtcNow() + TimeSpan.FromTicks(Math.Max(TimeSpan.FromSeconds(1).Ticks, (long)(left.Ticks * 0.75)));
                    host.SetAddresses(AddressSourcePrefix + conn.RemotePeer, info.CircuitAddresses);
                    if (!_reserved)
                    {
                        _reserved = true;
                        Log.Reserved(owner._log, Node.NodeName, info.Expire);
                        owner.RaiseChanged();
                        owner.Reevaluate();
                    }
                }

                // Probe: one yamux ping in flight at a time; any byte from the relay also proves it alive.
                var now = time.GetTimestamp();
                if (ping is { IsCompleted: true })
                {
                    if (ping.IsCompletedSuccessfully)
                    {
                        lastPong = Math.Max(lastPong, pingStarted + ping.Result.Ticks * time.TimestampFrequency / TimeSpan.TicksPerSecond);
                        Sample(ping.Result);
                        owner.Reevaluate();
                    }
                    ping = null;
                }
                if (ping is null && now >= nextPing)
                {
                    pingStarted = now;
                    nextPing = now + (long)(cfg.ProbeInterval.TotalSeconds * time.TimestampFrequency);
                    ping = conn.PingAsync(ct).AsTask();
                }
                var alive = Math.Max(lastPong, conn.LastReceivedTimestamp);
                var silent = time.GetElapsedTime(alive);
                if (silent > cfg.DeadAfter)
                    return $"no answer for {silent.TotalMilliseconds:0} ms (pings every {cfg.ProbeInterval.TotalMilliseconds:0} ms)";

                var wake = ping is null ? Task.Delay(tick, time, ct) : Task.WhenAny(ping, Task.Delay(tick, time, ct));
                await Task.WhenAny(wake, conn.Completion).ConfigureAwait(false);
            }
        }

        private void Sample(TimeSpan rtt)
        {
            var ms = rtt.TotalMilliseconds;
            lock (this)
            {
                _samples.Enqueue(ms);
                while (_samples.Count > RttWindow) _samples.Dequeue();
                _rtt = _samples.Min();
            }
            owner._metrics.RecordRelayRtt(Node.NodeName, ms / 1000);
        }

        private void Unpublish()
        {
            var wasReserved = _reserved;
            _reserved = false;
            if (Peer is { } p) owner._host.SetAddresses(AddressSourcePrefix + p, []);
            if (wasReserved) Log.ReservationLost(owner._log, Node.NodeName);
        }

        public async ValueTask DisposeAsync()
        {
            _cts.Cancel();
            try { await _loop.ConfigureAwait(false); } catch (Exception) { /* ended */ }
            Unpublish();
            if (Peer is { } p && owner._host.GetDirectConnection(p) is { } c && _status != RelayLinkStatus.Down)
            {
                try { await c.DisposeAsync().ConfigureAwait(false); } catch (Exception) { /* closing anyway */ }
            }
            _cts.Dispose();
        }
    }
}
