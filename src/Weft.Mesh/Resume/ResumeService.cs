using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using Microsoft.Extensions.Logging;
using MeshDialer = Weft.Mesh.Paths.MeshDialer;
using TunnelService = Weft.Mesh.Tunnel.TunnelService;
using TunnelRefusedException = Weft.Mesh.Tunnel.TunnelRefusedException;
using BridgeCounters = Weft.Mesh.Tunnel.BridgeCounters;
using Weft.P2P.Host;
using Weft.P2P.IO;
using Weft.P2P.Multistream;
using Weft.P2P.Yamux;
using Weft.Wire.Identity;
using Weft.Wire.Resume;
using Weft.Wire.Tunnel;
using ProtocolViolationException = Weft.Wire.ProtocolViolationException;

namespace Weft.Mesh.Resume;

/// <summary>The resumable tunnel's instruments (meter Weft.Mesh.Resume).</summary>
public sealed class ResumeMetrics : IDisposable
{
    private readonly Meter _meter;

    public ResumeMetrics(Func<long> sessions, Func<long> buffered, object? scope = null)
    {
        _meter = new Meter("Weft.Mesh.Resume", null, null, scope);
        Resets = _meter.CreateCounter<long>("weft_resume_resets", description: "resumable connections reset, by reason");
        PathLosses = _meter.CreateCounter<long>("weft_resume_path_losses", description: "times the stream under a resumable connection died");
        Moves = _meter.CreateCounter<long>("weft_resume_moves", description: "resumable connections moved to another stream, by cause (better: this side moved it to a better path; resumed: the other side resumed it here after its stream died)");
        Stall = _meter.CreateHistogram<double>("weft_resume_stall_seconds", "s", "time a resumable connection spent without a stream");
        _meter.CreateObservableGauge("weft_resume_sessions", sessions, description: "resumable connections open");
        _meter.CreateObservableGauge("weft_resume_buffered_bytes", buffered, "By", "bytes sent but not yet acknowledged, all connections");
    }

    public Counter<long> Resets { get; }
    public Counter<long> PathLosses { get; }
    public Counter<long> Moves { get; }
    public Histogram<double> Stall { get; }

    public void RecordStall(TimeSpan t) => Stall.Record(t.TotalSeconds);

    public void Dispose() => _meter.Dispose();
}

/// <summary>A resumable tunnel opened to an endpoint on another node, not yet carrying a socket.</summary>
public sealed class ResumableConnection
{
    internal ResumableConnection(ResumeService owner, YamuxStream stream, Connection connection, byte[] id, PeerId peer, string node, IPEndPoint target)
    {
        Owner = owner;
        Stream = stream;
        Connection = connection;
        Id = id;
        Peer = peer;
        Node = node;
        Target = target;
    }

    internal ResumeService Owner { get; }
    internal YamuxStream Stream { get; }
    internal Connection Connection { get; }
    internal byte[] Id { get; }
    public PeerId Peer { get; }
    public string Node { get; }
    public IPEndPoint Target { get; }
    public bool IsRelayed => Connection.IsRelayed;

    /// <summary>Carries <paramref name="socket"/> until both directions finished (or throws with why it was reset).</summary>
    public Task RunAsync(Socket socket, CancellationToken ct) => Owner.RunClientAsync(this, socket, null, ct);

    /// <summary>The same, counting the bytes read from and written to <paramref name="socket"/> in <paramref name="counters"/>.</summary>
    public Task RunAsync(Socket socket, BridgeCounters counters, CancellationToken ct) => Owner.RunClientAsync(this, socket, counters, ct);
}

/// <summary>
/// Weft's resumable tunnel, <see cref="ResumeHello.ProtocolId"/>: proxied TCP connections that survive the death of
/// the path under them (a relay dying) and move to a better one (a direct path after a hole punch) without a reset.
/// EdgeMesh peers do not speak it: <see cref="OpenAsync"/> then returns null and the caller uses the plain tunnel.
/// </summary>
public sealed class ResumeService : IDisposable
{
    private readonly Libp2pHost _host;
    private readonly TunnelService _tunnel;
    private readonly MeshDialer _dialer;
    private readonly ILogger _log;
    private readonly ConcurrentDictionary<string, ResumableSession> _sessions = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<PeerId, PeerBudget> _budgets = new();
    private readonly CancellationTokenSource _stop = new();

    private sealed class PeerBudget
    {
        public long Used;
        public int Sessions;
        public TaskCompletionSource Changed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    private ResumeService(Libp2pHost host, TunnelService tunnel, MeshDialer dialer, ResumeOptions options, ILogger log)
    {
        _host = host;
        _tunnel = tunnel;
        _dialer = dialer;
        Options = options;
        _log = log;
        Metrics = new ResumeMetrics(() => _sessions.Count, () => _budgets.Values.Sum(b => Interlocked.Read(ref b.Used)), scope: host);
    }

    public ResumeOptions Options { get; }
    public ResumeMetrics Metrics { get; }
    internal TimeProvider Time => _host.Time;

    /// <summary>Resumable connections open now.</summary>
    public int Count => _sessions.Count;

    /// <summary>Connections resumed on a new stream after their path died (client side).</summary>
    public long Resumed => Interlocked.Read(ref _resumed);

    /// <summary>Connections moved to a better path (client side).</summary>
    public long Moved => Interlocked.Read(ref _moved);

    private long _resumed, _moved;

    /// <summary>Raised (client side) when a connection moved to a better path, with the new connection.</summary>
    public event Action<Connection>? ConnectionMoved;

    public static ResumeService Register(Libp2pHost host, TunnelService tunnel, MeshDialer dialer, ResumeOptions options, ILogger log, bool serve = true)
    {
        var s = new ResumeService(host, tunnel, dialer, options, log);
        if (serve) host.Handle(ResumeHello.ProtocolId, s.HandleAsync, maxInboundPerConnection: options.MaxSessionsPerPeer);
        _ = Task.Run(() => s.MigrateLoopAsync(s._stop.Token));
        return s;
    }

    public void Dispose()
    {
        _host.Unhandle(ResumeHello.ProtocolId);
        _stop.Cancel();
        foreach (var s in _sessions.Values) s.Reset("the agent is stopping", sendReset: true);
        Metrics.Dispose();
    }

    // ------------------------------------------------------------------ budgets

    internal bool HasPeerRoom(PeerId peer, long more) =>
        !_budgets.TryGetValue(peer, out var b) || Interlocked.Read(ref b.Used) + more <= Options.ResendBufferBytesPerPeer;

    internal Task PeerRoomChanged(PeerId peer) => _budgets.GetOrAdd(peer, _ => new PeerBudget()).Changed.Task;

    internal void AddPeerBytes(PeerId peer, long delta)
    {
        var b = _budgets.GetOrAdd(peer, _ => new PeerBudget());
        Interlocked.Add(ref b.Used, delta);
        if (delta < 0)
        {
            var old = Interlocked.Exchange(ref b.Changed, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));
            old.TrySetResult();
        }
    }

    private bool TakeSession(PeerId peer)
    {
        var b = _budgets.GetOrAdd(peer, _ => new PeerBudget());
        if (_sessions.Count >= Options.MaxSessions) return false;
        if (Interlocked.Increment(ref b.Sessions) <= Options.MaxSessionsPerPeer) return true;
        Interlocked.Decrement(ref b.Sessions);
        return false;
    }

    internal void Remove(ResumableSession s)
    {
        if (_sessions.TryRemove(new KeyValuePair<string, ResumableSession>(s.IdText, s)) && _budgets.TryGetValue(s.Peer, out var b))
            Interlocked.Decrement(ref b.Sessions);
    }

    // ------------------------------------------------------------------ client

    /// <summary>
    /// Opens a resumable tunnel to <paramref name="target"/> on node <paramref name="node"/>. Null when the peer does
    /// not speak the protocol (an EdgeMesh agent): use the plain tunnel. Throws <see cref="TunnelRefusedException"/>
    /// when the peer cannot reach or refuses the endpoint.
    /// </summary>
    public async Task<ResumableConnection?> OpenAsync(PeerId peer, string node, IPEndPoint target, CancellationToken ct)
    {
        if (!TakeSession(peer)) throw new TunnelRefusedException($"too many resumable connections (at most {Options.MaxSessions}, {Options.MaxSessionsPerPeer} to one node)");
        var taken = true;
        try
        {
            YamuxStream stream;
            Connection conn;
            try
            {
                (stream, _, conn) = await _dialer.OpenStreamAsync(peer, [ResumeHello.ProtocolId], ct).ConfigureAwait(false);
            }
            catch (ProtocolNotSupportedException)
            {
                return null;
            }
            var id = RandomNumberGenerator.GetBytes(ResumeHello.SessionIdLength);
            var target2 = new ProxyMessage { Type = ProxyMessageType.Connect, Protocol = "tcp", NodeName = node, Ip = target.Address.ToString(), Port = target.Port };
            try
            {
                var welcome = await HandshakeAsync(stream, new ResumeHello { Session = id, Kind = ResumeHelloKind.Open, Target = target2 }, ct).ConfigureAwait(false);
                if (welcome.Status != ResumeStatus.Ok)
                    throw new TunnelRefusedException($"{node} could not open tcp {target}: {welcome.Status} ({welcome.Reason})");
            }
            catch
            {
                stream.Reset();
                throw;
            }
            taken = false;
            return new ResumableConnection(this, stream, conn, id, peer, node, target);
        }
        finally
        {
            if (taken && _budgets.TryGetValue(peer, out var b)) Interlocked.Decrement(ref b.Sessions);
        }
    }

    private async Task<ResumeWelcome> HandshakeAsync(YamuxStream stream, ResumeHello hello, CancellationToken ct)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        cts.CancelAfter(Options.HandshakeTimeout);
        hello.WriteLengthPrefixedTo(stream.Output);
        await stream.Output.FlushAsync(cts.Token).ConfigureAwait(false);
        try
        {
            return (await stream.Input.ReadAsync<ResumeWelcome?>(ResumeWelcome.TryRead, cts.Token).ConfigureAwait(false))!;
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            throw new TimeoutException($"no answer to the resumable tunnel's hello within {Options.HandshakeTimeout.TotalSeconds:0.#} s");
        }
    }

    internal async Task RunClientAsync(ResumableConnection c, Socket socket, BridgeCounters? counters, CancellationToken ct)
    {
        var session = new ResumableSession(this, c.Id, c.Peer, c.Node, c.Target, isClient: true, socket, _log) { Counters = counters };
        _sessions[session.IdText] = session;
        session.Attach(c.Stream, c.Connection, 0);
        session.Start();
        using var reg = ct.Register(() => session.Reset("the proxy is stopping", sendReset: true));
        await session.Completion.ConfigureAwait(false);
    }

    /// <summary>
    /// Client side: attaches <paramref name="session"/> to a new stream (on <paramref name="conn"/>, or the best path).
    /// Null when that is done (attached, or reset because it cannot be resumed); otherwise why this attempt failed.
    /// </summary>
    internal async Task<string?> TryResumeAsync(ResumableSession session, Connection? conn, CancellationToken ct)
    {
        YamuxStream stream;
        Connection on;
        try
        {
            if (conn is not null)
            {
                stream = await conn.OpenStreamAsync(ResumeHello.ProtocolId, ct).ConfigureAwait(false);
                on = conn;
            }
            else
            {
                (stream, _, on) = await _dialer.OpenStreamAsync(session.Peer, [ResumeHello.ProtocolId], ct).ConfigureAwait(false);
            }
        }
        catch (Exception ex) when (!ct.IsCancellationRequested)
        {
            return ex.Message;
        }
        try
        {
            var received = session.Received;
            var welcome = await HandshakeAsync(stream, new ResumeHello { Session = session.Id, Kind = ResumeHelloKind.Resume, Received = (ulong)received }, ct).ConfigureAwait(false);
            switch (welcome.Status)
            {
                case ResumeStatus.Ok:
                    if (session.Attach(stream, on, (long)welcome.Received))
                    {
                        if (conn is null)
                        {
                            Interlocked.Increment(ref _resumed);
                            Log.Resumed(_log, session.IdText, session.Node, on.IsRelayed ? "relay" : "direct");
                        }
                        return null;
                    }
                    stream.Reset();
                    return null; // reset: the offsets did not meet
                default:
                    stream.Reset();
                    session.Reset($"cannot resume: {session.Node} answered {welcome.Status} ({welcome.Reason})", sendReset: false);
                    return null;
            }
        }
        catch (Exception ex) when (!ct.IsCancellationRequested)
        {
            stream.Reset();
            return ex.Message;
        }
    }

    /// <summary>Moves sessions on a relayed path to a direct one (after a hole punch) or to a clearly better relay.</summary>
    private async Task MigrateLoopAsync(CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(Options.MigrateCheckInterval, Time, ct).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            foreach (var s in _sessions.Values)
            {
                if (!s.IsClient || s.Connection is not { } current) continue;
                var best = _dialer.Best(s.Peer);
                if (best is null || best == current || best.IsClosed) continue;
                var better = current.IsRelayed && (!best.IsRelayed || best.Relay != current.Relay);
                if (!better) continue;
                try
                {
                    await MoveAsync(s, best, ct).ConfigureAwait(false);
                }
                catch (Exception ex) when (!ct.IsCancellationRequested)
                {
                    Log.MoveFailed(_log, s.IdText, ex.Message);
                }
            }
        }
    }

    private async Task MoveAsync(ResumableSession s, Connection to, CancellationToken ct)
    {
        var stream = await to.OpenStreamAsync(ResumeHello.ProtocolId, ct).ConfigureAwait(false);
        stream.Reset(); // only checks the new path takes the protocol before the move
        await s.DetachForMoveAsync().ConfigureAwait(false);
        var failure = await TryResumeAsync(s, to, ct).ConfigureAwait(false);
        if (failure is not null)
        {
            // The new path failed between the check and the move: fall back to whatever path works.
            failure = await TryResumeAsync(s, null, ct).ConfigureAwait(false);
            if (failure is not null) s.Reset($"no path to resume on after a move ({failure})", sendReset: false);
            return;
        }
        Interlocked.Increment(ref _moved);
        Metrics.Moves.Add(1, new KeyValuePair<string, object?>("cause", "better"));
        try { ConnectionMoved?.Invoke(to); } catch (Exception ex) { Log.MoveFailed(_log, s.IdText, "moved handler: " + ex.Message); }
        Log.Moved(_log, s.IdText, s.Node, to.IsRelayed ? "relay" : "direct");
    }

    // ------------------------------------------------------------------ server

    private async Task HandleAsync(IncomingStream s, CancellationToken ct)
    {
        var stream = s.Stream;
        var peer = s.Connection.RemotePeer;
        ResumeHello hello;
        using (var cts = CancellationTokenSource.CreateLinkedTokenSource(ct))
        {
            cts.CancelAfter(Options.HandshakeTimeout);
            try
            {
                hello = (await stream.Input.ReadAsync<ResumeHello?>(ResumeHello.TryRead, cts.Token).ConfigureAwait(false))!;
            }
            catch (ProtocolViolationException ex)
            {
                Log.BadHello(_log, peer.ToString(), ex.Detail);
                stream.Reset();
                return;
            }
            catch (Exception ex) when (ex is OperationCanceledException or EndOfStreamException or IOException)
            {
                Log.BadHello(_log, peer.ToString(), ex is OperationCanceledException ? "no hello in time" : ex.Message);
                stream.Reset();
                return;
            }
        }

        ResumableSession? session;
        if (hello.Kind == ResumeHelloKind.Open)
        {
            var (target, problem) = _tunnel.CheckTarget(hello.Target!, "tcp");
            if (target is null || !TakeSession(peer))
            {
                await AnswerAsync(stream, ResumeStatus.Failed, 0, problem ?? "too many resumable connections", ct).ConfigureAwait(false);
                return;
            }
            var socket = await _tunnel.DialAsync(target, SocketType.Stream, ct).ConfigureAwait(false);
            if (socket is null)
            {
                if (_budgets.TryGetValue(peer, out var b)) Interlocked.Decrement(ref b.Sessions);
                await AnswerAsync(stream, ResumeStatus.Failed, 0, $"{target} cannot be reached", ct).ConfigureAwait(false);
                return;
            }
            session = new ResumableSession(this, hello.Session, peer, hello.Target!.NodeName ?? "", target, isClient: false, socket, _log)
            {
                Counters = _tunnel.NewCounters(peer, s.Connection.IsRelayed),
            };
            if (!_sessions.TryAdd(session.IdText, session))
            {
                socket.Dispose();
                await AnswerAsync(stream, ResumeStatus.Failed, 0, "session id in use", ct).ConfigureAwait(false);
                return;
            }
            await AnswerAsync(stream, ResumeStatus.Ok, 0, null, ct, complete: false).ConfigureAwait(false);
            session.Attach(stream, s.Connection, 0);
            session.Start();
        }
        else
        {
            if (!_sessions.TryGetValue(Convert.ToHexStringLower(hello.Session), out session) || session.Peer != peer)
            {
                await AnswerAsync(stream, ResumeStatus.UnknownSession, 0, "unknown session (this node restarted, or the session ended)", ct).ConfigureAwait(false);
                return;
            }
            var received = await session.DetachForMoveAsync().ConfigureAwait(false);
            await AnswerAsync(stream, ResumeStatus.Ok, (ulong)received, null, ct, complete: false).ConfigureAwait(false);
            if (!session.Attach(stream, s.Connection, (long)hello.Received)) return;
            Metrics.Moves.Add(1, new KeyValuePair<string, object?>("cause", "resumed"));
        }
        // The host disposes the stream when this handler returns: stay while the session lives on this stream (a move
        // or a lost path resets it, which completes it) and until the session's loops are done with it.
        await Task.WhenAny(session.Completion, stream.Completion).ConfigureAwait(false);
        await session.Released(stream).ConfigureAwait(false);
    }

    private static async Task AnswerAsync(YamuxStream stream, ResumeStatus status, ulong received, string? reason, CancellationToken ct, bool complete = true)
    {
        try
        {
            new ResumeWelcome { Status = status, Received = received, Reason = reason }.WriteLengthPrefixedTo(stream.Output);
            await stream.Output.FlushAsync(ct).ConfigureAwait(false);
            if (complete) await stream.Output.CompleteAsync().ConfigureAwait(false);
        }
        catch (Exception)
        {
            stream.Reset();
        }
    }
}
