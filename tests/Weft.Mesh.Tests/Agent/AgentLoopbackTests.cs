using System.Buffers;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Weft.Mesh.Relays;
using Weft.Mesh.Tunnel;
using Weft.P2P.IO;
using Weft.Wire.Tunnel;
using Xunit.Abstractions;

namespace Weft.Mesh.Tests.Agent;

public sealed class AgentLoopbackTests(ITestOutputHelper output)
{
    private static bool AllReserved(IReadOnlyList<RelayLinkState> links) => links.Count > 0 && links.All(l => l.Status == RelayLinkStatus.Up && l.Reserved);

    [Fact]
    public async Task A_node_reaches_another_through_a_relay_and_new_streams_take_the_other_relay_when_it_dies()
    {
        await using var mesh = new LoopbackMesh();
        mesh.DeclareRelays("r1", "r2");
        await mesh.StartAsync("r1");
        await mesh.StartAsync("r2");
        var a = await mesh.StartAsync("a");
        var b = await mesh.StartAsync("b");
        await LoopbackMesh.WaitRelays(a, AllReserved, "reservations on both relays");
        await LoopbackMesh.WaitRelays(b, AllReserved, "reservations on both relays");
        Assert.True(mesh["r1"].Config.IsRelay);
        Assert.DoesNotContain(mesh["r1"].Relays.Links, l => l.Reserved); // a relay reserves nowhere

        var first = await a.PingNodeAsync("b", 1, CancellationToken.None);
        Assert.True(first.Ok, first.Error);
        Assert.Equal("relay", first.Path);
        var used = first.Via!;
        Assert.Contains(used, new[] { "r1", "r2" });
        var other = used == "r1" ? "r2" : "r1";

        // The relay in use dies; the very next new stream succeeds, not through it. (On loopback b's own address works
        // too, so the stream may go direct; behind real NATs the lab tests show it takes the other relay.)
        var wasPreferred = a.Relays.Preferred is { } pref && a.Relays.NameOf(pref) == used;
        var sw = Stopwatch.StartNew();
        await mesh.StopAsync(used);
        var after = await a.PingNodeAsync("b", 2, CancellationToken.None);
        output.WriteLine($"relay {used} stopped; next stream {(after.Ok ? "ok" : "failed")} via {after.Via} after {sw.Elapsed.TotalMilliseconds:0.0} ms (open {after.OpenMs:0.0} ms)");
        Assert.True(after.Ok, after.Error);
        Assert.NotEqual(used, after.Via);
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(1), $"failover took {sw.Elapsed}");
        await LoopbackMesh.WaitRelays(a, l => l.Single(x => x.NodeName == used).Status == RelayLinkStatus.Down, $"{used} marked down");
        Assert.Equal(other, a.Relays.NameOf(a.Relays.Preferred!));

        // It comes back: so do the reservations on it.
        await mesh.StartAsync(used);
        await LoopbackMesh.WaitRelays(a, AllReserved, $"a reservation on the restarted {used}");
        await LoopbackMesh.WaitRelays(b, AllReserved, $"a reservation on the restarted {used}");
        var status = a.Status();
        Assert.True(status.Ready);
        Assert.Equal(wasPreferred ? 1 : 0, status.Failovers); // a failover is the death of the preferred relay
        Assert.Contains(status.Peers, p => p.Name == "b" && p.Kind is "relay" or "direct");
    }

    [Fact]
    public async Task Tcp_tunnel_carries_both_directions_and_half_close()
    {
        await using var mesh = new LoopbackMesh();
        mesh.DeclareRelays("r1");
        await mesh.StartAsync("r1");
        var a = await mesh.StartAsync("a");
        var b = await mesh.StartAsync("b");
        await LoopbackMesh.WaitRelays(a, AllReserved, "reserved");
        await LoopbackMesh.WaitRelays(b, AllReserved, "reserved");

        // An endpoint on b's side that reads until EOF, then answers with what it got and closes.
        using var server = new TcpListener(IPAddress.Loopback, 0);
        server.Start();
        var served = Task.Run(async () =>
        {
            using var s = await server.AcceptSocketAsync();
            var buf = new byte[65536];
            long total = 0;
            uint sum = 0;
            int n;
            while ((n = await s.ReceiveAsync(buf)) > 0)
            {
                for (var i = 0; i < n; i++) sum = sum * 31 + buf[i];
                total += n;
            }
            await s.SendAsync(Encoding.ASCII.GetBytes($"got {total} sum {sum}"));
            s.Shutdown(SocketShutdown.Both);
        });

        var peerB = a.Directory.Resolve("b")!;
        await using var tunnel = await a.Tunnel.OpenTcpAsync(peerB, "b", (IPEndPoint)server.LocalEndpoint, CancellationToken.None);
        var payload = new byte[3 * 1024 * 1024 + 17];
        new Random(5).NextBytes(payload);
        uint expected = 0;
        foreach (var x in payload) expected = expected * 31 + x;
        await tunnel.Stream.Output.WriteAsync(payload);
        await tunnel.Stream.Output.CompleteAsync(); // half-close: the endpoint sees EOF, our read side stays open
        var answer = new MemoryStream();
        while (true)
        {
            var r = await tunnel.Stream.Input.ReadAsync().AsTask().WaitAsync(LoopbackMesh.Deadline);
            foreach (var seg in r.Buffer) answer.Write(seg.Span);
            tunnel.Stream.Input.AdvanceTo(r.Buffer.End);
            if (r.IsCompleted) break;
        }
        Assert.Equal($"got {payload.Length} sum {expected}", Encoding.ASCII.GetString(answer.ToArray()));
        await served.WaitAsync(LoopbackMesh.Deadline);
        var counted = b.Tunnel.PerPeer[a.Host.PeerId];
        Assert.True(counted.RelayedBytes + counted.DirectBytes >= payload.Length); // on the path it took (relayed, or direct once discovery met)
    }

    [Fact]
    public async Task Udp_tunnel_keeps_datagram_boundaries()
    {
        await using var mesh = new LoopbackMesh();
        mesh.DeclareRelays("r1");
        await mesh.StartAsync("r1");
        var a = await mesh.StartAsync("a");
        var b = await mesh.StartAsync("b");
        await LoopbackMesh.WaitRelays(a, AllReserved, "reserved");
        await LoopbackMesh.WaitRelays(b, AllReserved, "reserved");

        using var echo = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        echo.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        using var stopEcho = new CancellationTokenSource();
        var echoing = Task.Run(async () =>
        {
            var buf = new byte[65536];
            while (!stopEcho.IsCancellationRequested)
            {
                var r = await echo.ReceiveFromAsync(buf, new IPEndPoint(IPAddress.Any, 0), stopEcho.Token);
                await echo.SendToAsync(buf.AsMemory(0, r.ReceivedBytes), r.RemoteEndPoint, stopEcho.Token);
            }
        });
        var tunnel = await a.Tunnel.OpenUdpAsync(a.Directory.Resolve("b")!, "b", (IPEndPoint)echo.LocalEndPoint!, CancellationToken.None);
        var sizes = new[] { 1, 0, 512, 1400, 8192, 65000, 3 };
        for (var round = 0; round < 20; round++)
        {
            foreach (var size in sizes)
            {
                var d = new byte[size];
                if (size > 0) d[0] = (byte)round;
                UdpFraming.Write(tunnel.Stream.Output, d);
            }
            await tunnel.Stream.Output.FlushAsync();
            foreach (var size in sizes)
            {
                var back = await UdpFraming.ReadAsync(tunnel.Stream.Input, 65507, CancellationToken.None).AsTask().WaitAsync(LoopbackMesh.Deadline);
                Assert.NotNull(back);
                Assert.Equal(size, back!.Length);
                if (size > 0) Assert.Equal((byte)round, back[0]);
            }
        }
        tunnel.Stream.Reset();
        await stopEcho.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => echoing);
    }

    [Fact]
    public async Task Bad_tunnel_requests_are_refused_and_the_node_keeps_serving()
    {
        await using var mesh = new LoopbackMesh();
        var a = await mesh.StartAsync("a");
        var b = await mesh.StartAsync("b", t => t with { DeniedTargets = Tunnel.TunnelOptions.DefaultDeniedTargets });
        var peerB = b.Host.PeerId;
        a.Host.Peers.AddAddresses(peerB, b.Host.ListenAddresses, DateTimeOffset.UtcNow);
        a.Directory.Learn("b", peerB, "test");

        // Loopback is refused by default (the admin API lives there).
        using var server = new TcpListener(IPAddress.Loopback, 0);
        server.Start();
        var refused = await Assert.ThrowsAsync<TunnelRefusedException>(() => a.Tunnel.OpenTcpAsync(peerB, "b", (IPEndPoint)server.LocalEndpoint, CancellationToken.None));
        Assert.Contains("FAILED", refused.Message, StringComparison.OrdinalIgnoreCase);

        // Garbage instead of a Proxy message: that stream is reset, the connection and the node carry on.
        var conn = await a.Dialer.ConnectAsync(peerB, CancellationToken.None);
        var raw = await conn.OpenStreamAsync(ProxyMessage.ProtocolId, CancellationToken.None);
        await raw.Output.WriteAsync(new byte[] { 0x05, 0x0b, 0xff, 0xff, 0xff, 0xff });
        await Assert.ThrowsAnyAsync<Exception>(async () =>
        {
            var r = await raw.Input.ReadAsync().AsTask().WaitAsync(LoopbackMesh.Deadline);
            if (r.IsCompleted && r.Buffer.IsEmpty) throw new EndOfStreamException();
        });
        // An oversized length prefix is refused before the body arrives.
        var big = await conn.OpenStreamAsync(ProxyMessage.ProtocolId, CancellationToken.None);
        var w = new ArrayBufferWriter<byte>();
        Wire.Multiformats.Varint.Write(w, 1 << 20);
        await big.Output.WriteAsync(w.WrittenMemory);
        await Assert.ThrowsAnyAsync<Exception>(async () =>
        {
            var r = await big.Input.ReadAsync().AsTask().WaitAsync(LoopbackMesh.Deadline);
            if (r.IsCompleted && r.Buffer.IsEmpty) throw new EndOfStreamException();
        });
        Assert.False(conn.IsClosed);
        var ping = await a.PingNodeAsync("b", 1, CancellationToken.None);
        Assert.True(ping.Ok, ping.Error);
        Assert.Equal("direct", ping.Path);
    }
}
