using Weft.P2P.Host;
using Weft.P2P.Relay;
using Weft.Wire.Identity;
using Weft.Wire.Multiformats;
using static Weft.P2P.Tests.Host.Hosts;

namespace Weft.P2P.Tests.Relay;

public class RelayReservationsTests
{
    private static Task<Libp2pHost> StartRelayAsync(Ed25519PrivateKey key, int port, RelayServerOptions options, out RelayServer server)
    {
        var host = new Libp2pHost(new HostOptions { Key = key, ListenAddresses = [Multiaddr.Parse($"/ip4/127.0.0.1/tcp/{port}")] });
        server = RelayServer.Register(host, options);
        return host.StartAsync().ContinueWith(_ => host);
    }

    private static async Task<T> Next<T>(Action<Action<T>> subscribe)
    {
        var tcs = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
        subscribe(v => tcs.TrySetResult(v));
        return await tcs.Task.WaitAsync(Deadline);
    }

    [Fact]
    public async Task Reserves_publishes_circuit_addresses_and_the_swarm_dials_them()
    {
        var relayKey = Ed25519PrivateKey.Generate();
        await using var r = await StartRelayAsync(relayKey, 0, new RelayServerOptions { Limit = RelayLimitPolicy.Off }, out var server);
        await using var b = await StartAsync();
        RelayClient.Register(b);
        await using var res = new RelayReservations(b, [AddressOf(r)]);
        var reserved = Next<RelayReservationInfo>(h => res.Reserved += h);
        res.Start();
        var info = await reserved;

        Assert.Equal(r.PeerId, info.Relay);
        var circuit = AddressOf(r).Encapsulate("/p2p-circuit");
        Assert.Contains(circuit, res.CircuitAddresses);
        Assert.Contains(circuit, b.AdvertisedAddresses);
        Assert.Equal(1, server.ReservationCount);

        // A peer that knows only B's circuit address reaches it through the ordinary swarm dial.
        await using var a = await StartAsync();
        RelayClient.Register(a);
        var conn = await a.DialPeerAsync(b.PeerId, [circuit.WithPeerId(b.PeerId)]).WaitAsync(Deadline);
        Assert.True(conn.IsRelayed);
        var payload = Pattern(200_000);
        var echoed = await EchoAsync(conn, payload);
        Assert.Equal(payload, echoed);
        Assert.Equal(1, a.RelayedConnectionCount);
    }

    [Fact]
    public async Task Refreshes_before_the_reservation_expires()
    {
        await using var r = await StartRelayAsync(Ed25519PrivateKey.Generate(), 0, new RelayServerOptions { ReservationTtl = TimeSpan.FromSeconds(3) }, out _);
        await using var b = await StartAsync();
        RelayClient.Register(b);
        await using var res = new RelayReservations(b, [AddressOf(r)], new RelayReservationOptions { RefreshAtRemaining = 0.5 });
        var count = 0;
        var second = new TaskCompletionSource<RelayReservationInfo>(TaskCreationOptions.RunContinuationsAsynchronously);
        res.Reserved += i => { if (Interlocked.Increment(ref count) == 2) second.TrySetResult(i); };
        var firstExpire = DateTimeOffset.MaxValue;
        res.Reserved += i => { if (firstExpire == DateTimeOffset.MaxValue) firstExpire = i.Expire; };
        res.Start();
        var refreshed = await second.Task.WaitAsync(Deadline);
        // The refresh came while the first reservation was still valid, and it extends it.
        Assert.True(DateTimeOffset.UtcNow < firstExpire.AddSeconds(1), "refreshed after expiry");
        Assert.True(refreshed.Expire >= firstExpire);
        Assert.True(res.Active.ContainsKey(r.PeerId));
    }

    [Fact]
    public async Task Reserves_again_after_the_relay_restarts_and_withdraws_the_address_meanwhile()
    {
        var relayKey = Ed25519PrivateKey.Generate();
        var r1 = await StartRelayAsync(relayKey, 0, new RelayServerOptions(), out var s1);
        var relayAddr = AddressOf(r1);
        var port = r1.ListenEndPoints[0].Port;
        await using var b = await StartAsync();
        RelayClient.Register(b);
        await using var res = new RelayReservations(b, [relayAddr], new RelayReservationOptions { MinRetryDelay = TimeSpan.FromMilliseconds(50), MaxRetryDelay = TimeSpan.FromMilliseconds(400) });
        var first = Next<RelayReservationInfo>(h => res.Reserved += h);
        res.Start();
        await first;

        var lost = Next<(PeerId, string)>(h => res.Lost += (p, why) => h((p, why)));
        s1.Dispose();
        await r1.DisposeAsync();
        var (lostRelay, _) = await lost;
        Assert.Equal(relayKey.PeerId, lostRelay);
        Assert.DoesNotContain(b.AdvertisedAddresses, a => a.IsCircuit);

        var again = Next<RelayReservationInfo>(h => res.Reserved += h);
        await using var r2 = await StartRelayAsync(relayKey, port, new RelayServerOptions(), out var s2);
        var info = await again;
        Assert.Equal(relayKey.PeerId, info.Relay);
        Assert.Equal(1, s2.ReservationCount);
        Assert.Contains(b.AdvertisedAddresses, a => a.IsCircuit);
        s2.Dispose();
    }

    [Fact]
    public async Task A_refusing_relay_is_retried_with_backoff_and_nothing_is_published()
    {
        await using var r = await StartRelayAsync(Ed25519PrivateKey.Generate(), 0, new RelayServerOptions { MaxReservations = 0 }, out _);
        await using var b = await StartAsync();
        RelayClient.Register(b);
        await using var res = new RelayReservations(b, [AddressOf(r)], new RelayReservationOptions { MinRetryDelay = TimeSpan.FromMilliseconds(20) });
        var refusals = 0;
        var three = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        // Count attempts through the relay's refusal metric: the relay answers each RESERVE.
        using var listener = new System.Diagnostics.Metrics.MeterListener();
        listener.InstrumentPublished = (i, l) => { if (i.Meter.Name == RelayServer.MeterName && i.Name == "weft_relay_refusals") l.EnableMeasurementEvents(i); };
        listener.SetMeasurementEventCallback<long>((_, _, _, _) => { if (Interlocked.Increment(ref refusals) >= 3) three.TrySetResult(); });
        listener.Start();
        res.Start();
        await three.Task.WaitAsync(Deadline);
        Assert.Empty(res.Active);
        Assert.DoesNotContain(b.AdvertisedAddresses, a => a.IsCircuit);
    }

    [Fact]
    public void Relay_addresses_without_a_peer_id_are_rejected()
    {
        var host = new Libp2pHost(new HostOptions { Key = Ed25519PrivateKey.Generate() });
        var ex = Assert.Throws<ArgumentException>(() => new RelayReservations(host, [Multiaddr.Parse("/ip4/127.0.0.1/tcp/4001")]));
        Assert.Contains("/p2p/", ex.Message);
    }
}
