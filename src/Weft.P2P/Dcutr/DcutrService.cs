using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Net;
using Microsoft.Extensions.Logging;
using Weft.P2P.Host;
using Weft.P2P.IO;
using Weft.P2P.Transport;
using Weft.P2P.Yamux;
using Weft.Wire.Dcutr;
using Weft.Wire.Identity;
using Weft.Wire.Multiformats;
using ProtocolViolationException = Weft.Wire.ProtocolViolationException;

namespace Weft.P2P.Dcutr;

/// <summary>Limits and timeouts of <see cref="DcutrService"/>.</summary>
public sealed record DcutrOptions
{
    /// <summary>Hole-punch rounds (CONNECT, CONNECT, SYNC, dial) the initiating side tries before staying relayed.</summary>
    public int MaxAttempts { get; init; } = 3;

    /// <summary>Waiting for the peer's CONNECT or SYNC on the DCUtR stream.</summary>
    public TimeSpan MessageTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>One simultaneous-open attempt: TCP connect plus the Noise/yamux upgrade.</summary>
    public TimeSpan PunchTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>After our own dials of a round failed, how long a connection from the peer reaching our listener may take to show up.</summary>
    public TimeSpan InboundGrace { get; init; } = TimeSpan.FromMilliseconds(300);

    /// <summary>Hole punches running at once on this host (either role).</summary>
    public int MaxConcurrentPunches { get; init; } = 8;

    /// <summary>Addresses of the peer dialled at once in one attempt.</summary>
    public int MaxDialsPerAttempt { get; init; } = 8;

    /// <summary>Start a hole punch by itself on every inbound relayed connection whose peer speaks DCUtR.</summary>
    public bool AutoUpgrade { get; init; } = true;
}

/// <summary>The outcome of one hole punch.</summary>
/// <param name="Peer">The peer on the other side of the relayed connection.</param>
/// <param name="Direct">The direct connection now in the swarm; null when every attempt failed.</param>
/// <param name="Attempts">Rounds tried.</param>
/// <param name="Elapsed">From the first CONNECT to the direct connection (or to giving up).</param>
/// <param name="Rtt">Round trip over the relayed connection as measured in the last round.</param>
/// <param name="Error">Why it failed, when it did.</param>
public sealed record DcutrResult(PeerId Peer, Connection? Direct, int Attempts, TimeSpan Elapsed, TimeSpan Rtt, string? Error)
{
    public bool Succeeded => Direct is not null;
}

/// <summary>
/// Direct Connection Upgrade through Relay (<c>/libp2p/dcutr</c>). The peer that received a relayed connection
/// (B) opens a DCUtR stream on it and sends CONNECT with its observed addresses; the other peer (A) answers
/// with its own; B times the round trip, sends SYNC, waits half of it and dials A's addresses while A dials
/// B's on receipt of SYNC. Both dial from their listen port, so each NAT sees the outgoing SYN before the
/// peer's arrives (TCP simultaneous open). B takes the Noise initiator role, A the responder. The direct
/// connection joins the swarm, where it is preferred for new streams; the relayed one stays as a fallback.
/// </summary>
public sealed class DcutrService : IDisposable
{
    public const string MeterName = "Weft.P2P.Dcutr";

    private readonly Libp2pHost _host;
    private readonly ILogger _log;
    private readonly SemaphoreSlim _punches;
    private readonly Meter _meter;
    private readonly Counter<long> _attempts;
    private readonly Counter<long> _results;
    private readonly Histogram<double> _toDirect;

    private DcutrService(Libp2pHost host, DcutrOptions options)
    {
        _host = host;
        Options = options;
        _log = host.Loggers.CreateLogger("Weft.P2P.Dcutr");
        _punches = new SemaphoreSlim(options.MaxConcurrentPunches);
        _meter = new Meter(MeterName);
        _attempts = _meter.CreateCounter<long>("weft_dcutr_attempts", description: "hole-punch rounds started, by role");
        _results = _meter.CreateCounter<long>("weft_dcutr_upgrades", description: "relayed connections upgraded or not, by result");
        _toDirect = _meter.CreateHistogram<double>("weft_dcutr_seconds", "s", "time from the first CONNECT to a direct connection");
    }

    public DcutrOptions Options { get; }

    /// <summary>Raised after each hole punch this host initiated, successful or not.</summary>
    public event Action<DcutrResult>? Completed;

    /// <summary>Installs the DCUtR handler and, with <see cref="DcutrOptions.AutoUpgrade"/>, punches on new inbound relayed connections.</summary>
    public static DcutrService Register(Libp2pHost host, DcutrOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(host);
        var svc = new DcutrService(host, options ?? new DcutrOptions());
        host.Handle(HolePunchMessage.ProtocolId, svc.RespondAsync);
        if (svc.Options.AutoUpgrade) host.ConnectionOpened += svc.OnConnectionOpened;
        return svc;
    }

    private void OnConnectionOpened(Connection conn)
    {
        if (!conn.IsRelayed || conn.Direction != Direction.Inbound) return;
        _ = Task.Run(async () =>
        {
            try
            {
                using var cts = new CancellationTokenSource(Options.MessageTimeout);
                var id = await conn.Identified.WaitAsync(cts.Token).ConfigureAwait(false);
                if (id is null || !id.Protocols.Contains(HolePunchMessage.ProtocolId)) return;
                await UpgradeAsync(conn, CancellationToken.None).ConfigureAwait(false);
            }
            catch (Exception ex)
            {
                Log.Failed(_log, conn.RemotePeer.ToString(), ex.Message);
            }
        });
    }

    /// <summary>
    /// Hole-punches a relayed connection as the initiator (B), up to <see cref="DcutrOptions.MaxAttempts"/>
    /// rounds. Returns at once with the existing direct connection if there is one.
    /// </summary>
    public async Task<DcutrResult> UpgradeAsync(Connection relayed, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(relayed);
        if (!relayed.IsRelayed) throw new ArgumentException("not a relayed connection", nameof(relayed));
        var peer = relayed.RemotePeer;
        var started = Stopwatch.GetTimestamp();
        if (_host.GetDirectConnection(peer) is { } already) return new DcutrResult(peer, already, 0, TimeSpan.Zero, TimeSpan.Zero, null);

        await _punches.WaitAsync(ct).ConfigureAwait(false);
        var rtt = TimeSpan.Zero;
        string? error = null;
        var attempt = 0;
        try
        {
            while (attempt < Options.MaxAttempts && !ct.IsCancellationRequested)
            {
                attempt++;
                _attempts.Add(1, new KeyValuePair<string, object?>("role", "initiator"));
                try
                {
                    var (theirs, measured, stream) = await ExchangeAsInitiatorAsync(relayed, ct).ConfigureAwait(false);
                    rtt = measured;
                    if (theirs.Count == 0)
                    {
                        stream.Reset();
                        error = "the peer sent no dialable address";
                        break;
                    }
                    // Expect the peer's SYN before it can have read SYNC: it may reach our listener first.
                    using var expect = Expect(peer, theirs, Direction.Outbound);
                    await SendSyncAsync(stream, ct).ConfigureAwait(false);
                    await Task.Delay(rtt / 2, _host.Time, ct).ConfigureAwait(false);
                    var direct = await PunchAsync(peer, theirs, Direction.Outbound, expect, ct).ConfigureAwait(false);
                    if (direct is not null) return Finish(new DcutrResult(peer, direct, attempt, Stopwatch.GetElapsedTime(started), rtt, null));
                    error = "no direct connection came up";
                }
                catch (OperationCanceledException) when (ct.IsCancellationRequested)
                {
                    throw;
                }
                catch (Exception ex)
                {
                    error = ex.Message;
                    if (relayed.IsClosed) break;
                }
                Log.AttemptFailed(_log, peer.ToString(), attempt, error ?? "");
            }
            return Finish(new DcutrResult(peer, null, attempt, Stopwatch.GetElapsedTime(started), rtt, error));
        }
        finally
        {
            _punches.Release();
        }
    }

    private DcutrResult Finish(DcutrResult r)
    {
        _results.Add(1, new KeyValuePair<string, object?>("result", r.Succeeded ? "direct" : "relayed"));
        if (r.Succeeded)
        {
            _toDirect.Record(r.Elapsed.TotalSeconds);
            Log.Upgraded(_log, r.Peer.ToString(), r.Direct!.RemoteAddress.ToString(), r.Attempts, r.Elapsed.TotalMilliseconds, r.Rtt.TotalMilliseconds);
        }
        else
        {
            Log.GaveUp(_log, r.Peer.ToString(), r.Attempts, r.Error ?? "");
        }
        try { Completed?.Invoke(r); } catch (Exception ex) { Log.Failed(_log, r.Peer.ToString(), "completed handler: " + ex.Message); }
        return r;
    }

    private PunchExpectation Expect(PeerId peer, IReadOnlyList<Multiaddr> addrs, Direction role) =>
        _host.ExpectPunch(peer, addrs.Select(a => a.TryGetTcpEndPoint(out var ep) ? ep : null).OfType<IPEndPoint>(), role);

    private async Task SendSyncAsync(YamuxStream stream, CancellationToken ct)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        cts.CancelAfter(Options.MessageTimeout);
        try
        {
            await SendAsync(stream, new HolePunchMessage { Type = HolePunchType.Sync }, cts.Token).ConfigureAwait(false);
            await stream.Output.CompleteAsync().ConfigureAwait(false);
            await stream.DisposeAsync().ConfigureAwait(false);
        }
        catch
        {
            stream.Reset();
            throw;
        }
    }

    /// <summary>B's side of a round: CONNECT out, CONNECT back (timed). SYNC is sent by the caller.</summary>
    private async Task<(IReadOnlyList<Multiaddr> Theirs, TimeSpan Rtt, YamuxStream Stream)> ExchangeAsInitiatorAsync(Connection relayed, CancellationToken ct)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        cts.CancelAfter(Options.MessageTimeout);
        var stream = await relayed.OpenStreamAsync(HolePunchMessage.ProtocolId, cts.Token).ConfigureAwait(false);
        try
        {
            var sent = Stopwatch.GetTimestamp();
            await SendAsync(stream, new HolePunchMessage { Type = HolePunchType.Connect, ObsAddrs = OurAddresses() }, cts.Token).ConfigureAwait(false);
            var answer = await ReadAsync(stream, cts.Token, ct).ConfigureAwait(false);
            var rtt = Stopwatch.GetElapsedTime(sent);
            if (answer.Type != HolePunchType.Connect)
                throw new ProtocolViolationException("dcutr", $"expected CONNECT, got {answer.Type}");
            return (Dialable(answer.ObsAddrs), rtt, stream);
        }
        catch
        {
            stream.Reset();
            throw;
        }
    }

    /// <summary>A's side: CONNECT in, CONNECT out, SYNC in, then dial at once.</summary>
    private async Task RespondAsync(IncomingStream s, CancellationToken ct)
    {
        var peer = s.Connection.RemotePeer;
        if (!s.Connection.IsRelayed)
        {
            Log.Failed(_log, peer.ToString(), "DCUtR stream on a direct connection");
            s.Stream.Reset();
            return;
        }
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        cts.CancelAfter(Options.MessageTimeout);
        var connect = await ReadAsync(s.Stream, cts.Token, ct).ConfigureAwait(false);
        if (connect.Type != HolePunchType.Connect)
            throw new ProtocolViolationException("dcutr", $"expected CONNECT, got {connect.Type}");
        var theirs = Dialable(connect.ObsAddrs);
        // The peer dials after SYNC, which it may do before we read it: expect its SYN from now on.
        using var expect = Expect(peer, theirs, Direction.Inbound);
        await SendAsync(s.Stream, new HolePunchMessage { Type = HolePunchType.Connect, ObsAddrs = OurAddresses() }, cts.Token).ConfigureAwait(false);
        var sync = await ReadAsync(s.Stream, cts.Token, ct).ConfigureAwait(false);
        if (sync.Type != HolePunchType.Sync)
            throw new ProtocolViolationException("dcutr", $"expected SYNC, got {sync.Type}");
        _attempts.Add(1, new KeyValuePair<string, object?>("role", "responder"));
        if (theirs.Count == 0 || _host.GetDirectConnection(peer) is not null) return;
        if (!await _punches.WaitAsync(0, ct).ConfigureAwait(false))
        {
            Log.Failed(_log, peer.ToString(), $"{nameof(DcutrOptions.MaxConcurrentPunches)} ({Options.MaxConcurrentPunches}) reached");
            return;
        }
        try
        {
            await PunchAsync(peer, theirs, Direction.Inbound, expect, ct).ConfigureAwait(false);
        }
        finally
        {
            _punches.Release();
        }
    }

    /// <summary>
    /// Dials every address at once from the listen port and upgrades with <paramref name="role"/>. Ends with
    /// the first direct connection to <paramref name="peer"/>, from these dials or from any other path (the
    /// peer's own dial reaching our listener).
    /// </summary>
    private async Task<Connection?> PunchAsync(PeerId peer, IReadOnlyList<Multiaddr> addrs, Direction role, PunchExpectation expect, CancellationToken ct)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        cts.CancelAfter(Options.PunchTimeout);
        var winner = new TaskCompletionSource<Connection?>(TaskCreationOptions.RunContinuationsAsynchronously);
        using var reg = cts.Token.Register(() => winner.TrySetResult(_host.GetDirectConnection(peer)));
        var dialsDone = 0;
        void MaybeGiveUp()
        {
            // Every dial of ours failed and no upgrade of theirs is running: nothing can come of this round.
            if (Volatile.Read(ref dialsDone) == 1 && !expect.InboundRunning) winner.TrySetResult(_host.GetDirectConnection(peer));
        }
        void Opened(Connection c)
        {
            if (c.RemotePeer == peer && !c.IsRelayed) winner.TrySetResult(c);
        }
        _host.ConnectionOpened += Opened;
        expect.InboundEnded += MaybeGiveUp;
        try
        {
            if (_host.GetDirectConnection(peer) is { } existing) return existing;
            var dials = addrs.Take(Options.MaxDialsPerAttempt).Select(async a =>
            {
                if (await DialOneAsync(peer, a, role, cts.Token).ConfigureAwait(false) is { } c) winner.TrySetResult(c);
            }).ToList();
            _ = Task.Run(async () =>
            {
                await Task.WhenAll(dials).ConfigureAwait(false);
                // The peer's SYN may have met our listener (our own dial then fails): give its upgrade a moment to start.
                try { await Task.Delay(Options.InboundGrace, _host.Time, cts.Token).ConfigureAwait(false); }
                catch (OperationCanceledException) { return; }
                Volatile.Write(ref dialsDone, 1);
                MaybeGiveUp();
            });
            return await winner.Task.ConfigureAwait(false);
        }
        finally
        {
            _host.ConnectionOpened -= Opened;
            expect.InboundEnded -= MaybeGiveUp;
            cts.Cancel();
        }
    }

    private async Task<Connection?> DialOneAsync(PeerId peer, Multiaddr addr, Direction role, CancellationToken ct)
    {
        try
        {
            var raw = await _host.DialRawFromListenPortAsync(addr, ct).ConfigureAwait(false);
            return await _host.UpgradeAsync(raw, role, peer, ct).ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            Log.DialFailed(_log, peer.ToString(), addr.ToString(), role.ToString(), ex.Message);
            return null;
        }
    }

    /// <summary>What we send in CONNECT: how others observe us, then our own non-relayed addresses.</summary>
    private IReadOnlyList<Multiaddr> OurAddresses() =>
        _host.ObservedAddresses.Concat(_host.AdvertisedAddresses)
            .Where(a => !a.IsCircuit && TcpTransport.CanHandle(a))
            .Select(a => a.WithoutPeerId())
            .Distinct()
            .Take(HolePunchMessage.MaxAddresses)
            .ToList();

    /// <summary>The peer's TCP addresses we could dial from our listen port (same family as one of our listeners).</summary>
    private List<Multiaddr> Dialable(IReadOnlyList<Multiaddr> addrs)
    {
        var families = _host.ListenEndPoints.Select(e => e.AddressFamily).ToHashSet();
        var result = new List<Multiaddr>();
        foreach (var a in addrs)
        {
            if (a.IsCircuit || !a.TryGetTcpEndPoint(out var ep) || ep is null) continue;
            if (!families.Contains(ep.AddressFamily) || ep.Port == 0 || IPAddress.Any.Equals(ep.Address) || IPAddress.IPv6Any.Equals(ep.Address)) continue;
            var plain = a.WithoutPeerId();
            if (!result.Contains(plain)) result.Add(plain);
        }
        return result;
    }

    private static async Task SendAsync(YamuxStream stream, HolePunchMessage m, CancellationToken ct)
    {
        m.WriteLengthPrefixedTo(stream.Output);
        await stream.Output.FlushAsync(ct).ConfigureAwait(false);
    }

    private async Task<HolePunchMessage> ReadAsync(YamuxStream stream, CancellationToken timed, CancellationToken caller)
    {
        try
        {
            return (await stream.Input.ReadAsync<HolePunchMessage?>(HolePunchMessage.TryRead, timed).ConfigureAwait(false))!;
        }
        catch (OperationCanceledException) when (!caller.IsCancellationRequested)
        {
            throw new TimeoutException($"no DCUtR message within {Options.MessageTimeout.TotalSeconds:0.#} s");
        }
    }

    public void Dispose()
    {
        _host.ConnectionOpened -= OnConnectionOpened;
        _host.Unhandle(HolePunchMessage.ProtocolId);
        _meter.Dispose();
        _punches.Dispose();
    }
}
