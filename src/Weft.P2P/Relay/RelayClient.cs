using Microsoft.Extensions.Logging;
using Weft.P2P.Host;
using Weft.P2P.IO;
using Weft.P2P.Transport;
using Weft.P2P.Yamux;
using Weft.Wire.Identity;
using Weft.Wire.Multiformats;
using Weft.Wire.Relay;
using ProtocolViolationException = Weft.Wire.ProtocolViolationException;

namespace Weft.P2P.Relay;

/// <summary>Limit a relay announced, in real units (see <see cref="RelayClient.DurationFromWire"/>).</summary>
public sealed record RelayCircuitLimit(TimeSpan? Duration, ulong? Data)
{
    internal static RelayCircuitLimit? From(RelayLimit? wire) => wire is null
        ? null
        : new RelayCircuitLimit(wire.Duration is uint d and > 0 ? RelayClient.DurationFromWire(d) : null, wire.Data is ulong b and > 0 ? b : null);
}

/// <summary>A reservation granted by a relay.</summary>
/// <param name="Relay">The relay's peer ID.</param>
/// <param name="Expire">When the reservation ends (refresh before it).</param>
/// <param name="CircuitAddresses">Where others can reach us: <c>&lt;relay addr&gt;/p2p/&lt;relay&gt;/p2p-circuit</c>.</param>
/// <param name="Limit">Limit the relay applies to each circuit; null = none announced.</param>
/// <param name="Voucher">The relay-signed voucher, checked; null when the relay sent none.</param>
public sealed record RelayReservationInfo(
    PeerId Relay, DateTimeOffset Expire, IReadOnlyList<Multiaddr> CircuitAddresses, RelayCircuitLimit? Limit, ReservationVoucher? Voucher);

/// <summary>
/// Circuit relay v2, client side: reserve a slot on a relay (hop RESERVE), accept relayed connections (stop
/// protocol) and dial peers through a relay (hop CONNECT). Relayed streams are upgraded (Noise + yamux) by the
/// host like any transport and join its swarm.
/// </summary>
public static class RelayClient
{
    /// <summary>Waiting for a relay's answer, or for a relay's stop request.</summary>
    public static readonly TimeSpan ResponseTimeout = TimeSpan.FromSeconds(15);

    /// <summary>Largest Limit.duration read as seconds; larger values are milliseconds.</summary>
    public const uint MaxDurationSeconds = 86_400;

    /// <summary>
    /// Limit.duration as a time span. The spec says seconds, but js-libp2p relays send milliseconds (120000 for
    /// their 2-minute default); a value above <see cref="MaxDurationSeconds"/> (a day) is therefore read as
    /// milliseconds.
    /// </summary>
    public static TimeSpan DurationFromWire(uint duration) =>
        duration > MaxDurationSeconds ? TimeSpan.FromMilliseconds(duration) : TimeSpan.FromSeconds(duration);

    /// <summary>
    /// Installs the stop handler so relays can hand us relayed connections (as many per relay connection as
    /// <see cref="ConnectionLimits.MaxRelayedConnections"/>), and lets the swarm dial <c>/p2p-circuit</c> addresses.
    /// </summary>
    public static void Register(Libp2pHost host)
    {
        ArgumentNullException.ThrowIfNull(host);
        var log = host.Loggers.CreateLogger("Weft.P2P.Relay");
        host.Handle(RelayProtocol.StopProtocolId, (s, ct) => HandleStopAsync(host, log, s, ct), maxInboundPerConnection: host.Options.Limits.MaxRelayedConnections);
        host.CircuitDialer = (addr, ct) => DialViaRelayAsync(host, addr, ct);
    }

    private static (Multiaddr Relay, PeerId RelayId) RelayPart(Multiaddr addr, string name)
    {
        var relayId = addr.PeerId ?? throw new ArgumentException("the relay address must end with /p2p/<relay id>", name);
        return (addr, relayId);
    }

    /// <summary>Reserves a slot on the relay at <paramref name="relayAddrWithPeerId"/> (dialling it if needed).</summary>
    public static async Task<RelayReservationInfo> ReserveAsync(Libp2pHost host, Multiaddr relayAddrWithPeerId, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(host);
        var (relayAddr, relayId) = RelayPart(relayAddrWithPeerId, nameof(relayAddrWithPeerId));
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        cts.CancelAfter(ResponseTimeout);
        var conn = await host.DialAsync(relayAddr, cts.Token).ConfigureAwait(false);
        var stream = await conn.OpenStreamAsync(RelayProtocol.HopProtocolId, cts.Token).ConfigureAwait(false);
        HopMessage answer;
        try
        {
            await RelayServer.SendAsync(stream, new HopMessage { Type = HopMessageType.Reserve }, cts.Token).ConfigureAwait(false);
            answer = await ReadHopAsync(stream, cts.Token, ct).ConfigureAwait(false);
        }
        catch
        {
            stream.Reset();
            throw;
        }
        await stream.DisposeAsync().ConfigureAwait(false);
        if (answer.Type != HopMessageType.Status)
            throw new ProtocolViolationException("relay", $"expected STATUS in answer to RESERVE, got {answer.Type}");
        if (answer.Status != RelayStatus.Ok) throw new RelayRefusedException(answer.Status ?? RelayStatus.UnexpectedMessage);
        if (answer.Reservation is not { Expire: ulong expireUnix } reservation)
            throw new ProtocolViolationException("relay", "RESERVE answered OK without a reservation expiry");

        ReservationVoucher? voucher = null;
        if (reservation.Voucher is { } envelope)
        {
            voucher = ReservationVoucher.Open(envelope);
            if (voucher.Relay != relayId) throw new ProtocolViolationException("relay", "the voucher was signed by another relay");
            if (voucher.Peer != host.PeerId) throw new ProtocolViolationException("relay", "the voucher is for another peer");
            if (voucher.Expiration != expireUnix) throw new ProtocolViolationException("relay", "the voucher's expiry differs from the reservation's");
        }

        var circuits = new List<Multiaddr>();
        void Add(Multiaddr a)
        {
            if (a.IsCircuit) return;
            if (a.PeerId is { } id && id != relayId) return;
            var c = a.WithoutPeerId().WithPeerId(relayId).Encapsulate("/p2p-circuit");
            if (!circuits.Contains(c)) circuits.Add(c);
        }
        Add(relayAddr);
        Add(conn.RemoteAddress);
        foreach (var a in reservation.Addrs) Add(a);

        var expire = DateTimeOffset.FromUnixTimeSeconds((long)Math.Min(expireUnix, (ulong)DateTimeOffset.MaxValue.ToUnixTimeSeconds()));
        Log.Reserved(host.Loggers.CreateLogger("Weft.P2P.Relay"), relayId.ToString(), expire);
        return new RelayReservationInfo(relayId, expire, circuits, RelayCircuitLimit.From(answer.Limit), voucher);
    }

    /// <summary>
    /// Dials <c>&lt;relay addr&gt;/p2p/&lt;relay&gt;/p2p-circuit/p2p/&lt;target&gt;</c>: hop CONNECT through the
    /// relay, then upgrades the relayed stream as an outbound connection to the target. A refusal throws
    /// <see cref="RelayRefusedException"/>.
    /// </summary>
    public static async Task<Connection> DialViaRelayAsync(Libp2pHost host, Multiaddr circuitAddr, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(host);
        ArgumentNullException.ThrowIfNull(circuitAddr);
        var target = circuitAddr.PeerId;
        var relayAddr = circuitAddr.Decapsulate(MultiaddrProtocol.P2PCircuit);
        if (target is null || relayAddr?.PeerId is null || circuitAddr.Components[^2].Protocol != MultiaddrProtocol.P2PCircuit)
            throw new ArgumentException("expected <relay addr>/p2p/<relay>/p2p-circuit/p2p/<target>", nameof(circuitAddr));

        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        cts.CancelAfter(ResponseTimeout);
        var relay = await host.DialAsync(relayAddr, cts.Token).ConfigureAwait(false);
        var stream = await relay.OpenStreamAsync(RelayProtocol.HopProtocolId, cts.Token).ConfigureAwait(false);
        HopMessage answer;
        try
        {
            await RelayServer.SendAsync(stream, new HopMessage { Type = HopMessageType.Connect, Peer = new RelayPeer(target) }, cts.Token).ConfigureAwait(false);
            answer = await ReadHopAsync(stream, cts.Token, ct).ConfigureAwait(false);
            if (answer.Type != HopMessageType.Status)
                throw new ProtocolViolationException("relay", $"expected STATUS in answer to CONNECT, got {answer.Type}");
            if (answer.Status != RelayStatus.Ok) throw new RelayRefusedException(answer.Status ?? RelayStatus.UnexpectedMessage);
        }
        catch
        {
            stream.Reset();
            throw;
        }
        var local = relayAddr.Encapsulate("/p2p-circuit").WithPeerId(host.PeerId);
        var raw = new RawConnection(stream, local, circuitAddr, stream.Reset, stream.DisposeAsync);
        var limit = RelayCircuitLimit.From(answer.Limit);
        return await host.UpgradeAsync(raw, Direction.Outbound, target, c => c.RelayLimit = limit, ct).ConfigureAwait(false);
    }

    private static async Task<HopMessage> ReadHopAsync(YamuxStream stream, CancellationToken timed, CancellationToken caller)
    {
        try
        {
            return (await stream.Input.ReadAsync<HopMessage?>(HopMessage.TryRead, timed).ConfigureAwait(false))!;
        }
        catch (OperationCanceledException) when (!caller.IsCancellationRequested)
        {
            throw new TimeoutException($"the relay did not answer within {ResponseTimeout.TotalSeconds:0.#} s");
        }
    }

    private static async Task HandleStopAsync(Libp2pHost host, ILogger log, IncomingStream s, CancellationToken ct)
    {
        var stream = s.Stream;
        var relayId = s.Connection.RemotePeer;
        StopMessage request;
        using (var cts = CancellationTokenSource.CreateLinkedTokenSource(ct))
        {
            cts.CancelAfter(ResponseTimeout);
            try
            {
                request = (await stream.Input.ReadAsync<StopMessage?>(StopMessage.TryRead, cts.Token).ConfigureAwait(false))!;
            }
            catch (ProtocolViolationException ex)
            {
                Log.StopFailed(log, relayId.ToString(), ex.Message);
                await AnswerAsync(stream, RelayStatus.MalformedMessage, ct).ConfigureAwait(false);
                return;
            }
        }
        if (request.Type != StopMessageType.Connect)
        {
            Log.StopFailed(log, relayId.ToString(), $"unexpected stop message {request.Type}");
            await AnswerAsync(stream, RelayStatus.UnexpectedMessage, ct).ConfigureAwait(false);
            return;
        }
        if (request.Peer is not { } source)
        {
            Log.StopFailed(log, relayId.ToString(), "CONNECT without a peer");
            await AnswerAsync(stream, RelayStatus.MalformedMessage, ct).ConfigureAwait(false);
            return;
        }

        await RelayServer.SendAsync(stream, new StopMessage { Type = StopMessageType.Status, Status = RelayStatus.Ok }, ct).ConfigureAwait(false);
        var relayAddr = s.Connection.RemoteAddress.WithoutPeerId().WithPeerId(relayId).Encapsulate("/p2p-circuit");
        var raw = new RawConnection(stream, relayAddr.WithPeerId(host.PeerId), relayAddr.WithPeerId(source.Id), stream.Reset, stream.DisposeAsync);
        Connection conn;
        try
        {
            var limit = RelayCircuitLimit.From(request.Limit);
            conn = await host.UpgradeAsync(raw, Direction.Inbound, null, c => c.RelayLimit = limit, ct).ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            Log.StopFailed(log, relayId.ToString(), ex.Message);
            return;
        }
        if (conn.RemotePeer != source.Id)
        {
            Log.StopFailed(log, relayId.ToString(), $"the relay announced {source.Id} but {conn.RemotePeer} connected");
            await conn.DisposeAsync().ConfigureAwait(false);
            return;
        }
        Log.StopAccepted(log, source.Id.ToString(), relayId.ToString());
        // Returning would make the host dispose the stream under the connection: stay for its lifetime.
        try
        {
            await conn.Completion.ConfigureAwait(false);
        }
        catch (Exception)
        {
            // The relayed connection failed; its stream is gone with it.
        }
    }

    private static async Task AnswerAsync(YamuxStream stream, RelayStatus status, CancellationToken ct)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        cts.CancelAfter(ResponseTimeout);
        await RelayServer.SendAsync(stream, new StopMessage { Type = StopMessageType.Status, Status = status }, cts.Token).ConfigureAwait(false);
        await stream.Output.CompleteAsync().ConfigureAwait(false);
    }
}
