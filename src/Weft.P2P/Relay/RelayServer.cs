using System.Buffers;
using System.Diagnostics.Metrics;
using System.IO.Pipelines;
using Microsoft.Extensions.Logging;
using Weft.P2P.Host;
using Weft.P2P.IO;
using Weft.P2P.Yamux;
using Weft.Wire.Identity;
using Weft.Wire.Multiformats;
using Weft.Wire.Relay;
using ProtocolViolationException = Weft.Wire.ProtocolViolationException;

namespace Weft.P2P.Relay;

/// <summary>
/// Circuit relay v2, relay side (the hop protocol): grants bounded reservations and relays circuits to reserved
/// peers through the stop protocol, enforcing <see cref="RelayServerOptions.Limit"/>. Counters go to meter
/// <see cref="MeterName"/>. Dispose to stop serving (open circuits keep running until they end).
/// </summary>
public sealed class RelayServer : IDisposable
{
    public const string MeterName = "Weft.P2P.Relay";

    private readonly Libp2pHost _host;
    private readonly ILogger _log;
    private readonly Meter _meter;
    private readonly Counter<long> _reservations;
    private readonly Counter<long> _circuits;
    private readonly Counter<long> _bytes;
    private readonly Counter<long> _refusals;
    private readonly object _gate = new();
    private readonly Dictionary<PeerId, Reservation> _reserved = [];
    private readonly Dictionary<PeerId, int> _circuitsByPeer = [];
    private int _circuitCount;
    private int _disposed;

    private sealed record Reservation(string Ip, DateTimeOffset Expire);

    private RelayServer(Libp2pHost host, RelayServerOptions options)
    {
        _host = host;
        Options = options;
        _log = host.Loggers.CreateLogger("Weft.P2P.Relay");
        _meter = new Meter(MeterName);
        _reservations = _meter.CreateCounter<long>("weft_relay_reservations", description: "reservations granted (new and refreshed)");
        _circuits = _meter.CreateCounter<long>("weft_relay_circuits", description: "circuits opened");
        _bytes = _meter.CreateCounter<long>("weft_relay_bytes", "By", "bytes relayed, both directions");
        _refusals = _meter.CreateCounter<long>("weft_relay_refusals", description: "hop requests refused, by reason");
    }

    public RelayServerOptions Options { get; }

    /// <summary>Reservations currently held (expired ones are dropped lazily).</summary>
    public int ReservationCount { get { lock (_gate) return _reserved.Count; } }

    /// <summary>Circuits being relayed now.</summary>
    public int CircuitCount => Volatile.Read(ref _circuitCount);

    /// <summary>Starts serving the hop protocol on <paramref name="host"/>.</summary>
    public static RelayServer Register(Libp2pHost host, RelayServerOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(host);
        var server = new RelayServer(host, options ?? new RelayServerOptions());
        host.ConnectionClosed += server.OnConnectionClosed;
        host.Handle(RelayProtocol.HopProtocolId, server.HandleHopAsync);
        return server;
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        _host.Unhandle(RelayProtocol.HopProtocolId);
        _host.ConnectionClosed -= OnConnectionClosed;
        lock (_gate) _reserved.Clear();
        _meter.Dispose();
    }

    /// <summary>A reservation ends with the reserving peer's last connection (go and js do the same).</summary>
    private void OnConnectionClosed(Connection conn)
    {
        if (_host.GetConnection(conn.RemotePeer) is not null) return;
        lock (_gate) _reserved.Remove(conn.RemotePeer);
    }

    private async Task HandleHopAsync(IncomingStream s, CancellationToken ct)
    {
        var stream = s.Stream;
        var peer = s.Connection.RemotePeer;
        HopMessage request;
        using (var cts = CancellationTokenSource.CreateLinkedTokenSource(ct))
        {
            cts.CancelAfter(Options.MessageTimeout);
            try
            {
                request = (await stream.Input.ReadAsync<HopMessage?>(HopMessage.TryRead, cts.Token).ConfigureAwait(false))!;
            }
            catch (ProtocolViolationException ex)
            {
                await RefuseAsync(stream, peer, RelayStatus.MalformedMessage, ex.Detail, ct).ConfigureAwait(false);
                return;
            }
            catch (Exception ex) when (ex is EndOfStreamException or OperationCanceledException or IOException)
            {
                Log.HopFailed(_log, peer.ToString(), ex is OperationCanceledException ? "timed out" : ex.Message);
                stream.Reset();
                return;
            }
        }

        switch (request.Type)
        {
            case HopMessageType.Reserve:
                await ReserveAsync(s, ct).ConfigureAwait(false);
                break;
            case HopMessageType.Connect:
                await ConnectAsync(s, request, ct).ConfigureAwait(false);
                break;
            default:
                await RefuseAsync(stream, peer, RelayStatus.UnexpectedMessage, $"hop message type {(int)request.Type}", ct).ConfigureAwait(false);
                break;
        }
    }

    private static string IpOf(Multiaddr addr) =>
        addr.Components.Count > 0 && addr.Components[0].Protocol is MultiaddrProtocol.Ip4 or MultiaddrProtocol.Ip6
            ? addr.Components[0].Value ?? ""
            : addr.ToString();

    private async Task ReserveAsync(IncomingStream s, CancellationToken ct)
    {
        var peer = s.Connection.RemotePeer;
        if (s.Connection.RemoteAddress.IsCircuit)
        {
            await RefuseAsync(s.Stream, peer, RelayStatus.PermissionDenied, "reservation over a relayed connection", ct).ConfigureAwait(false);
            return;
        }
        var ip = IpOf(s.Connection.RemoteAddress);
        var now = _host.Time.GetUtcNow();
        var expire = now + Options.ReservationTtl;
        string? refusal = null;
        lock (_gate)
        {
            if (Volatile.Read(ref _disposed) != 0)
            {
                refusal = "relay stopped";
            }
            else
            {
                var perIp = 0;
                List<PeerId>? stale = null;
                foreach (var (p, r) in _reserved)
                {
                    if (r.Expire <= now) (stale ??= []).Add(p);
                    else if (r.Ip == ip && p != peer) perIp++;
                }
                if (stale is not null) foreach (var p in stale) _reserved.Remove(p);
                var refresh = _reserved.ContainsKey(peer);
                if (!refresh && _reserved.Count >= Options.MaxReservations) refusal = nameof(RelayServerOptions.MaxReservations);
                else if (perIp >= Options.MaxReservationsPerIp) refusal = nameof(RelayServerOptions.MaxReservationsPerIp);
                else _reserved[peer] = new Reservation(ip, expire);
            }
        }
        if (refusal is not null)
        {
            await RefuseAsync(s.Stream, peer, RelayStatus.ReservationRefused, refusal, ct).ConfigureAwait(false);
            return;
        }

        var expireUnix = (ulong)expire.ToUnixTimeSeconds();
        var addrs = new List<Multiaddr>();
        foreach (var a in _host.AdvertisedAddresses)
        {
            if (a.IsCircuit) continue;
            addrs.Add(a.WithoutPeerId().WithPeerId(_host.PeerId));
            if (addrs.Count >= RelayProtocol.MaxAddresses / 2) break;
        }
        var reply = new HopMessage
        {
            Type = HopMessageType.Status,
            Status = RelayStatus.Ok,
            Reservation = new RelayReservation
            {
                Expire = expireUnix,
                Addrs = addrs,
                Voucher = new ReservationVoucher(_host.PeerId, peer, expireUnix).SealToBytes(_host.Options.Key),
            },
            Limit = Options.Limit.ToWire(),
        };
        _reservations.Add(1);
        Log.ReservationGranted(_log, peer.ToString(), ip, expireUnix);
        await SendAsync(s.Stream, reply, ct).ConfigureAwait(false);
        await s.Stream.Output.CompleteAsync().ConfigureAwait(false);
    }

    private bool HasReservation(PeerId peer)
    {
        lock (_gate)
        {
            if (!_reserved.TryGetValue(peer, out var r)) return false;
            if (r.Expire > _host.Time.GetUtcNow()) return true;
            _reserved.Remove(peer);
            return false;
        }
    }

    private string? TryTakeCircuit(PeerId source, PeerId target)
    {
        lock (_gate)
        {
            if (_circuitCount >= Options.MaxCircuits) return nameof(RelayServerOptions.MaxCircuits);
            if (_circuitsByPeer.GetValueOrDefault(source) >= Options.MaxCircuitsPerPeer ||
                _circuitsByPeer.GetValueOrDefault(target) >= Options.MaxCircuitsPerPeer)
                return nameof(RelayServerOptions.MaxCircuitsPerPeer);
            _circuitCount++;
            _circuitsByPeer[source] = _circuitsByPeer.GetValueOrDefault(source) + 1;
            _circuitsByPeer[target] = _circuitsByPeer.GetValueOrDefault(target) + 1;
            return null;
        }
    }

    private void ReleaseCircuit(PeerId source, PeerId target)
    {
        lock (_gate)
        {
            _circuitCount--;
            foreach (var p in (ReadOnlySpan<PeerId>)[source, target])
            {
                var n = _circuitsByPeer.GetValueOrDefault(p) - 1;
                if (n <= 0) _circuitsByPeer.Remove(p);
                else _circuitsByPeer[p] = n;
            }
        }
    }

    private async Task ConnectAsync(IncomingStream s, HopMessage request, CancellationToken ct)
    {
        var source = s.Connection.RemotePeer;
        if (request.Peer is not { } target)
        {
            await RefuseAsync(s.Stream, source, RelayStatus.MalformedMessage, "CONNECT without a peer", ct).ConfigureAwait(false);
            return;
        }
        if (s.Connection.RemoteAddress.IsCircuit)
        {
            await RefuseAsync(s.Stream, source, RelayStatus.PermissionDenied, "CONNECT over a relayed connection", ct).ConfigureAwait(false);
            return;
        }
        if (!HasReservation(target.Id))
        {
            await RefuseAsync(s.Stream, source, RelayStatus.NoReservation, target.Id.ToString(), ct).ConfigureAwait(false);
            return;
        }
        if (TryTakeCircuit(source, target.Id) is { } limit)
        {
            await RefuseAsync(s.Stream, source, RelayStatus.ResourceLimitExceeded, limit, ct).ConfigureAwait(false);
            return;
        }
        try
        {
            var stop = await OpenStopAsync(source, target.Id, ct).ConfigureAwait(false);
            if (stop is null)
            {
                await RefuseAsync(s.Stream, source, RelayStatus.ConnectionFailed, "target unreachable", ct).ConfigureAwait(false);
                return;
            }
            try
            {
                await SendAsync(s.Stream, new HopMessage { Type = HopMessageType.Status, Status = RelayStatus.Ok, Limit = Options.Limit.ToWire() }, ct).ConfigureAwait(false);
            }
            catch (Exception ex)
            {
                Log.HopFailed(_log, source.ToString(), ex.Message);
                stop.Reset();
                s.Stream.Reset();
                return;
            }
            _circuits.Add(1);
            Log.CircuitOpened(_log, source.ToString(), target.Id.ToString());
            await BridgeAsync(s.Stream, stop, source, target.Id, ct).ConfigureAwait(false);
        }
        finally
        {
            ReleaseCircuit(source, target.Id);
        }
    }

    /// <summary>Opens STOP to the target and sends CONNECT; the stream on OK, null (stream reset) on any failure.</summary>
    private async Task<YamuxStream?> OpenStopAsync(PeerId source, PeerId target, CancellationToken ct)
    {
        var conn = _host.GetConnection(target);
        if (conn is null) return null;
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        cts.CancelAfter(Options.MessageTimeout);
        YamuxStream? stop = null;
        try
        {
            stop = await conn.OpenStreamAsync(RelayProtocol.StopProtocolId, cts.Token).ConfigureAwait(false);
            await SendAsync(stop, new StopMessage { Type = StopMessageType.Connect, Peer = new RelayPeer(source), Limit = Options.Limit.ToWire() }, cts.Token).ConfigureAwait(false);
            var answer = (await stop.Input.ReadAsync<StopMessage?>(StopMessage.TryRead, cts.Token).ConfigureAwait(false))!;
            if (answer.Type == StopMessageType.Status && answer.Status == RelayStatus.Ok) return stop;
            Log.HopFailed(_log, source.ToString(), $"target {target} answered {answer.Type} {answer.Status}");
        }
        catch (Exception ex)
        {
            Log.HopFailed(_log, source.ToString(), $"stop to {target}: {(ex is OperationCanceledException ? "timed out" : ex.Message)}");
        }
        stop?.Reset();
        return null;
    }

    private sealed class Circuit(YamuxStream a, YamuxStream b, long budget)
    {
        private long _left = budget;
        private int _aborted;
        public long Relayed;
        public string? Reason;

        /// <summary>Takes up to <paramref name="n"/> bytes from the budget and returns how many it got.</summary>
        public long Take(long n)
        {
            while (true)
            {
                var left = Volatile.Read(ref _left);
                var granted = Math.Min(left, n);
                if (granted <= 0) return 0;
                if (Interlocked.CompareExchange(ref _left, left - granted, left) != left) continue;
                Interlocked.Add(ref Relayed, granted);
                return granted;
            }
        }

        public void Abort(string reason)
        {
            if (Interlocked.Exchange(ref _aborted, 1) != 0) return;
            Reason = reason;
            a.Reset();
            b.Reset();
        }
    }

    private async Task BridgeAsync(YamuxStream hop, YamuxStream stop, PeerId source, PeerId target, CancellationToken ct)
    {
        var policy = Options.Limit;
        using var lifetime = policy.Duration is { } d
            ? new CancellationTokenSource(d, _host.Time)
            : new CancellationTokenSource();
        using var reg = ct.Register(static o => ((CancellationTokenSource)o!).Cancel(), lifetime);
        var circuit = new Circuit(hop, stop, policy.Data is { } data ? (long)Math.Min(data, long.MaxValue) : long.MaxValue);
        await Task.WhenAll(
            CopyAsync(hop, stop, circuit, lifetime.Token),
            CopyAsync(stop, hop, circuit, lifetime.Token)).ConfigureAwait(false);
        _bytes.Add(circuit.Relayed);
        Log.CircuitClosed(_log, source.ToString(), target.ToString(), circuit.Relayed, circuit.Reason ?? "closed");
        await stop.DisposeAsync().ConfigureAwait(false);
    }

    /// <summary>One direction: copies until FIN (then FINs the other side), within the circuit's budget and lifetime.</summary>
    private static async Task CopyAsync(YamuxStream from, YamuxStream to, Circuit circuit, CancellationToken ct)
    {
        PipeReader input = from.Input;
        PipeWriter output = to.Output;
        try
        {
            while (true)
            {
                var r = await input.ReadAsync(ct).ConfigureAwait(false);
                var buffer = r.Buffer;
                if (!buffer.IsEmpty)
                {
                    // Forward what the data limit still allows, then cut the circuit if that was not all.
                    // The buffer is not touched after AdvanceTo: its segments go back to the reader's pool.
                    var length = buffer.Length;
                    var granted = circuit.Take(length);
                    var allowed = buffer.Slice(0, granted);
                    foreach (var segment in allowed) output.Write(segment.Span);
                    input.AdvanceTo(allowed.End);
                    var f = await output.FlushAsync(ct).ConfigureAwait(false);
                    if (granted < length)
                    {
                        circuit.Abort("data limit");
                        return;
                    }
                    if (f.IsCompleted)
                    {
                        circuit.Abort("peer stopped reading");
                        return;
                    }
                }
                if (r.IsCompleted)
                {
                    await output.CompleteAsync().ConfigureAwait(false);
                    return;
                }
                if (r.IsCanceled) throw new OperationCanceledException();
            }
        }
        catch (OperationCanceledException)
        {
            circuit.Abort("duration limit or relay stopping");
        }
        catch (Exception ex)
        {
            circuit.Abort(ex.Message);
        }
    }

    private async Task RefuseAsync(YamuxStream stream, PeerId peer, RelayStatus status, string reason, CancellationToken ct)
    {
        _refusals.Add(1, new KeyValuePair<string, object?>("reason", status.ToString()));
        Log.Refused(_log, peer.ToString(), status.ToString(), reason);
        try
        {
            using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
            cts.CancelAfter(Options.MessageTimeout);
            await SendAsync(stream, new HopMessage { Type = HopMessageType.Status, Status = status }, cts.Token).ConfigureAwait(false);
            await stream.Output.CompleteAsync().ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            Log.HopFailed(_log, peer.ToString(), ex.Message);
            stream.Reset();
        }
    }

    internal static async Task SendAsync(YamuxStream stream, HopMessage m, CancellationToken ct)
    {
        m.WriteLengthPrefixedTo(stream.Output);
        await stream.Output.FlushAsync(ct).ConfigureAwait(false);
    }

    internal static async Task SendAsync(YamuxStream stream, StopMessage m, CancellationToken ct)
    {
        m.WriteLengthPrefixedTo(stream.Output);
        await stream.Output.FlushAsync(ct).ConfigureAwait(false);
    }
}
