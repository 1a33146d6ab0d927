using System.Collections.Concurrent;
using System.IO.Pipelines;
using System.Net;
using System.Net.NetworkInformation;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Weft.P2P.Identify;
using Weft.P2P.Multistream;
using Weft.P2P.Noise;
using Weft.P2P.Pnet;
using Weft.P2P.Transport;
using Weft.P2P.Yamux;
using Weft.Wire;
using ProtocolViolationException = Weft.Wire.ProtocolViolationException;
using Weft.Wire.Identity;
using Weft.Wire.Multiformats;

namespace Weft.P2P.Host;

/// <summary>An inbound stream whose protocol has been agreed, handed to the protocol's handler.</summary>
public sealed record IncomingStream(YamuxStream Stream, Connection Connection, string Protocol);

public delegate Task StreamHandler(IncomingStream stream, CancellationToken ct);

/// <summary>
/// A hole punch under way (<see cref="Libp2pHost.ExpectPunch"/>): which peer and role a connection reaching our
/// listener from the punched addresses gets, and what became of such connections.
/// </summary>
public sealed class PunchExpectation : IDisposable
{
    private readonly Action _unregister;
    private readonly TaskCompletionSource<Connection> _inbound = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _running;
    private int _disposed;

    internal PunchExpectation(PeerId peer, Direction role, Action unregister)
    {
        Peer = peer;
        Role = role;
        _unregister = unregister;
    }

    public PeerId Peer { get; }
    public Direction Role { get; }

    /// <summary>The first connection from the punched addresses that reached our listener and was upgraded.</summary>
    public Task<Connection> Inbound => _inbound.Task;

    /// <summary>Upgrades of such connections still running.</summary>
    public bool InboundRunning => Volatile.Read(ref _running) > 0;

    /// <summary>Raised when an inbound upgrade from the punched addresses ends (whatever the outcome).</summary>
    public event Action? InboundEnded;

    internal void OnInboundStarted() => Interlocked.Increment(ref _running);

    internal void OnInboundEnded(Connection? conn)
    {
        if (conn is not null) _inbound.TrySetResult(conn);
        Interlocked.Decrement(ref _running);
        InboundEnded?.Invoke();
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0) _unregister();
    }
}

/// <summary>Every address of a peer failed.</summary>
public sealed class DialFailedException(PeerId? peer, IReadOnlyList<(Multiaddr Address, Exception Error)> errors)
    : Exception($"dial {(peer is null ? "" : peer + " ")}failed: " +
                (errors.Count == 0 ? "no addresses" : string.Join("; ", errors.Select(e => $"{e.Address}: {e.Error.Message}"))))
{
    public PeerId? Peer { get; } = peer;
    public IReadOnlyList<(Multiaddr Address, Exception Error)> Errors { get; } = errors;
}

/// <summary>
/// A libp2p host: listens, dials, upgrades TCP connections (pnet, multistream, Noise, yamux),
/// keeps one connection per peer, negotiates streams and runs protocol handlers. Identify runs on
/// every new connection.
/// </summary>
public sealed class Libp2pHost : IAsyncDisposable
{
    public const string YamuxProtocolId = "/yamux/1.0.0";

    private readonly ILogger _log;
    private readonly TcpTransport _tcp;
    private readonly ConcurrentDictionary<string, (StreamHandler Handler, bool Hidden, int MaxInbound)> _handlers = new();
    private readonly ConcurrentDictionary<string, IReadOnlyList<Multiaddr>> _addressSources = new();
    private readonly ConcurrentDictionary<PeerId, List<Connection>> _conns = new();
    private readonly ConcurrentDictionary<PeerId, Task<Connection>> _pendingDials = new();
    private readonly ConcurrentDictionary<IPEndPoint, PunchExpectation> _punching = new();
    private readonly List<TcpListenerHandle> _listeners = [];
    private readonly CancellationTokenSource _stopping = new();
    private readonly List<Task> _loops = [];
    private int _pendingInbound;
    private int _connectionCount;
    private int _relayedCount;
    private int _disposed;

    public Libp2pHost(HostOptions options, ILoggerFactory? loggers = null, TimeProvider? time = null, P2PMetrics? metrics = null)
    {
        Options = options;
        Loggers = loggers ?? NullLoggerFactory.Instance;
        _log = Loggers.CreateLogger("Weft.P2P.Host");
        Time = time ?? TimeProvider.System;
        Metrics = metrics ?? new P2PMetrics();
        PeerId = options.Key.PeerId;
        _tcp = new TcpTransport();
        Identify = new IdentifyService(this);
    }

    public HostOptions Options { get; }
    public ILoggerFactory Loggers { get; }
    public TimeProvider Time { get; }
    public P2PMetrics Metrics { get; }
    public PeerId PeerId { get; }
    public PeerStore Peers { get; } = new();
    public IdentifyService Identify { get; } = null!;

    /// <summary>Raised when a connection is established (after the upgrade, before identify finishes).</summary>
    public event Action<Connection>? ConnectionOpened;

    /// <summary>Raised when a connection ends.</summary>
    public event Action<Connection>? ConnectionClosed;

    /// <summary>The addresses we actually listen on (ports resolved; wildcard expanded to interface addresses).</summary>
    public IReadOnlyList<Multiaddr> ListenAddresses { get; private set; } = [];

    /// <summary>What we tell peers in identify: listen addresses, announced ones, then those other services add (relay circuits, confirmed public addresses).</summary>
    public IReadOnlyList<Multiaddr> AdvertisedAddresses =>
        ListenAddresses.Concat(Options.AnnounceAddresses).Concat(_addressSources.OrderBy(kv => kv.Key, StringComparer.Ordinal).SelectMany(kv => kv.Value)).Distinct().ToList();

    /// <summary>Raised when <see cref="AdvertisedAddresses"/> changes through <see cref="SetAddresses"/>.</summary>
    public event Action? AddressesChanged;

    /// <summary>
    /// Replaces the addresses a service (named by <paramref name="source"/>, e.g. "relay", "autonat") adds to
    /// <see cref="AdvertisedAddresses"/>. A change is pushed to connected peers (identify push).
    /// </summary>
    public void SetAddresses(string source, IReadOnlyList<Multiaddr> addrs)
    {
        ArgumentException.ThrowIfNullOrEmpty(source);
        var list = addrs.Distinct().ToList();
        if (_addressSources.TryGetValue(source, out var old) && old.SequenceEqual(list)) return;
        if (list.Count == 0) _addressSources.TryRemove(source, out _);
        else _addressSources[source] = list;
        Identify?.OnLocalChange();
        try { AddressesChanged?.Invoke(); } catch (Exception ex) { Log.HandlerFailed(_log, "addresses-changed", source, ex.Message); }
    }

    /// <summary>
    /// How peers on direct connections see us (identify's observed address), most reported first: our NAT's
    /// public mapping when we are behind one. Not advertised by itself (AutoNAT confirms before that).
    /// </summary>
    public IReadOnlyList<Multiaddr> ObservedAddresses
    {
        get
        {
            var counts = new Dictionary<Multiaddr, int>();
            foreach (var c in Connections)
            {
                if (c.IsRelayed || Peers.Get(c.RemotePeer)?.ObservedUs is not { } o || o.IsCircuit) continue;
                var a = o.WithoutPeerId();
                counts[a] = counts.GetValueOrDefault(a) + 1;
            }
            return counts.OrderByDescending(kv => kv.Value).Select(kv => kv.Key).ToList();
        }
    }

    /// <summary>
    /// Dials relayed (<c>/p2p-circuit</c>) addresses for the swarm; set by the relay client. Null = such
    /// addresses are not dialable.
    /// </summary>
    public Func<Multiaddr, CancellationToken, Task<Connection>>? CircuitDialer { get; set; }

    /// <summary>Protocols with a handler (as announced in identify).</summary>
    public IReadOnlyList<string> Protocols => _handlers.Where(h => !h.Value.Hidden).Select(h => h.Key).Order(StringComparer.Ordinal).ToList();

    public int ConnectionCount => Volatile.Read(ref _connectionCount);

    /// <summary>
    /// Registers the handler for inbound streams of <paramref name="protocol"/>. At most
    /// <paramref name="maxInboundPerConnection"/> (default <see cref="ConnectionLimits.MaxInboundStreamsPerProtocol"/>)
    /// of its streams run at once on one connection; past that new ones are reset.
    /// </summary>
    public void Handle(string protocol, StreamHandler handler, bool hidden = false, int? maxInboundPerConnection = null)
    {
        if (string.IsNullOrEmpty(protocol) || protocol.Length > Wire.Multistream.MultistreamMessage.MaxProtocolIdLength)
            throw new ArgumentException("bad protocol id", nameof(protocol));
        if (maxInboundPerConnection is <= 0) throw new ArgumentOutOfRangeException(nameof(maxInboundPerConnection));
        _handlers[protocol] = (handler, hidden, maxInboundPerConnection ?? Options.Limits.MaxInboundStreamsPerProtocol);
        Identify?.OnLocalChange();
    }

    public void Unhandle(string protocol)
    {
        if (_handlers.TryRemove(protocol, out _)) Identify?.OnLocalChange();
    }

    /// <summary>Binds every listen address and starts accepting.</summary>
    public Task StartAsync(CancellationToken ct = default)
    {
        var bound = new List<Multiaddr>();
        foreach (var addr in Options.ListenAddresses)
        {
            var listener = _tcp.Listen(addr, Options.Limits.ListenBacklog, Options.ReusePort);
            _listeners.Add(listener);
            bound.AddRange(Expand(listener.EndPoint));
            _loops.Add(Task.Run(() => AcceptLoopAsync(listener)));
        }
        ListenAddresses = bound;
        foreach (var a in bound) Log.Listening(_log, $"{a}/p2p/{PeerId}");
        return Task.CompletedTask;
    }

    /// <summary>The local TCP endpoints we listen on (for binding dial sockets to the listen port).</summary>
    public IReadOnlyList<IPEndPoint> ListenEndPoints => _listeners.Select(l => l.EndPoint).ToList();

    private static IEnumerable<Multiaddr> Expand(IPEndPoint ep)
    {
        if (!ep.Address.Equals(IPAddress.Any) && !ep.Address.Equals(IPAddress.IPv6Any))
        {
            yield return Multiaddr.FromTcp(ep);
            yield break;
        }
        var addrs = new List<IPAddress>();
        try
        {
            foreach (var nic in NetworkInterface.GetAllNetworkInterfaces())
            {
                if (nic.OperationalStatus != OperationalStatus.Up && nic.NetworkInterfaceType != NetworkInterfaceType.Loopback) continue;
                foreach (var u in nic.GetIPProperties().UnicastAddresses)
                {
                    if (u.Address.AddressFamily != ep.AddressFamily) continue;
                    if (u.Address.IsIPv6LinkLocal) continue;
                    addrs.Add(u.Address);
                }
            }
        }
        catch (NetworkInformationException)
        {
            addrs.Add(ep.AddressFamily == AddressFamily.InterNetwork ? IPAddress.Loopback : IPAddress.IPv6Loopback);
        }
        foreach (var a in addrs.Distinct()) yield return Multiaddr.FromTcp(new IPEndPoint(a, ep.Port));
    }

    private async Task AcceptLoopAsync(TcpListenerHandle listener)
    {
        var ct = _stopping.Token;
        while (!ct.IsCancellationRequested)
        {
            RawConnection raw;
            try
            {
                raw = await listener.AcceptAsync(ct).ConfigureAwait(false);
            }
            catch (OperationCanceledException) { return; }
            catch (ObjectDisposedException) { return; }
            catch (SocketException ex) when (ex.SocketErrorCode is SocketError.ConnectionAborted or SocketError.ConnectionReset or SocketError.TooManyOpenSockets)
            {
                Log.AcceptLoopFailed(_log, listener.Address.ToString(), ex.Message);
                continue;
            }
            catch (Exception ex)
            {
                Log.AcceptLoopFailed(_log, listener.Address.ToString(), ex.Message);
                return;
            }

            if (Interlocked.Increment(ref _pendingInbound) > Options.Limits.MaxPendingInboundHandshakes)
            {
                Interlocked.Decrement(ref _pendingInbound);
                Log.LimitReached(_log, raw.RemoteAddress.ToString(), nameof(ConnectionLimits.MaxPendingInboundHandshakes), Options.Limits.MaxPendingInboundHandshakes);
                Metrics.HandshakeFailures.Add(1, new KeyValuePair<string, object?>("reason", "limit"));
                raw.Abort();
                await raw.DisposeAsync().ConfigureAwait(false);
                continue;
            }
            _ = Task.Run(() => HandleInboundAsync(raw));
        }
    }

    private async Task HandleInboundAsync(RawConnection raw)
    {
        Connection? conn = null;
        PunchExpectation? punch = null;
        try
        {
            // During a hole punch the peer's dial may reach our listener instead of meeting ours in a
            // simultaneous open; it then takes the role agreed for the punch, not the usual listener's one.
            punch = raw.RemoteAddress.TryGetTcpEndPoint(out var from) && from is not null && _punching.TryGetValue(from, out var p) ? p : null;
            punch?.OnInboundStarted();
            conn = await UpgradeCoreAsync(raw, punch?.Role ?? Direction.Inbound, punch?.Peer, _stopping.Token).ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            Metrics.HandshakeFailures.Add(1, new KeyValuePair<string, object?>("reason", Reason(ex)));
            if (ex is ProtocolViolationException pv) Log.InboundViolation(_log, raw.RemoteAddress.ToString(), pv.Protocol, pv.Detail);
            else if (ex is not OperationCanceledException || !_stopping.IsCancellationRequested) Log.InboundFailed(_log, raw.RemoteAddress.ToString(), ex.GetType().Name, ex.Message);
            raw.Abort();
            await raw.DisposeAsync().ConfigureAwait(false);
            punch?.OnInboundEnded(null);
            return;
        }
        finally
        {
            Interlocked.Decrement(ref _pendingInbound);
        }
        if (!TryAdd(conn, out var why))
        {
            Log.LimitReached(_log, raw.RemoteAddress.ToString(), why, 0);
            await conn.DisposeAsync().ConfigureAwait(false);
            punch?.OnInboundEnded(null);
            return;
        }
        punch?.OnInboundEnded(conn);
    }

    private static string Reason(Exception ex) => ex switch
    {
        ProtocolViolationException pv => pv.Protocol,
        TimeoutException => "timeout",
        EndOfStreamException => "eof",
        OperationCanceledException => "canceled",
        _ => "io",
    };

    /// <summary>pnet → multistream → Noise → (early muxer | multistream) → yamux, each step under a timeout.</summary>
    private async Task<Connection> UpgradeCoreAsync(RawConnection raw, Direction dir, PeerId? expected, CancellationToken ct)
    {
        var outbound = dir == Direction.Outbound;
        var step = Options.Timeouts.HandshakeStep;
        IDuplexPipe pipe = raw.Transport;
        if (Options.PrivateNetworkKey is { } psk)
            pipe = await Step("pnet nonce exchange", c => PnetProtector.ProtectAsync(pipe, psk, step, c), ct).ConfigureAwait(false);

        try
        {
            await Step("security negotiation", c => outbound
                ? MultistreamSelect.SelectOutboundAsync(pipe, [NoiseSecurity.ProtocolId], c)
                : MultistreamSelect.SelectInboundAsync(pipe, p => p == NoiseSecurity.ProtocolId, () => [NoiseSecurity.ProtocolId], c), ct).ConfigureAwait(false);
        }
        catch (ProtocolViolationException ex) when (Options.PrivateNetworkKey is not null)
        {
            throw new ProtocolViolationException(ex.Protocol, ex.Detail + " — the peer's PSK differs from ours, or it is not in this private network", ex);
        }
        catch (TimeoutException ex) when (Options.PrivateNetworkKey is not null)
        {
            throw new TimeoutException(ex.Message + " — the peer's PSK may differ from ours", ex);
        }
        catch (Exception ex) when (Options.PrivateNetworkKey is not null && ex is IOException or SocketException)
        {
            throw new ProtocolViolationException("pnet", $"the peer closed the connection during negotiation ({ex.Message}) — its PSK probably differs from ours", ex);
        }

        var noiseOptions = Options.Noise with { HandshakeTimeout = step };
        var secure = outbound
            ? await NoiseSecurity.SecureOutboundAsync(pipe, Options.Key, expected, noiseOptions, Loggers.CreateLogger("Weft.P2P.Noise"), ct).ConfigureAwait(false)
            : await NoiseSecurity.SecureInboundAsync(pipe, Options.Key, noiseOptions, Loggers.CreateLogger("Weft.P2P.Noise"), ct).ConfigureAwait(false);
        try
        {
            if (secure.RemotePeer == PeerId)
                throw new ProtocolViolationException("noise", "the peer has our own peer ID (dialled ourselves?)");
            var muxer = secure.EarlyMuxer;
            if (muxer is null)
            {
                muxer = await Step("muxer negotiation", c => outbound
                    ? MultistreamSelect.SelectOutboundAsync(secure, [YamuxProtocolId], c)
                    : MultistreamSelect.SelectInboundAsync(secure, p => p == YamuxProtocolId, () => [YamuxProtocolId], c), ct).ConfigureAwait(false);
            }
            else if (muxer != YamuxProtocolId)
            {
                throw new ProtocolViolationException("noise", $"the peer agreed on muxer '{muxer}' that we do not support");
            }
            var session = new YamuxSession(secure, outbound, Options.Yamux, Loggers.CreateLogger("Weft.P2P.Yamux"), Time);
            return new Connection(this, raw, secure, session, dir, muxer);
        }
        catch
        {
            await secure.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    private async Task<T> Step<T>(string name, Func<CancellationToken, Task<T>> action, CancellationToken ct)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        cts.CancelAfter(Options.Timeouts.HandshakeStep);
        try
        {
            return await action(cts.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            throw new TimeoutException($"{name} timed out after {Options.Timeouts.HandshakeStep.TotalSeconds:0.###} s");
        }
    }

    private bool TryAdd(Connection conn, out string why)
    {
        why = "";
        if (Volatile.Read(ref _disposed) != 0) { why = "host stopping"; return false; }
        if (Interlocked.Increment(ref _connectionCount) > Options.Limits.MaxConnections)
        {
            Interlocked.Decrement(ref _connectionCount);
            why = nameof(ConnectionLimits.MaxConnections);
            return false;
        }
        if (conn.IsRelayed && Interlocked.Increment(ref _relayedCount) > Options.Limits.MaxRelayedConnections)
        {
            Interlocked.Decrement(ref _relayedCount);
            Interlocked.Decrement(ref _connectionCount);
            why = nameof(ConnectionLimits.MaxRelayedConnections);
            return false;
        }
        var list = _conns.GetOrAdd(conn.RemotePeer, _ => []);
        lock (list)
        {
            if (list.Count >= Options.Limits.MaxConnectionsPerPeer)
            {
                Interlocked.Decrement(ref _connectionCount);
                if (conn.IsRelayed) Interlocked.Decrement(ref _relayedCount);
                why = nameof(ConnectionLimits.MaxConnectionsPerPeer);
                return false;
            }
            list.Add(conn);
        }
        Metrics.ConnectionsOpened.Add(1, new KeyValuePair<string, object?>("direction", conn.Direction == Direction.Inbound ? "inbound" : "outbound"));
        Log.ConnectionEstablished(_log, conn.Direction.ToString(), conn.RemotePeer.ToString(), conn.RemoteAddress.ToString(), conn.Security, conn.Muxer);
        Peers.AddAddresses(conn.RemotePeer, conn.Direction == Direction.Outbound ? [conn.RemoteAddress] : [], Time.GetUtcNow());
        conn.Session.Start();
        _ = Task.Run(() => AcceptStreamsAsync(conn));
        _ = conn.Completion.ContinueWith(t => OnClosedAsync(conn, t), TaskScheduler.Default).Unwrap();
        _ = Task.Run(() => Identify.IdentifyAsync(conn, _stopping.Token));
        try { ConnectionOpened?.Invoke(conn); } catch (Exception ex) { Log.HandlerFailed(_log, "connection-opened", conn.RemotePeer.ToString(), ex.Message); }
        return true;
    }

    private async Task OnClosedAsync(Connection conn, Task completion)
    {
        if (_conns.TryGetValue(conn.RemotePeer, out var list))
        {
            bool removed;
            lock (list) removed = list.Remove(conn);
            if (removed)
            {
                Interlocked.Decrement(ref _connectionCount);
                if (conn.IsRelayed) Interlocked.Decrement(ref _relayedCount);
            }
            lock (list) if (list.Count == 0) _conns.TryRemove(new KeyValuePair<PeerId, List<Connection>>(conn.RemotePeer, list));
        }
        var reason = completion.Exception?.GetBaseException();
        if (reason is ProtocolViolationException pv) Log.ConnectionViolation(_log, conn.RemotePeer.ToString(), pv.Protocol, pv.Detail);
        else Log.ConnectionClosed(_log, conn.RemotePeer.ToString(), reason?.Message ?? "closed");
        Metrics.ConnectionsClosed.Add(1);
        await conn.DisposeAsync().ConfigureAwait(false);
        try { ConnectionClosed?.Invoke(conn); } catch (Exception ex) { Log.HandlerFailed(_log, "connection-closed", conn.RemotePeer.ToString(), ex.Message); }
    }

    private async Task AcceptStreamsAsync(Connection conn)
    {
        while (true)
        {
            YamuxStream? stream;
            try
            {
                stream = await conn.Session.AcceptStreamAsync(_stopping.Token).ConfigureAwait(false);
            }
            catch (Exception)
            {
                return;
            }
            if (stream is null) return;
            _ = Task.Run(() => HandleStreamAsync(conn, stream));
        }
    }

    private async Task HandleStreamAsync(Connection conn, YamuxStream stream)
    {
        string protocol;
        using (var cts = CancellationTokenSource.CreateLinkedTokenSource(_stopping.Token))
        {
            cts.CancelAfter(Options.Timeouts.StreamNegotiation);
            try
            {
                protocol = await MultistreamSelect.SelectInboundAsync(stream, p => _handlers.ContainsKey(p), () => Protocols, cts.Token).ConfigureAwait(false);
            }
            catch (Exception ex)
            {
                Log.StreamNegotiationFailed(_log, conn.RemotePeer.ToString(), ex is OperationCanceledException ? "timed out" : ex.Message);
                stream.Reset();
                return;
            }
        }
        if (!_handlers.TryGetValue(protocol, out var h))
        {
            stream.Reset();
            return;
        }
        var active = conn.ActiveInbound.AddOrUpdate(protocol, 1, (_, n) => n + 1);
        try
        {
            if (active > h.MaxInbound)
            {
                Log.LimitReached(_log, conn.RemotePeer.ToString(), nameof(ConnectionLimits.MaxInboundStreamsPerProtocol) + " " + protocol, h.MaxInbound);
                stream.Reset();
                return;
            }
            stream.Protocol = protocol;
            Metrics.StreamsOpened.Add(1, new("protocol", protocol), new("direction", "inbound"));
            await h.Handler(new IncomingStream(stream, conn, protocol), _stopping.Token).ConfigureAwait(false);
            await stream.DisposeAsync().ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            Log.HandlerFailed(_log, protocol, conn.RemotePeer.ToString(), ex.Message);
            stream.Reset();
        }
        finally
        {
            conn.ActiveInbound.AddOrUpdate(protocol, 0, (_, n) => n - 1);
        }
    }

    /// <summary>
    /// Upgrades an already connected byte stream (a relayed circuit, say) exactly as a TCP connection is
    /// upgraded — pnet, Noise, muxer, yamux, each step under its timeout — and adds the result to the
    /// swarm. On failure the stream is aborted and the error rethrown.
    /// </summary>
    public Task<Connection> UpgradeAsync(RawConnection raw, Direction direction, PeerId? expected, CancellationToken ct = default) =>
        UpgradeAsync(raw, direction, expected, null, ct);

    /// <summary>As <see cref="UpgradeAsync(RawConnection, Direction, PeerId?, CancellationToken)"/>; <paramref name="beforeAdd"/> sees the connection before anyone else does.</summary>
    public async Task<Connection> UpgradeAsync(RawConnection raw, Direction direction, PeerId? expected, Action<Connection>? beforeAdd, CancellationToken ct = default)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        Connection conn;
        try
        {
            conn = await UpgradeCoreAsync(raw, direction, expected, ct).ConfigureAwait(false);
        }
        catch
        {
            raw.Abort();
            await raw.DisposeAsync().ConfigureAwait(false);
            throw;
        }
        beforeAdd?.Invoke(conn);
        if (!TryAdd(conn, out var why))
        {
            await conn.DisposeAsync().ConfigureAwait(false);
            throw new InvalidOperationException($"connection refused locally: {why}");
        }
        return conn;
    }

    /// <summary>An open connection to <paramref name="peer"/>, if any; a direct one is preferred to a relayed one.</summary>
    public Connection? GetConnection(PeerId peer)
    {
        if (!_conns.TryGetValue(peer, out var list)) return null;
        lock (list)
        {
            Connection? relayed = null;
            foreach (var c in list)
            {
                if (c.IsClosed) continue;
                if (!c.IsRelayed) return c;
                relayed ??= c;
            }
            return relayed;
        }
    }

    /// <summary>An open direct (not relayed) connection to <paramref name="peer"/>, if any.</summary>
    public Connection? GetDirectConnection(PeerId peer) => GetConnection(peer) is { IsRelayed: false } c ? c : null;

    /// <summary>Connections open to <paramref name="peer"/>.</summary>
    public IReadOnlyList<Connection> ConnectionsTo(PeerId peer)
    {
        if (!_conns.TryGetValue(peer, out var list)) return [];
        lock (list) return list.Where(c => !c.IsClosed).ToList();
    }

    public int RelayedConnectionCount => Volatile.Read(ref _relayedCount);

    public IReadOnlyList<Connection> Connections => _conns.Values.SelectMany(l => { lock (l) return l.ToList(); }).ToList();

    /// <summary>Dials an address. With a /p2p/ID suffix the peer is checked and an existing connection reused.</summary>
    public Task<Connection> DialAsync(Multiaddr addr, CancellationToken ct = default)
    {
        var peer = addr.PeerId;
        if (peer is not null) return DialPeerAsync(peer, [addr], ct);
        if (addr.IsCircuit) throw new ArgumentException("a relayed address needs the target's /p2p/<id> at the end", nameof(addr));
        return DialOneAsync(addr, null, ct);
    }

    /// <summary>
    /// Dials <paramref name="addr"/> on a fresh TCP connection (never an existing one, never from the listen
    /// port), upgrades it, checks the peer is <paramref name="expected"/>, then closes it without adding it to
    /// the swarm. AutoNAT's dial-back: does this address reach that peer from outside?
    /// </summary>
    public async Task ProbeDialAsync(Multiaddr addr, PeerId expected, CancellationToken ct = default)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        if (!TcpTransport.CanHandle(addr)) throw new NotSupportedException($"no transport for {addr}");
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct, _stopping.Token);
        cts.CancelAfter(Options.Timeouts.Dial);
        RawConnection? raw = null;
        try
        {
            raw = await _tcp.DialAsync(addr.WithoutPeerId(), null, cts.Token).ConfigureAwait(false);
            var conn = await UpgradeCoreAsync(raw, Direction.Outbound, expected, cts.Token).ConfigureAwait(false);
            await conn.DisposeAsync().ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            if (raw is not null) { raw.Abort(); await raw.DisposeAsync().ConfigureAwait(false); }
            throw new TimeoutException($"dial {addr} timed out after {Options.Timeouts.Dial.TotalSeconds:0.#} s");
        }
        catch
        {
            if (raw is not null) { raw.Abort(); await raw.DisposeAsync().ConfigureAwait(false); }
            throw;
        }
    }

    /// <summary>
    /// Until disposed, connections reaching our listener from <paramref name="from"/> are upgraded with
    /// <paramref name="role"/> and must be <paramref name="peer"/>: a hole punch whose peer's SYN met our
    /// listener rather than our own SYN.
    /// </summary>
    public PunchExpectation ExpectPunch(PeerId peer, IEnumerable<IPEndPoint> from, Direction role)
    {
        var added = new List<IPEndPoint>();
        PunchExpectation? e = null;
        e = new PunchExpectation(peer, role, () => { foreach (var ep in added) _punching.TryRemove(new KeyValuePair<IPEndPoint, PunchExpectation>(ep, e!)); });
        foreach (var ep in from.Distinct())
            if (_punching.TryAdd(ep, e)) added.Add(ep);
        return e;
    }

    /// <summary>
    /// Opens a TCP connection to <paramref name="addr"/> from our listen port (SO_REUSEPORT), for a hole
    /// punch's simultaneous open. Not upgraded: the caller chooses the handshake role and calls
    /// <see cref="UpgradeAsync"/>.
    /// </summary>
    public async Task<RawConnection> DialRawFromListenPortAsync(Multiaddr addr, CancellationToken ct = default)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        if (!addr.TryGetTcpEndPoint(out var ep) || ep is null) throw new NotSupportedException($"not a TCP address: {addr}");
        var l = ListenerFor(ep) ?? throw new InvalidOperationException($"no {ep.AddressFamily} listener to dial {ep} from");
        if (!Options.ReusePort) throw new InvalidOperationException("dialling from the listen port needs HostOptions.ReusePort");
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct, _stopping.Token);
        return await _tcp.DialAsync(addr.WithoutPeerId(), new IPEndPoint(l.Address, l.Port), cts.Token).ConfigureAwait(false);
    }

    /// <summary>
    /// A connection to <paramref name="peer"/>: the existing one, a dial already under way, or a new
    /// dial of all its addresses at once (first to finish wins). <paramref name="delay"/>, when given, says how
    /// long each address waits before it is dialled (a dial plan); by default relayed addresses wait
    /// <see cref="HostTimeouts.RelayDialDelay"/> when there are direct ones.
    /// </summary>
    public async Task<Connection> DialPeerAsync(PeerId peer, IReadOnlyList<Multiaddr> addrs, CancellationToken ct = default, Func<Multiaddr, TimeSpan>? delay = null)
    {
        if (peer == PeerId) throw new ArgumentException("cannot dial ourselves", nameof(peer));
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        var known = addrs.Count > 0 ? addrs : Peers.Get(peer)?.Addresses ?? [];
        // An open connection is reused, except a relayed one when we are asked to dial direct addresses (an upgrade).
        if (GetConnection(peer) is { } existing && (!existing.IsRelayed || addrs.Count == 0 || addrs.All(a => a.IsCircuit))) return existing;
        var tcs = new TaskCompletionSource<Connection>(TaskCreationOptions.RunContinuationsAsynchronously);
        var pending = _pendingDials.GetOrAdd(peer, tcs.Task);
        if (pending == tcs.Task)
        {
            _ = Task.Run(async () =>
            {
                try { tcs.TrySetResult(await DialManyAsync(peer, known, delay).ConfigureAwait(false)); }
                catch (Exception ex) { tcs.TrySetException(ex); }
                finally { _pendingDials.TryRemove(new KeyValuePair<PeerId, Task<Connection>>(peer, tcs.Task)); }
            });
        }
        return await pending.WaitAsync(ct).ConfigureAwait(false);
    }

    private async Task<Connection> DialManyAsync(PeerId peer, IReadOnlyList<Multiaddr> addrs, Func<Multiaddr, TimeSpan>? delay)
    {
        var started = Time.GetTimestamp();
        var circuitDialer = CircuitDialer;
        bool Dialable(Multiaddr a) => a.IsCircuit ? circuitDialer is not null && a.Decapsulate(MultiaddrProtocol.P2PCircuit)?.PeerId is not null : TcpTransport.CanHandle(a);
        var candidates = addrs.Where(Dialable).Select(a => a.WithoutPeerId()).Distinct().ToList();
        var errors = new List<(Multiaddr, Exception)>();
        foreach (var a in addrs.Where(a => !Dialable(a)))
            errors.Add((a, new NotSupportedException(a.IsCircuit ? "relayed address, but no relay client (or no relay peer ID in it)" : "no transport for this address")));
        if (candidates.Count == 0) throw new DialFailedException(peer, errors);
        var anyDirect = candidates.Any(a => !a.IsCircuit);

        using var cancelRest = CancellationTokenSource.CreateLinkedTokenSource(_stopping.Token);
        using var gate = new SemaphoreSlim(Options.Limits.MaxConcurrentDialsPerPeer);
        var tasks = candidates.Select(async a =>
        {
            var full = a.Encapsulate("/p2p/" + peer);
            var wait = delay?.Invoke(full) ?? TimeSpan.Zero;
            if (wait > TimeSpan.Zero) await Task.Delay(wait, Time, cancelRest.Token).ConfigureAwait(false);
            if (a.IsCircuit)
            {
                // Direct addresses get a head start; a relay is the fallback (and costs the relay bandwidth).
                if (anyDirect && delay is null) await Task.Delay(Options.Timeouts.RelayDialDelay, Time, cancelRest.Token).ConfigureAwait(false);
                using var cts = CancellationTokenSource.CreateLinkedTokenSource(cancelRest.Token);
                cts.CancelAfter(Options.Timeouts.Dial);
                return await circuitDialer!(full, cts.Token).ConfigureAwait(false);
            }
            await gate.WaitAsync(cancelRest.Token).ConfigureAwait(false);
            try { return await DialOneAsync(full, peer, cancelRest.Token).ConfigureAwait(false); }
            finally { gate.Release(); }
        }).ToList();
        var remaining = tasks.ToList();
        Connection? winner = null;
        while (remaining.Count > 0)
        {
            var done = await Task.WhenAny(remaining).ConfigureAwait(false);
            remaining.Remove(done);
            var i = tasks.IndexOf(done);
            if (done.IsCompletedSuccessfully)
            {
                if (winner is null)
                {
                    winner = done.Result;
                    cancelRest.Cancel();
                }
                else
                {
                    await done.Result.DisposeAsync().ConfigureAwait(false);
                }
            }
            else if (winner is null)
            {
                errors.Add((candidates[i], done.Exception?.GetBaseException() ?? new OperationCanceledException()));
            }
        }
        if (winner is null) throw new DialFailedException(peer, errors);
        Metrics.DialDuration.Record(Time.GetElapsedTime(started).TotalSeconds);
        return winner;
    }

    private async Task<Connection> DialOneAsync(Multiaddr addr, PeerId? expected, CancellationToken ct)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct, _stopping.Token);
        cts.CancelAfter(Options.Timeouts.Dial);
        RawConnection? raw = null;
        try
        {
            var bind = Options.ReusePort ? PickLocalBind(addr) : null;
            try
            {
                raw = await _tcp.DialAsync(addr.WithoutPeerId(), bind, cts.Token).ConfigureAwait(false);
            }
            catch (SocketException ex) when (bind is not null && ex.SocketErrorCode is SocketError.AddressNotAvailable or SocketError.AddressAlreadyInUse)
            {
                // An old connection from our listen port to this address still holds the 4-tuple (a peer that vanished
                // leaves ours closing for minutes): dial from an ephemeral port instead.
                raw = await _tcp.DialAsync(addr.WithoutPeerId(), null, cts.Token).ConfigureAwait(false);
            }
            var conn = await UpgradeCoreAsync(raw, Direction.Outbound, expected, cts.Token).ConfigureAwait(false);
            if (!TryAdd(conn, out var why))
            {
                await conn.DisposeAsync().ConfigureAwait(false);
                throw new InvalidOperationException($"connection refused locally: {why}");
            }
            return conn;
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested && !_stopping.IsCancellationRequested)
        {
            if (raw is not null) { raw.Abort(); await raw.DisposeAsync().ConfigureAwait(false); }
            var ex = new TimeoutException($"dial {addr} timed out after {Options.Timeouts.Dial.TotalSeconds:0.#} s");
            Log.DialFailed(_log, addr.ToString(), ex.Message);
            throw ex;
        }
        catch (Exception ex)
        {
            if (raw is not null) { raw.Abort(); await raw.DisposeAsync().ConfigureAwait(false); }
            Log.DialFailed(_log, addr.ToString(), ex.Message);
            throw;
        }
    }

    /// <summary>Binds a dial to our listen port of the same family when reuse-port is on (so NATs see one mapping).</summary>
    private IPEndPoint? PickLocalBind(Multiaddr target)
    {
        if (!target.TryGetTcpEndPoint(out var ep) || ep is null) return null;
        if (IPAddress.IsLoopback(ep.Address)) return null;
        var l = ListenerFor(ep);
        return l is null ? null : new IPEndPoint(l.Address, l.Port);
    }

    /// <summary>
    /// The listen endpoint to dial <paramref name="target"/> from: same family, never a loopback one for a remote
    /// target (the kernel cannot send from 127.0.0.1 to another host), preferring one in the target's /24 (or /64).
    /// </summary>
    private IPEndPoint? ListenerFor(IPEndPoint target)
    {
        var remote = !IPAddress.IsLoopback(target.Address);
        var usable = _listeners.Select(x => x.EndPoint)
            .Where(x => x.AddressFamily == target.AddressFamily && !(remote && IPAddress.IsLoopback(x.Address)))
            .ToList();
        static bool SameNet(IPAddress a, IPAddress b)
        {
            var x = a.GetAddressBytes();
            var y = b.GetAddressBytes();
            var n = x.Length == 4 ? 3 : 8;
            return x.AsSpan(0, n).SequenceEqual(y.AsSpan(0, n));
        }
        return usable.FirstOrDefault(x => !x.Address.Equals(IPAddress.Any) && !x.Address.Equals(IPAddress.IPv6Any) && SameNet(x.Address, target.Address))
            ?? usable.FirstOrDefault();
    }

    /// <summary>Opens a stream to a peer (dialling if needed) for one of the protocols.</summary>
    public async Task<(YamuxStream Stream, Connection Connection)> NewStreamAsync(Multiaddr addr, string protocol, CancellationToken ct = default)
    {
        var conn = await DialAsync(addr, ct).ConfigureAwait(false);
        return (await conn.OpenStreamAsync(protocol, ct).ConfigureAwait(false), conn);
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        _stopping.Cancel();
        foreach (var l in _listeners) l.Dispose();
        foreach (var c in Connections)
        {
            try { await c.Session.GoAwayAsync().ConfigureAwait(false); } catch (Exception) { /* closing anyway */ }
            await c.DisposeAsync().ConfigureAwait(false);
        }
        try { await Task.WhenAll(_loops).ConfigureAwait(false); } catch (Exception) { /* loops end on cancel */ }
        _tcp.Dispose();
        _stopping.Dispose();
    }
}
