using System.Net;
using System.Net.Sockets;
using Weft.P2P.Host;
using Weft.P2P.Multistream;
using Weft.P2P.Perf;
using Weft.P2P.Ping;
using Weft.P2P.Tests.Support;
using Weft.P2P.Transport;
using Weft.Wire;
using Weft.Wire.Multiformats;
using static Weft.P2P.Tests.Host.Hosts;

namespace Weft.P2P.Tests.Host;

public class HostTests
{
    [Fact]
    public async Task Dial_upgrades_and_identify_runs_both_ways()
    {
        await using var a = await StartAsync();
        await using var b = await StartAsync();
        var conn = await a.DialAsync(AddressOf(b)).WaitAsync(Deadline);
        Assert.Equal(b.PeerId, conn.RemotePeer);
        Assert.Equal("/yamux/1.0.0", conn.Muxer);

        var idB = await conn.Identified.WaitAsync(Deadline);
        Assert.NotNull(idB);
        Assert.StartsWith("weft/", idB!.AgentVersion);
        Assert.Equal("ipfs/0.1.0", idB.ProtocolVersion);
        Assert.Contains(PingService.ProtocolId, idB.Protocols);
        Assert.Contains("/ipfs/id/1.0.0", idB.Protocols);
        Assert.Contains(b.ListenAddresses[0], idB.ListenAddrs);
        Assert.Equal(conn.LocalAddress, idB.ObservedAddr);
        Assert.NotNull(idB.SignedPeerRecord);

        var back = await WaitForConnection(b, a.PeerId);
        var idA = await back.Identified.WaitAsync(Deadline);
        Assert.NotNull(idA);
        Assert.Equal(back.RemoteAddress, conn.LocalAddress);
        Assert.Equal(back.LocalAddress, idA!.ObservedAddr);
        Assert.Equal(a.PeerId, b.Peers.Get(a.PeerId)!.PublicKey!.ToPeerId());
        Assert.Equal(idB.AgentVersion, a.Peers.Get(b.PeerId)!.AgentVersion);
    }

    [Fact]
    public async Task A_new_protocol_reaches_connected_peers_by_identify_push()
    {
        await using var a = await StartAsync();
        await using var b = await StartAsync();
        var conn = await a.DialAsync(AddressOf(b)).WaitAsync(Deadline);
        Assert.NotNull(await conn.Identified.WaitAsync(Deadline));
        Assert.DoesNotContain("/weft/test-push/1.0.0", a.Peers.Get(b.PeerId)!.Protocols);

        var pushed = new TaskCompletionSource<PeerInfo>(TaskCreationOptions.RunContinuationsAsynchronously);
        a.Peers.Updated += p => { if (p.Peer == b.PeerId && p.Protocols.Contains("/weft/test-push/1.0.0")) pushed.TrySetResult(p); };
        b.Handle("/weft/test-push/1.0.0", (s, ct) => Task.CompletedTask);
        var info = await pushed.Task.WaitAsync(Deadline);
        Assert.Contains(PingService.ProtocolId, info.Protocols);

        var gone = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        a.Peers.Updated += p => { if (p.Peer == b.PeerId && !p.Protocols.Contains("/weft/test-push/1.0.0")) gone.TrySetResult(); };
        b.Unhandle("/weft/test-push/1.0.0");
        await gone.Task.WaitAsync(Deadline);
    }

    [Fact]
    public async Task Any_byte_stream_can_be_upgraded_into_a_connection()
    {
        // What a relayed circuit will do: two hosts joined by a plain duplex pipe, not a socket.
        await using var a = await StartAsync();
        await using var b = await StartAsync();
        var (pa, pb) = Weft.P2P.Transport.DuplexPipePair.Create();
        var circuit = Multiaddr.Parse("/ip4/127.0.0.1/tcp/1/p2p-circuit");
        RawConnection Raw(System.IO.Pipelines.IDuplexPipe p) =>
            new(p, circuit, circuit, () => { p.Input.Complete(); p.Output.Complete(); }, () => ValueTask.CompletedTask);
        var inbound = b.UpgradeAsync(Raw(pb), Direction.Inbound, null);
        var outbound = await a.UpgradeAsync(Raw(pa), Direction.Outbound, b.PeerId).WaitAsync(Deadline);
        Assert.Equal(b.PeerId, outbound.RemotePeer);
        Assert.Equal(a.PeerId, (await inbound.WaitAsync(Deadline)).RemotePeer);
        Assert.Same(outbound, a.GetConnection(b.PeerId));
        await using var ps = await PingService.OpenAsync(outbound, default).WaitAsync(Deadline);
        await PingService.PingAsync(ps, a.Time, default).WaitAsync(Deadline);
        Assert.NotNull(await outbound.Identified.WaitAsync(Deadline));
    }

    [Fact]
    public async Task Ping_echo_and_perf_work()
    {
        await using var a = await StartAsync();
        await using var b = await StartAsync();
        var conn = await a.DialAsync(AddressOf(b)).WaitAsync(Deadline);

        await using (var ps = await PingService.OpenAsync(conn, default))
        {
            for (var i = 0; i < 5; i++)
                Assert.True(await PingService.PingAsync(ps, a.Time, default).WaitAsync(Deadline) > TimeSpan.Zero);
        }

        var data = Pattern(16 << 20);
        var echo = await conn.OpenStreamAsync("/echo/1.0.0", default).WaitAsync(Deadline);
        var send = Task.Run(async () =>
        {
            await echo.Output.WriteAsync(data);
            await echo.Output.CompleteAsync();
        });
        var got = new MemoryStream();
        await echo.Input.CopyToAsync(got).WaitAsync(Deadline);
        await send.WaitAsync(Deadline);
        Assert.True(data.AsSpan().SequenceEqual(got.ToArray()));

        var perf = await PerfService.RunAsync(conn, 8 << 20, 4 << 20, a.Time, default).WaitAsync(Deadline);
        Assert.Equal(8 << 20, perf.UploadBytes);
        Assert.Equal(4 << 20, perf.DownloadBytes);
        Assert.True(perf.UploadSeconds > 0 && perf.DownloadSeconds > 0);
    }

    [Fact]
    public async Task One_connection_per_peer_is_reused_even_by_concurrent_dials()
    {
        await using var a = await StartAsync();
        await using var b = await StartAsync();
        var dials = Enumerable.Range(0, 8).Select(_ => a.DialAsync(AddressOf(b))).ToArray();
        var conns = await Task.WhenAll(dials).WaitAsync(Deadline);
        Assert.All(conns, c => Assert.Same(conns[0], c));
        Assert.Same(conns[0], await a.DialAsync(AddressOf(b)).WaitAsync(Deadline));
        Assert.Equal(1, a.ConnectionCount);
    }

    [Fact]
    public async Task Dial_tries_all_addresses_at_once_and_the_good_one_wins()
    {
        await using var a = await StartAsync();
        await using var b = await StartAsync();
        // A port nobody listens on (bound and closed again), plus an address with no transport.
        var dead = new TcpListener(IPAddress.Loopback, 0);
        dead.Start();
        var deadPort = ((IPEndPoint)dead.LocalEndpoint).Port;
        dead.Stop();
        var addrs = new[]
        {
            Multiaddr.Parse($"/ip4/127.0.0.1/tcp/{deadPort}"),
            Multiaddr.Parse("/ip4/127.0.0.1/udp/9/quic-v1"),
            b.ListenAddresses[0],
        };
        var conn = await a.DialPeerAsync(b.PeerId, addrs).WaitAsync(Deadline);
        Assert.Equal(b.PeerId, conn.RemotePeer);
    }

    [Fact]
    public async Task Dial_of_only_bad_addresses_reports_each_error()
    {
        await using var a = await StartAsync();
        await using var b = await StartAsync();
        var dead = new TcpListener(IPAddress.Loopback, 0);
        dead.Start();
        var deadPort = ((IPEndPoint)dead.LocalEndpoint).Port;
        dead.Stop();
        var ex = await Assert.ThrowsAsync<DialFailedException>(() =>
            a.DialPeerAsync(b.PeerId, [Multiaddr.Parse($"/ip4/127.0.0.1/tcp/{deadPort}")])).WaitAsync(Deadline);
        Assert.Single(ex.Errors);
        Assert.Contains(deadPort.ToString(), ex.Message);
    }

    [Fact]
    public async Task Wrong_peer_id_is_refused()
    {
        await using var a = await StartAsync();
        await using var b = await StartAsync();
        await using var c = await StartAsync();
        var lie = b.ListenAddresses[0].Encapsulate("/p2p/" + c.PeerId);
        var ex = await Assert.ThrowsAsync<DialFailedException>(() => a.DialAsync(lie)).WaitAsync(Deadline);
        Assert.Contains(c.PeerId.ToString(), ex.Message);
        Assert.Equal(0, a.ConnectionCount);
    }

    [Fact]
    public async Task Unknown_protocol_is_refused_and_the_connection_keeps_working()
    {
        await using var a = await StartAsync();
        await using var b = await StartAsync();
        var conn = await a.DialAsync(AddressOf(b)).WaitAsync(Deadline);
        await Assert.ThrowsAsync<ProtocolNotSupportedException>(() => conn.OpenStreamAsync("/no/such/1.0.0", default)).WaitAsync(Deadline);
        await using var ps = await PingService.OpenAsync(conn, default).WaitAsync(Deadline);
        await PingService.PingAsync(ps, a.Time, default).WaitAsync(Deadline);
        Assert.False(conn.IsClosed);
    }

    [Fact]
    public async Task Same_psk_connects_and_a_different_psk_is_refused_cleanly_on_both_sides()
    {
        var k1 = Enumerable.Range(0, 32).Select(i => (byte)i).ToArray();
        var k2 = Enumerable.Range(1, 32).Select(i => (byte)i).ToArray();
        var logs = new ListLoggerProvider();
        await using var a = await StartAsync(o => o with { PrivateNetworkKey = k1 });
        await using var b = await StartAsync(o => o with { PrivateNetworkKey = k1, Timeouts = new HostTimeouts { HandshakeStep = TimeSpan.FromSeconds(2) } }, logs);
        await using var c = await StartAsync(o => o with { PrivateNetworkKey = k2, Timeouts = new HostTimeouts { HandshakeStep = TimeSpan.FromSeconds(2) } });

        var ok = await a.DialAsync(AddressOf(b)).WaitAsync(Deadline);
        await using (var ps = await PingService.OpenAsync(ok, default).WaitAsync(Deadline))
            await PingService.PingAsync(ps, a.Time, default).WaitAsync(Deadline);

        var ex = await Assert.ThrowsAsync<DialFailedException>(() => c.DialAsync(AddressOf(b))).WaitAsync(Deadline);
        Assert.True(ex.Message.Contains("PSK"), ex.Message);
        Assert.Contains("PSK", await logs.WaitFor("rejected").WaitAsync(Deadline));
        Assert.Equal(0, c.ConnectionCount);
        Assert.Equal(1, b.ConnectionCount); // a's connection is untouched
    }

    [Fact]
    public async Task No_psk_dialer_cannot_reach_a_private_network_host()
    {
        var k1 = Enumerable.Range(0, 32).Select(i => (byte)i).ToArray();
        await using var a = await StartAsync();
        await using var b = await StartAsync(o => o with { PrivateNetworkKey = k1, Timeouts = new HostTimeouts { HandshakeStep = TimeSpan.FromSeconds(2) } });
        await Assert.ThrowsAsync<DialFailedException>(() => a.DialAsync(AddressOf(b))).WaitAsync(Deadline);
        Assert.Equal(0, b.ConnectionCount);
    }

    [Fact]
    public async Task Closing_a_host_closes_its_connections_at_the_peer()
    {
        var a = await StartAsync();
        await using var b = await StartAsync();
        var conn = await b.DialAsync(AddressOf(a)).WaitAsync(Deadline);
        await a.DisposeAsync();
        await Assert.ThrowsAnyAsync<Exception>(async () =>
        {
            await conn.Completion.WaitAsync(Deadline);
            throw new IOException("closed");
        });
        Assert.True(conn.IsClosed);
    }

    [Fact]
    public async Task Listening_on_ipv6_loopback_works()
    {
        if (!Socket.OSSupportsIPv6) throw new InvalidOperationException("this machine has no IPv6; the test needs it");
        await using var a = await StartAsync();
        await using var b = await StartAsync(o => o with { ListenAddresses = [Multiaddr.Parse("/ip6/::1/tcp/0")] });
        Assert.StartsWith("/ip6/::1/tcp/", b.ListenAddresses[0].ToString());
        var conn = await a.DialAsync(AddressOf(b)).WaitAsync(Deadline);
        Assert.Equal(b.PeerId, conn.RemotePeer);
    }
}
