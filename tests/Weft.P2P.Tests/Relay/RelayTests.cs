using System.Buffers;
using Weft.P2P.Echo;
using Weft.P2P.Host;
using Weft.P2P.IO;
using Weft.P2P.Ping;
using Weft.P2P.Yamux;
using Weft.P2P.Relay;
using Weft.P2P.Tests.Support;
using Weft.Wire.Identity;
using Weft.Wire.Multiformats;
using Weft.Wire.Relay;
using static Weft.P2P.Tests.Host.Hosts;

namespace Weft.P2P.Tests.Relay;

public class RelayTests
{
    private sealed class Trio : IAsyncDisposable
    {
        public required Libp2pHost R { get; init; }
        public required Libp2pHost A { get; init; }
        public required Libp2pHost B { get; init; }
        public required RelayServer Server { get; init; }
        public required RelayReservationInfo Reservation { get; init; }

        public Multiaddr CircuitToA => Reservation.CircuitAddresses[0].WithPeerId(A.PeerId);

        public async ValueTask DisposeAsync()
        {
            Server.Dispose();
            await B.DisposeAsync();
            await A.DisposeAsync();
            await R.DisposeAsync();
        }
    }

    private static async Task<Trio> StartTrioAsync(RelayServerOptions options, ListLoggerProvider? logs = null, TimeProvider? time = null)
    {
        Libp2pHost r;
        if (time is null)
        {
            r = await StartAsync(logs: logs);
        }
        else
        {
            r = new Libp2pHost(new HostOptions { Key = Ed25519PrivateKey.Generate(), ListenAddresses = [Multiaddr.Parse("/ip4/127.0.0.1/tcp/0")], Yamux = new YamuxOptions { KeepAliveInterval = TimeSpan.Zero } }, logs, time);
            EchoService.Register(r);
            await r.StartAsync();
        }
        var server = RelayServer.Register(r, options);
        var a = await StartAsync();
        RelayClient.Register(a);
        var b = await StartAsync();
        var reservation = await RelayClient.ReserveAsync(a, AddressOf(r)).WaitAsync(Deadline);
        return new Trio { R = r, A = a, B = b, Server = server, Reservation = reservation };
    }

    private static RelayServerOptions Open => new() { Limit = RelayLimitPolicy.Off };

    [Fact]
    public async Task Reservation_is_granted_with_a_voucher_and_circuit_addresses()
    {
        await using var t = await StartTrioAsync(new RelayServerOptions());
        var res = t.Reservation;
        Assert.Equal(t.R.PeerId, res.Relay);
        Assert.NotNull(res.Voucher);
        Assert.Equal(t.R.PeerId, res.Voucher!.Relay);
        Assert.Equal(t.A.PeerId, res.Voucher.Peer);
        Assert.Equal((ulong)res.Expire.ToUnixTimeSeconds(), res.Voucher.Expiration);
        var now = DateTimeOffset.UtcNow;
        Assert.InRange(res.Expire, now.AddMinutes(59), now.AddMinutes(61));
        Assert.Equal(AddressOf(t.R).Encapsulate("/p2p-circuit"), res.CircuitAddresses[0]);
        Assert.All(res.CircuitAddresses, c => Assert.True(c.IsCircuit));
        Assert.Equal(new RelayCircuitLimit(TimeSpan.FromMinutes(2), 128 * 1024), res.Limit);
        Assert.Equal(1, t.Server.ReservationCount);
    }

    [Fact]
    public async Task A_peer_dials_another_through_the_relay_identify_ping_and_echo_work()
    {
        await using var t = await StartTrioAsync(Open);
        Assert.Null(t.Reservation.Limit);
        var accepted = WaitForConnection(t.A, t.B.PeerId);
        var conn = await RelayClient.DialViaRelayAsync(t.B, t.CircuitToA).WaitAsync(Deadline);
        Assert.Equal(t.A.PeerId, conn.RemotePeer);
        Assert.True(conn.RemoteAddress.IsCircuit);
        var back = await accepted.WaitAsync(Deadline);
        Assert.True(back.RemoteAddress.IsCircuit);
        Assert.Equal(t.B.PeerId, back.RemoteAddress.PeerId);

        var id = await conn.Identified.WaitAsync(Deadline);
        Assert.NotNull(id);
        Assert.Contains(RelayProtocol.StopProtocolId, id!.Protocols);

        await using (var ping = await PingService.OpenAsync(conn, CancellationToken.None).WaitAsync(Deadline))
        {
            await PingService.PingAsync(ping, TimeProvider.System, CancellationToken.None).WaitAsync(Deadline);
        }

        var payload = Pattern(4 * 1024 * 1024);
        var echo = await conn.OpenStreamAsync(EchoService.ProtocolId, CancellationToken.None).WaitAsync(Deadline);
        var send = Task.Run(async () =>
        {
            await echo.Output.WriteAsync(payload);
            await echo.Output.CompleteAsync();
        });
        var received = new byte[payload.Length];
        var n = 0;
        while (true)
        {
            var r = await echo.Input.ReadAsync().AsTask().WaitAsync(Deadline);
            foreach (var seg in r.Buffer)
            {
                Assert.True(n + seg.Length <= received.Length);
                seg.Span.CopyTo(received.AsSpan(n));
                n += seg.Length;
            }
            echo.Input.AdvanceTo(r.Buffer.End);
            if (r.IsCompleted) break;
        }
        await send.WaitAsync(Deadline);
        Assert.Equal(payload.Length, n);
        Assert.True(received.AsSpan().SequenceEqual(payload));
        await echo.DisposeAsync();
        Assert.Equal(1, t.Server.CircuitCount);

        await conn.DisposeAsync();
        await back.Completion.ContinueWith(_ => { }).WaitAsync(Deadline);
    }

    [Fact]
    public async Task With_the_default_limit_a_large_transfer_resets_the_circuit()
    {
        var logs = new ListLoggerProvider();
        await using var t = await StartTrioAsync(new RelayServerOptions(), logs);
        var conn = await RelayClient.DialViaRelayAsync(t.B, t.CircuitToA).WaitAsync(Deadline);
        Assert.Equal(new RelayCircuitLimit(TimeSpan.FromMinutes(2), 128 * 1024), conn.RelayLimit);
        var inbound = await WaitForConnection(t.A, t.B.PeerId);
        Assert.Equal(new RelayCircuitLimit(TimeSpan.FromMinutes(2), 128 * 1024), inbound.RelayLimit);
        var echo = await conn.OpenStreamAsync(EchoService.ProtocolId, CancellationToken.None).WaitAsync(Deadline);
        var payload = Pattern(256 * 1024);
        _ = Task.Run(async () =>
        {
            try { await echo.Output.WriteAsync(payload); } catch (Exception) { /* the circuit is reset under us */ }
        });
        await conn.Completion.ContinueWith(_ => { }).WaitAsync(Deadline);
        Assert.True(conn.IsClosed);
        // Exactly the budget crossed the relay (the part of a read that still fitted was forwarded), then the cut.
        var closed = await logs.WaitFor("closed after").WaitAsync(Deadline);
        Assert.Contains("data limit", closed);
        Assert.Contains($"closed after {128 * 1024} bytes", closed);
    }

    [Fact]
    public async Task The_duration_limit_resets_the_circuit_and_reservations_expire()
    {
        var logs = new ListLoggerProvider();
        var time = new ManualTimeProvider();
        var options = new RelayServerOptions { Limit = new RelayLimitPolicy { Duration = TimeSpan.FromSeconds(30) }, ReservationTtl = TimeSpan.FromMinutes(5) };
        await using var t = await StartTrioAsync(options, logs, time);
        Assert.Equal(new RelayCircuitLimit(TimeSpan.FromSeconds(30), null), t.Reservation.Limit);
        var conn = await RelayClient.DialViaRelayAsync(t.B, t.CircuitToA).WaitAsync(Deadline);
        Assert.Equal(1, t.Server.CircuitCount);
        time.Advance(TimeSpan.FromSeconds(31));
        await conn.Completion.ContinueWith(_ => { }).WaitAsync(Deadline);
        Assert.Contains("duration limit", await logs.WaitFor("closed after").WaitAsync(Deadline));

        time.Advance(TimeSpan.FromMinutes(5));
        var ex = await Assert.ThrowsAsync<RelayRefusedException>(() => RelayClient.DialViaRelayAsync(t.B, t.CircuitToA).WaitAsync(Deadline));
        Assert.Equal(RelayStatus.NoReservation, ex.Status);
    }

    [Fact]
    public async Task Connect_to_a_peer_without_reservation_is_refused()
    {
        await using var t = await StartTrioAsync(Open);
        var circuit = AddressOf(t.R).Encapsulate("/p2p-circuit").WithPeerId(t.B.PeerId);
        var ex = await Assert.ThrowsAsync<RelayRefusedException>(() => RelayClient.DialViaRelayAsync(t.A, circuit).WaitAsync(Deadline));
        Assert.Equal(RelayStatus.NoReservation, ex.Status);
    }

    [Fact]
    public async Task Reservations_are_capped_in_total_and_per_ip()
    {
        await using (var t = await StartTrioAsync(new RelayServerOptions { MaxReservations = 1 }))
        {
            var ex = await Assert.ThrowsAsync<RelayRefusedException>(() => RelayClient.ReserveAsync(t.B, AddressOf(t.R)).WaitAsync(Deadline));
            Assert.Equal(RelayStatus.ReservationRefused, ex.Status);
            // A refresh of the existing reservation is no new reservation.
            await RelayClient.ReserveAsync(t.A, AddressOf(t.R)).WaitAsync(Deadline);
        }
        await using (var t = await StartTrioAsync(new RelayServerOptions { MaxReservationsPerIp = 1 }))
        {
            var ex = await Assert.ThrowsAsync<RelayRefusedException>(() => RelayClient.ReserveAsync(t.B, AddressOf(t.R)).WaitAsync(Deadline));
            Assert.Equal(RelayStatus.ReservationRefused, ex.Status);
        }
    }

    [Fact]
    public async Task A_reservation_flood_from_one_peer_holds_one_reservation()
    {
        await using var t = await StartTrioAsync(new RelayServerOptions());
        // 200 RESERVEs at once from A: each is answered (a refresh) or its stream is reset past the per-connection
        // stream cap; never a second reservation.
        var floods = Enumerable.Range(0, 200).Select(_ => Task.Run(async () =>
        {
            try { await RelayClient.ReserveAsync(t.A, AddressOf(t.R)); return true; }
            catch (Exception) { return false; }
        })).ToList();
        var granted = (await Task.WhenAll(floods).WaitAsync(Deadline)).Count(ok => ok);
        Assert.True(granted >= 1, "no RESERVE of the flood was answered");
        Assert.Equal(1, t.Server.ReservationCount);
        // The relay keeps serving others.
        await RelayClient.ReserveAsync(t.B, AddressOf(t.R)).WaitAsync(Deadline);
        Assert.Equal(2, t.Server.ReservationCount);
    }

    [Fact]
    public async Task A_reservation_flood_from_one_ip_is_capped_at_the_per_ip_limit()
    {
        await using var r = await StartAsync();
        using var server = RelayServer.Register(r, new RelayServerOptions { MaxReservationsPerIp = 8, MaxReservations = 128 });
        var peers = await Task.WhenAll(Enumerable.Range(0, 24).Select(_ => StartAsync()));
        try
        {
            var results = await Task.WhenAll(peers.Select(async p =>
            {
                try { await RelayClient.ReserveAsync(p, AddressOf(r)); return RelayStatus.Ok; }
                catch (RelayRefusedException ex) { return ex.Status; }
            })).WaitAsync(Deadline);
            Assert.Equal(8, results.Count(x => x == RelayStatus.Ok));
            Assert.Equal(16, results.Count(x => x == RelayStatus.ReservationRefused));
            Assert.Equal(8, server.ReservationCount);
        }
        finally
        {
            foreach (var p in peers) await p.DisposeAsync();
        }
    }

    [Theory]
    [InlineData(new byte[] { 0x00 })]                  // no type
    [InlineData(new byte[] { 0x04, 0x08, 0x00, 0x12, 0x05 })] // peer field cut short
    [InlineData(new byte[] { 0xFF, 0xFF, 0x03 })]      // length beyond the limit
    public async Task Malformed_stop_messages_are_answered_malformed(byte[] bytes)
    {
        await using var a = await StartAsync();
        RelayClient.Register(a);
        await using var fakeRelay = await StartAsync();
        var answer = await SendRawStopAsync(fakeRelay, a, bytes);
        Assert.Equal(StopMessageType.Status, answer.Type);
        Assert.Equal(RelayStatus.MalformedMessage, answer.Status);
        Assert.Equal(0, a.RelayedConnectionCount);
    }

    [Fact]
    public async Task An_unexpected_stop_message_is_answered_unexpected()
    {
        await using var a = await StartAsync();
        RelayClient.Register(a);
        await using var fakeRelay = await StartAsync();
        var answer = await SendRawStopAsync(fakeRelay, a, new StopMessage { Type = StopMessageType.Status, Status = RelayStatus.Ok }.ToLengthPrefixedArray());
        Assert.Equal(RelayStatus.UnexpectedMessage, answer.Status);
    }

    private static async Task<StopMessage> SendRawStopAsync(Libp2pHost from, Libp2pHost to, byte[] bytes)
    {
        var (stream, conn) = await from.NewStreamAsync(AddressOf(to), RelayProtocol.StopProtocolId).WaitAsync(Deadline);
        await stream.Output.WriteAsync(bytes).AsTask().WaitAsync(Deadline);
        var answer = (await stream.Input.ReadAsync<StopMessage?>(StopMessage.TryRead, CancellationToken.None).AsTask().WaitAsync(Deadline))!;
        await stream.DisposeAsync();
        Assert.False(conn.IsClosed);
        return answer;
    }

    [Fact]
    public async Task Circuit_cap_answers_resource_limit_exceeded()
    {
        await using var t = await StartTrioAsync(new RelayServerOptions { Limit = RelayLimitPolicy.Off, MaxCircuits = 0 });
        var ex = await Assert.ThrowsAsync<RelayRefusedException>(() => RelayClient.DialViaRelayAsync(t.B, t.CircuitToA).WaitAsync(Deadline));
        Assert.Equal(RelayStatus.ResourceLimitExceeded, ex.Status);
    }

    private static async Task<HopMessage> SendRawHopAsync(Libp2pHost from, Libp2pHost relay, byte[] bytes)
    {
        var (stream, _) = await from.NewStreamAsync(AddressOf(relay), RelayProtocol.HopProtocolId).WaitAsync(Deadline);
        await stream.Output.WriteAsync(bytes).AsTask().WaitAsync(Deadline);
        var answer = (await stream.Input.ReadAsync<HopMessage?>(HopMessage.TryRead, CancellationToken.None).AsTask().WaitAsync(Deadline))!;
        var end = await stream.Input.ReadAsync().AsTask().WaitAsync(Deadline);
        Assert.True(end.IsCompleted && end.Buffer.IsEmpty);
        stream.Input.AdvanceTo(end.Buffer.End);
        await stream.DisposeAsync();
        return answer;
    }

    [Theory]
    [InlineData(new byte[] { 0x00 })]                  // no type
    [InlineData(new byte[] { 0x03, 0x12, 0x05, 0x01 })] // peer field cut short
    [InlineData(new byte[] { 0xFF, 0xFF, 0x03 })]      // length beyond the limit
    public async Task Malformed_hop_messages_are_answered_malformed(byte[] bytes)
    {
        await using var r = await StartAsync();
        using var server = RelayServer.Register(r);
        await using var b = await StartAsync();
        var answer = await SendRawHopAsync(b, r, bytes);
        Assert.Equal(HopMessageType.Status, answer.Type);
        Assert.Equal(RelayStatus.MalformedMessage, answer.Status);
    }

    [Fact]
    public async Task An_unexpected_hop_message_is_answered_unexpected()
    {
        await using var r = await StartAsync();
        using var server = RelayServer.Register(r);
        await using var b = await StartAsync();
        var answer = await SendRawHopAsync(b, r, new HopMessage { Type = HopMessageType.Status, Status = RelayStatus.Ok }.ToLengthPrefixedArray());
        Assert.Equal(RelayStatus.UnexpectedMessage, answer.Status);
    }

    [Fact]
    public async Task After_a_relay_restart_reserving_on_a_new_relay_works()
    {
        await using var a = await StartAsync();
        RelayClient.Register(a);
        var r1 = await StartAsync();
        var s1 = RelayServer.Register(r1);
        await RelayClient.ReserveAsync(a, AddressOf(r1)).WaitAsync(Deadline);
        s1.Dispose();
        await r1.DisposeAsync();

        await using var r2 = await StartAsync();
        using var s2 = RelayServer.Register(r2);
        var res = await RelayClient.ReserveAsync(a, AddressOf(r2)).WaitAsync(Deadline);
        Assert.Equal(r2.PeerId, res.Relay);
        Assert.Equal(1, s2.ReservationCount);
    }

    [Fact]
    public void Js_millisecond_durations_are_recognised()
    {
        Assert.Equal(TimeSpan.FromMinutes(2), RelayClient.DurationFromWire(120));
        Assert.Equal(TimeSpan.FromMinutes(2), RelayClient.DurationFromWire(120_000));
        Assert.Equal(TimeSpan.FromDays(1), RelayClient.DurationFromWire(86_400));
    }
}
