using System.Diagnostics.Metrics;
using System.Net;
using Microsoft.Extensions.Logging;
using Weft.P2P.Host;
using Weft.P2P.IO;
using Weft.Wire.AutoNat;
using Weft.Wire.Identity;
using Weft.Wire.Multiformats;
using ProtocolViolationException = Weft.Wire.ProtocolViolationException;

namespace Weft.P2P.AutoNat;

/// <summary>
/// AutoNAT v1 server (<see cref="AutoNatMessage.ProtocolId"/>): on a DIAL request it dials the requester back on a
/// fresh TCP connection (<see cref="Libp2pHost.ProbeDialAsync"/>) and says whether that worked. Only addresses whose
/// IP is the one the request's connection comes from are dialled (never a third party; other addresses are
/// dropped, not rewritten); requests over relayed connections are refused; the requester's observed address is
/// tried too when the connection is inbound. Answers: OK with the address that worked, E_DIAL_ERROR when none did,
/// E_DIAL_REFUSED when throttled, busy or nothing is dialable, E_BAD_REQUEST for a malformed request or one for
/// another peer. The stream is answered and closed; the connection is never closed for a bad request.
/// Counters go to meter <see cref="MeterName"/>.
/// </summary>
public sealed class AutoNatServer : IDisposable
{
    public const string MeterName = "Weft.P2P.AutoNat";

    /// <summary>Window of the request rate limits; counts reset when it has passed since the window began.</summary>
    public static readonly TimeSpan ThrottleWindow = TimeSpan.FromMinutes(1);

    private readonly Libp2pHost _host;
    private readonly ILogger _log;
    private readonly Meter _meter;
    private readonly Counter<long> _requests;
    private readonly object _gate = new();
    private readonly Dictionary<PeerId, int> _perPeer = [];
    private int _global;
    private long _windowStart;
    private int _active;
    private int _disposed;

    private readonly record struct Answer(AutoNatResponseStatus Status, string Text, string Reason, Multiaddr? Addr = null);

    private AutoNatServer(Libp2pHost host, AutoNatServerOptions options)
    {
        _host = host;
        Options = options;
        _log = host.Loggers.CreateLogger("Weft.P2P.AutoNat");
        _windowStart = host.Time.GetTimestamp();
        _meter = new Meter(MeterName);
        _requests = _meter.CreateCounter<long>("weft_autonat_requests", description: "AutoNAT requests served, by result and reason");
    }

    public AutoNatServerOptions Options { get; }

    /// <summary>Dial-backs running now.</summary>
    public int ActiveDialBacks => Volatile.Read(ref _active);

    /// <summary>Starts serving AutoNAT v1 on <paramref name="host"/>.</summary>
    public static AutoNatServer Register(Libp2pHost host, AutoNatServerOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(host);
        options ??= new AutoNatServerOptions();
        ArgumentOutOfRangeException.ThrowIfLessThan(options.MaxAddressesPerRequest, 1, nameof(options));
        ArgumentOutOfRangeException.ThrowIfLessThan(options.GlobalRequestsPerMinute, 1, nameof(options));
        ArgumentOutOfRangeException.ThrowIfLessThan(options.PeerRequestsPerMinute, 1, nameof(options));
        ArgumentOutOfRangeException.ThrowIfLessThan(options.MaxConcurrentDialBacks, 1, nameof(options));
        ArgumentOutOfRangeException.ThrowIfLessThan(options.MaxStreamsPerConnection, 1, nameof(options));
        var server = new AutoNatServer(host, options);
        host.Handle(AutoNatMessage.ProtocolId, server.HandleAsync, maxInboundPerConnection: options.MaxStreamsPerConnection);
        return server;
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        _host.Unhandle(AutoNatMessage.ProtocolId);
        _meter.Dispose();
    }

    private async Task HandleAsync(IncomingStream s, CancellationToken ct)
    {
        var peer = s.Connection.RemotePeer;
        AutoNatMessage request;
        using (var cts = CancellationTokenSource.CreateLinkedTokenSource(ct))
        {
            cts.CancelAfter(Options.MessageTimeout);
            try
            {
                request = (await s.Stream.Input.ReadAsync<AutoNatMessage?>(AutoNatMessage.TryRead, cts.Token).ConfigureAwait(false))!;
            }
            catch (ProtocolViolationException ex)
            {
                await AnswerAsync(s, new Answer(AutoNatResponseStatus.BadRequest, "malformed request", "malformed"), ct).ConfigureAwait(false);
                Log.StreamFailed(_log, peer.ToString(), ex.Message);
                return;
            }
            catch (Exception ex) when (ex is EndOfStreamException or OperationCanceledException or IOException)
            {
                Log.StreamFailed(_log, peer.ToString(), ex is OperationCanceledException ? "timed out" : ex.Message);
                s.Stream.Reset();
                return;
            }
        }

        Answer answer;
        try
        {
            answer = await DecideAsync(s.Connection, request, ct).ConfigureAwait(false);
        }
        catch (Exception ex) when (!ct.IsCancellationRequested)
        {
            Log.StreamFailed(_log, peer.ToString(), ex.Message);
            answer = new Answer(AutoNatResponseStatus.InternalError, "internal error", "internal");
        }
        await AnswerAsync(s, answer, ct).ConfigureAwait(false);
    }

    private async Task<Answer> DecideAsync(Connection conn, AutoNatMessage request, CancellationToken ct)
    {
        var peer = conn.RemotePeer;
        if (request.Type != AutoNatMessageType.Dial || request.Dial?.Peer is not { } info)
            return new Answer(AutoNatResponseStatus.BadRequest, "expected a DIAL with peer info", "malformed");
        if (info.Id is { } id && id != peer)
            return new Answer(AutoNatResponseStatus.BadRequest, "peer id mismatch", "peer_mismatch");
        if (conn.IsRelayed)
            return new Answer(AutoNatResponseStatus.DialRefused, "refusing a request over a relayed connection", "relayed");
        if (!conn.RemoteAddress.TryGetTcpEndPoint(out var observedEp))
            return new Answer(AutoNatResponseStatus.DialRefused, "the connection's address is not an IP address", "policy");
        var observedIp = AddressPolicy.Normalize(observedEp.Address);
        if (!MayDial(observedIp))
            return new Answer(AutoNatResponseStatus.DialRefused, "refusing to dial the observed address", "policy");

        var targets = Targets(conn, observedIp, info.Addrs, peer);
        if (targets.Count == 0)
            return new Answer(AutoNatResponseStatus.DialRefused, "no dialable addresses", "no_address");

        if (TryTakeQuota(peer) is { } limit)
            return new Answer(AutoNatResponseStatus.DialRefused, "too many dials", limit);
        if (Interlocked.Increment(ref _active) > Options.MaxConcurrentDialBacks)
        {
            Interlocked.Decrement(ref _active);
            return new Answer(AutoNatResponseStatus.DialRefused, "too many dials in progress", "busy");
        }
        try
        {
            var worked = await DialBackAsync(peer, targets, ct).ConfigureAwait(false);
            return worked is null
                ? new Answer(AutoNatResponseStatus.DialError, "dial back failed", "dial_failed")
                : new Answer(AutoNatResponseStatus.Ok, "", "ok", worked);
        }
        finally
        {
            Interlocked.Decrement(ref _active);
        }
    }

    /// <summary>Whether the policy lets us dial this IP at all.</summary>
    private bool MayDial(IPAddress ip)
    {
        if (AddressPolicy.IsUnusable(ip)) return false;
        if (IPAddress.IsLoopback(ip)) return Options.AllowLoopbackAddresses;
        if (AddressPolicy.IsPrivate(ip) && !Options.AllowPrivateAddresses) return false;
        // Our own IP: the requester shares our host, so a dial-back would prove nothing.
        foreach (var own in _host.ListenAddresses)
        {
            if (own.TryGetTcpEndPoint(out var ep) && AddressPolicy.Normalize(ep.Address).Equals(ip)) return false;
        }
        return true;
    }

    /// <summary>
    /// What to dial: the observed address (inbound connections only: it may be the requester's NAT mapping of its
    /// listen port), then the requested TCP addresses on exactly the observed IP, without duplicates, at most
    /// <see cref="AutoNatServerOptions.MaxAddressesPerRequest"/>.
    /// </summary>
    private List<Multiaddr> Targets(Connection conn, IPAddress observedIp, IReadOnlyList<Multiaddr> requested, PeerId peer)
    {
        var targets = new List<Multiaddr>();
        if (conn.Direction == Direction.Inbound && conn.RemoteAddress.TryGetTcpEndPoint(out var observed) && observed.Port != 0)
            targets.Add(Multiaddr.FromTcp(new IPEndPoint(observedIp, observed.Port)));
        foreach (var a in requested)
        {
            if (targets.Count >= Options.MaxAddressesPerRequest) break;
            if (a.PeerId is { } id && id != peer) continue;
            if (!a.TryGetTcpEndPoint(out var ep) || ep.Port == 0) continue;
            if (!AddressPolicy.Normalize(ep.Address).Equals(observedIp)) continue;
            var target = Multiaddr.FromTcp(new IPEndPoint(observedIp, ep.Port));
            if (!targets.Contains(target)) targets.Add(target);
        }
        return targets;
    }

    /// <summary>Takes one request from both rate limits; the name of the exhausted limit, or null.</summary>
    private string? TryTakeQuota(PeerId peer)
    {
        lock (_gate)
        {
            var now = _host.Time.GetTimestamp();
            if (_host.Time.GetElapsedTime(_windowStart, now) >= ThrottleWindow)
            {
                _windowStart = now;
                _global = 0;
                _perPeer.Clear();
            }
            if (_global >= Options.GlobalRequestsPerMinute) return "global_rate_limit";
            var n = _perPeer.GetValueOrDefault(peer);
            if (n >= Options.PeerRequestsPerMinute) return "peer_rate_limit";
            _perPeer[peer] = n + 1;
            _global++;
            return null;
        }
    }

    /// <summary>Dials every target at once within <see cref="AutoNatServerOptions.DialTimeout"/>; the first that worked, or null.</summary>
    private async Task<Multiaddr?> DialBackAsync(PeerId peer, List<Multiaddr> targets, CancellationToken ct)
    {
        using var timeout = new CancellationTokenSource(Options.DialTimeout, _host.Time);
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct, timeout.Token);
        var dials = new List<Task>(targets.Count);
        foreach (var t in targets) dials.Add(_host.ProbeDialAsync(t, peer, cts.Token));
        Multiaddr? worked = null;
        var pending = new List<Task>(dials);
        while (pending.Count > 0)
        {
            var done = await Task.WhenAny(pending).ConfigureAwait(false);
            pending.Remove(done);
            var target = targets[dials.IndexOf(done)];
            if (done.IsCompletedSuccessfully)
            {
                if (worked is null)
                {
                    worked = target;
                    cts.Cancel();
                }
            }
            else if (worked is null)
            {
                var error = done.Exception?.GetBaseException().Message ?? "timed out";
                Log.DialBackFailed(_log, peer.ToString(), target.ToString(), error);
            }
        }
        ct.ThrowIfCancellationRequested();
        return worked;
    }

    private async Task AnswerAsync(IncomingStream s, Answer answer, CancellationToken ct)
    {
        var peer = s.Connection.RemotePeer.ToString();
        _requests.Add(1, new KeyValuePair<string, object?>("result", ResultName(answer.Status)), new KeyValuePair<string, object?>("reason", answer.Reason));
        Log.Answered(_log, peer, ResultName(answer.Status), answer.Reason);
        try
        {
            using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
            cts.CancelAfter(Options.MessageTimeout);
            AutoNatMessage.Response(answer.Status, answer.Text.Length == 0 ? null : answer.Text, answer.Addr).WriteLengthPrefixedTo(s.Stream.Output);
            await s.Stream.Output.FlushAsync(cts.Token).ConfigureAwait(false);
            await s.Stream.Output.CompleteAsync().ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            Log.StreamFailed(_log, peer, ex.Message);
            s.Stream.Reset();
        }
    }

    /// <summary>The spec's name of a status (E_DIAL_ERROR…), lower case, for metrics and logs.</summary>
    internal static string ResultName(AutoNatResponseStatus? status) => status switch
    {
        AutoNatResponseStatus.Ok => "ok",
        AutoNatResponseStatus.DialError => "dial_error",
        AutoNatResponseStatus.DialRefused => "dial_refused",
        AutoNatResponseStatus.BadRequest => "bad_request",
        AutoNatResponseStatus.InternalError => "internal_error",
        null => "none",
        _ => "unknown",
    };
}
