using System.IO.Pipelines;
using System.Security.Cryptography;
using Weft.P2P.Tests.Support;
using Weft.P2P.Yamux;
using Weft.Wire;
using Weft.Wire.Yamux;
using static Weft.P2P.Tests.Yamux.YamuxTestKit;

namespace Weft.P2P.Tests.Yamux;

public class YamuxSessionTests
{
    [Fact]
    public async Task Open_accept_and_echo()
    {
        var (client, server) = Pair();
        await using var _c = client;
        await using var _s = server;

        var echo = Task.Run(async () =>
        {
            var s = await server.AcceptStreamAsync();
            Assert.NotNull(s);
            Assert.False(s!.IsOutbound);
            var data = await ReadToEndAsync(s.Input);
            await s.Output.WriteAsync(data);
            await s.Output.CompleteAsync();
            return s.Id;
        });

        var stream = await client.OpenStreamAsync(default).Within();
        Assert.Equal(1u, stream.Id);
        Assert.True(stream.IsOutbound);
        await stream.Output.WriteAsync("hello yamux"u8.ToArray());
        await stream.Output.CompleteAsync();
        var back = await ReadToEndAsync(stream.Input).Within();
        Assert.Equal("hello yamux"u8.ToArray(), back);
        Assert.Equal(1u, await echo.Within());
    }

    [Fact]
    public async Task Stream_ids_are_odd_for_the_initiator_and_even_for_the_responder()
    {
        var (client, server) = Pair();
        await using var _c = client;
        await using var _s = server;
        var c1 = await client.OpenStreamAsync(default);
        var c2 = await client.OpenStreamAsync(default);
        var s1 = await server.OpenStreamAsync(default);
        var s2 = await server.OpenStreamAsync(default);
        Assert.Equal([1u, 3u, 2u, 4u], new[] { c1.Id, c2.Id, s1.Id, s2.Id });

        // Both directions of opening work.
        await s1.Output.WriteAsync(new byte[] { 42 });
        var accepted = await client.AcceptStreamAsync().Within();
        Assert.Equal(2u, accepted!.Id);
        Assert.Equal(new byte[] { 42 }, await ReadExactlyAsync(accepted.Input, 1).Within());
    }

    [Fact]
    public async Task Sixteen_MiB_both_directions_concurrently_with_a_small_window()
    {
        // 256 KiB is the smallest window yamux allows; the cap keeps auto-tuning modest too.
        var opts = NoKeepAlive(new YamuxOptions { InitialStreamWindow = 256 * 1024, MaxStreamWindow = 512 * 1024 });
        var (client, server) = Pair(opts, opts);
        await using var _c = client;
        await using var _s = server;
        const int size = 16 * 1024 * 1024;
        var up = RandomNumberGenerator.GetBytes(size);
        var down = RandomNumberGenerator.GetBytes(size);

        var serverSide = Task.Run(async () =>
        {
            var s = (await server.AcceptStreamAsync())!;
            var send = Task.Run(async () =>
            {
                await WriteAllAsync(s.Output, down, 40_000);
                await s.Output.CompleteAsync();
            });
            var got = await ReadToEndAsync(s.Input);
            await send;
            return got;
        });

        var stream = await client.OpenStreamAsync(default);
        var clientSend = Task.Run(async () =>
        {
            await WriteAllAsync(stream.Output, up, 100_000);
            await stream.Output.CompleteAsync();
        });
        var clientGot = await ReadToEndAsync(stream.Input).Within();
        await clientSend.Within();
        var serverGot = await serverSide.Within();

        Assert.True(down.AsSpan().SequenceEqual(clientGot), "server -> client bytes differ");
        Assert.True(up.AsSpan().SequenceEqual(serverGot), "client -> server bytes differ");
    }

    [Fact]
    public async Task Window_grows_while_the_reader_keeps_up()
    {
        // The manual clock never moves, so every window is consumed "instantly": auto-tuning must double it up to the cap.
        var time = new ManualTimeProvider();
        var opts = NoKeepAlive(new YamuxOptions { MaxStreamWindow = 4 * 1024 * 1024 });
        var (client, server) = Pair(opts, opts, time);
        await using var _c = client;
        await using var _s = server;

        var stream = await client.OpenStreamAsync(default);
        var data = Pattern(24 * 1024 * 1024);
        var send = Task.Run(async () =>
        {
            await WriteAllAsync(stream.Output, data);
            await stream.Output.CompleteAsync();
        });
        var accepted = (await server.AcceptStreamAsync().Within())!;
        Assert.Equal(256 * 1024u, accepted.ReceiveWindow);
        var got = await ReadToEndAsync(accepted.Input).Within();
        await send.Within();
        Assert.True(data.AsSpan().SequenceEqual(got));
        Assert.Equal(4 * 1024 * 1024u, accepted.ReceiveWindow);
    }

    [Fact]
    public async Task Writer_blocks_while_the_peer_does_not_read_then_resumes()
    {
        var (client, server) = Pair();
        await using var _c = client;
        await using var _s = server;
        var stream = await client.OpenStreamAsync(default);
        var chunk = Pattern(32 * 1024);
        const int total = 4 * 1024 * 1024;
        long flushed = 0;
        var writer = Task.Run(async () =>
        {
            for (var sent = 0; sent < total; sent += chunk.Length)
            {
                await stream.Output.WriteAsync(chunk);
                Interlocked.Add(ref flushed, chunk.Length);
            }
            await stream.Output.CompleteAsync();
        });

        // While the receiver consumes nothing it gets exactly one window's worth...
        var accepted = (await server.AcceptStreamAsync().Within())!;
        var r = await accepted.Input.ReadAtLeastAsync(256 * 1024).Within();
        Assert.Equal(256 * 1024, r.Buffer.Length);
        accepted.Input.AdvanceTo(r.Buffer.Start);
        Assert.Equal(0, stream.SendWindow);
        // ...and the writer cannot get further than the window plus a bounded send buffer: its FlushAsync waits.
        Assert.False(writer.IsCompleted);
        Assert.InRange(Interlocked.Read(ref flushed), 0, 256 * 1024 + 1024 * 1024);

        // Reading releases the writer; everything arrives in order.
        var got = await ReadToEndAsync(accepted.Input).Within();
        await writer.Within();
        Assert.Equal(total, got.Length);
        for (var i = 0; i < got.Length; i += chunk.Length)
            Assert.True(chunk.AsSpan().SequenceEqual(got.AsSpan(i, chunk.Length)));
    }

    [Fact]
    public async Task Fin_half_closes_one_direction_only()
    {
        var (client, server) = Pair();
        await using var _c = client;
        await using var _s = server;
        var stream = await client.OpenStreamAsync(default);
        await stream.Output.WriteAsync("request"u8.ToArray());
        await stream.Output.CompleteAsync();

        var accepted = (await server.AcceptStreamAsync().Within())!;
        Assert.Equal("request"u8.ToArray(), await ReadToEndAsync(accepted.Input).Within());
        // The server's direction is still open after the client's FIN.
        await accepted.Output.WriteAsync("response part 1, "u8.ToArray());
        await accepted.Output.WriteAsync("part 2"u8.ToArray());
        await accepted.Output.CompleteAsync();
        Assert.Equal("response part 1, part 2"u8.ToArray(), await ReadToEndAsync(stream.Input).Within());

        // Both directions closed: the stream leaves both sessions, so a GoAway drains them at once.
        await client.GoAwayAsync().Within();
        await client.Completion.Within();
        await server.Completion.Within();
        Assert.Equal(0, client.ActiveStreams);
        Assert.Equal(0, server.ActiveStreams);
    }

    [Fact]
    public async Task Reset_by_the_opener_fails_both_sides()
    {
        var (client, server) = Pair();
        await using var _c = client;
        await using var _s = server;
        var stream = await client.OpenStreamAsync(default);
        await stream.Output.WriteAsync(new byte[] { 1, 2, 3 });
        var accepted = (await server.AcceptStreamAsync().Within())!;
        Assert.Equal(new byte[] { 1, 2, 3 }, await ReadExactlyAsync(accepted.Input, 3).Within());

        stream.Reset();
        var local = await Assert.ThrowsAsync<YamuxStreamResetException>(async () => await stream.Input.ReadAsync());
        Assert.False(local.ByPeer);
        Assert.Throws<YamuxStreamResetException>(() => stream.Output.GetSpan());

        var remote = await Assert.ThrowsAsync<YamuxStreamResetException>(async () => await accepted.Input.ReadAsync().Within());
        Assert.True(remote.ByPeer);
        Assert.Equal(accepted.Id, remote.StreamId);
        await Assert.ThrowsAsync<YamuxStreamResetException>(async () => await accepted.Output.WriteAsync(new byte[] { 9 }));
    }

    [Fact]
    public async Task Reset_by_the_acceptor_releases_a_blocked_writer()
    {
        var (client, server) = Pair();
        await using var _c = client;
        await using var _s = server;
        var stream = await client.OpenStreamAsync(default);
        var writer = Task.Run(async () =>
        {
            var chunk = new byte[64 * 1024];
            while (true) await stream.Output.WriteAsync(chunk);
        });
        var accepted = (await server.AcceptStreamAsync().Within())!;
        await accepted.Input.ReadAtLeastAsync(256 * 1024).Within();
        accepted.Reset();
        var ex = await Assert.ThrowsAsync<YamuxStreamResetException>(() => writer.Within());
        Assert.True(ex.ByPeer);
        await Assert.ThrowsAsync<YamuxStreamResetException>(async () => await stream.Input.ReadAsync().Within());
        // The session itself is unharmed.
        Assert.False(client.IsClosed);
        await client.PingAsync().Within();
    }

    [Fact]
    public async Task Completing_output_with_an_error_resets_the_stream()
    {
        var (client, server) = Pair();
        await using var _c = client;
        await using var _s = server;
        var stream = await client.OpenStreamAsync(default);
        await stream.Output.WriteAsync(new byte[] { 1 });
        var accepted = (await server.AcceptStreamAsync().Within())!;
        await stream.Output.CompleteAsync(new InvalidOperationException("app failed"));
        await Assert.ThrowsAsync<YamuxStreamResetException>(async () => await ReadToEndAsync(accepted.Input).Within());
    }

    [Fact]
    public async Task GoAway_stops_new_streams_both_ways_while_existing_ones_finish()
    {
        var (client, server) = Pair();
        await using var _c = client;
        await using var _s = server;
        var stream = await client.OpenStreamAsync(default);
        await stream.Output.WriteAsync("before"u8.ToArray());
        var accepted = (await server.AcceptStreamAsync().Within())!;

        await server.GoAwayAsync().Within();
        Assert.Null(await server.AcceptStreamAsync().Within());
        await Assert.ThrowsAsync<YamuxException>(async () => await server.OpenStreamAsync(default));
        // The client learns about it from the wire; its accept loop then ends too.
        Assert.Null(await client.AcceptStreamAsync().Within());
        await Assert.ThrowsAsync<YamuxException>(async () => await client.OpenStreamAsync(default));

        // The open stream still carries data both ways.
        await stream.Output.WriteAsync(" after"u8.ToArray());
        await stream.Output.CompleteAsync();
        Assert.Equal("before after"u8.ToArray(), await ReadToEndAsync(accepted.Input).Within());
        await accepted.Output.WriteAsync("bye"u8.ToArray());
        Assert.False(server.Completion.IsCompleted);
        await accepted.Output.CompleteAsync();
        Assert.Equal("bye"u8.ToArray(), await ReadToEndAsync(stream.Input).Within());

        // Once the last stream is done both sessions end normally.
        await server.Completion.Within();
        await client.Completion.Within();
    }

    [Fact]
    public async Task GoAway_timeout_resets_streams_that_do_not_finish()
    {
        var time = new ManualTimeProvider();
        var (client, server) = Pair(time: time);
        await using var _c = client;
        await using var _s = server;
        var stream = await client.OpenStreamAsync(default);
        await stream.Output.WriteAsync(new byte[] { 1 });
        var accepted = (await server.AcceptStreamAsync().Within())!;
        await server.GoAwayAsync().Within();
        time.Advance(TimeSpan.FromSeconds(31));
        await server.Completion.Within();
        await Assert.ThrowsAsync<YamuxException>(async () => await ReadToEndAsync(accepted.Input));
    }

    [Fact]
    public async Task Inbound_streams_beyond_the_limit_are_reset()
    {
        var (client, server) = Pair(server: NoKeepAlive(new YamuxOptions { MaxInboundStreams = 2 }));
        await using var _c = client;
        await using var _s = server;
        var streams = new List<YamuxStream>();
        for (var i = 0; i < 3; i++)
        {
            var s = await client.OpenStreamAsync(default);
            await s.Output.WriteAsync(new byte[] { (byte)i });
            streams.Add(s);
        }
        var ex = await Assert.ThrowsAsync<YamuxStreamResetException>(async () => await streams[2].Input.ReadAsync().Within());
        Assert.True(ex.ByPeer);
        for (var i = 0; i < 2; i++)
        {
            var a = (await server.AcceptStreamAsync().Within())!;
            Assert.Equal(new[] { (byte)i }, await ReadExactlyAsync(a.Input, 1).Within());
            await a.Output.WriteAsync(new byte[] { 100 });
            Assert.Equal(new byte[] { 100 }, await ReadExactlyAsync(streams[i].Input, 1).Within());
        }
        Assert.Equal(2, server.ActiveStreams);
    }

    [Fact]
    public async Task Streams_beyond_the_accept_backlog_are_reset()
    {
        var (client, server) = Pair(server: NoKeepAlive(new YamuxOptions { AcceptBacklog = 1 }));
        await using var _c = client;
        await using var _s = server;
        var first = await client.OpenStreamAsync(default);
        await first.Output.WriteAsync(new byte[] { 1 });
        var second = await client.OpenStreamAsync(default);
        await second.Output.WriteAsync(new byte[] { 2 });
        await Assert.ThrowsAsync<YamuxStreamResetException>(async () => await second.Input.ReadAsync().Within());

        var a = (await server.AcceptStreamAsync().Within())!;
        Assert.Equal(first.Id, a.Id);
        // With the backlog drained a new stream is accepted again.
        var third = await client.OpenStreamAsync(default);
        await third.Output.WriteAsync(new byte[] { 3 });
        var b = (await server.AcceptStreamAsync().Within())!;
        Assert.Equal(third.Id, b.Id);
        Assert.Equal(new byte[] { 3 }, await ReadExactlyAsync(b.Input, 1).Within());
    }

    [Fact]
    public async Task Outbound_streams_beyond_the_limit_throw()
    {
        var (client, server) = Pair(NoKeepAlive(new YamuxOptions { MaxOutboundStreams = 1 }));
        await using var _c = client;
        await using var _s = server;
        var first = await client.OpenStreamAsync(default);
        await Assert.ThrowsAsync<YamuxException>(async () => await client.OpenStreamAsync(default));
        // Finishing the first stream frees the slot.
        await first.Output.CompleteAsync();
        var a = (await server.AcceptStreamAsync().Within())!;
        await a.Output.CompleteAsync();
        await ReadToEndAsync(first.Input).Within();
        await ReadToEndAsync(a.Input).Within();
        await server.PingAsync().Within(); // the client has processed its own FIN write by the time its pong comes back
        await client.PingAsync().Within();
        var second = await client.OpenStreamAsync(default);
        Assert.Equal(3u, second.Id);
    }

    [Fact]
    public async Task Ping_measures_a_round_trip()
    {
        var (client, server) = Pair();
        await using var _c = client;
        await using var _s = server;
        var rtt = await client.PingAsync().Within();
        Assert.True(rtt >= TimeSpan.Zero && rtt < Deadline);
        var rtt2 = await server.PingAsync().Within();
        Assert.True(rtt2 >= TimeSpan.Zero);
    }

    [Fact]
    public async Task Keepalive_answered_by_a_live_peer_keeps_the_session()
    {
        var time = new ManualTimeProvider();
        var opts = new YamuxOptions { KeepAliveInterval = TimeSpan.FromSeconds(30), KeepAliveTimeout = TimeSpan.FromSeconds(10) };
        var (client, server) = Pair(opts, opts, time);
        await using var _c = client;
        await using var _s = server;
        for (var i = 0; i < 3; i++)
        {
            time.Advance(TimeSpan.FromSeconds(30));
            // Pongs come back in order: once this ping is answered the keep-alive ping sent before it is too.
            await client.PingAsync().Within();
            await server.PingAsync().Within();
            time.Advance(TimeSpan.FromSeconds(10));
        }
        Assert.False(client.IsClosed);
        Assert.False(server.IsClosed);
    }

    [Fact]
    public async Task Keepalive_times_out_when_the_peer_never_answers()
    {
        var time = new ManualTimeProvider();
        var opts = new YamuxOptions { KeepAliveInterval = TimeSpan.FromSeconds(30), KeepAliveTimeout = TimeSpan.FromSeconds(10) };
        var (session, peer) = WithRawPeer(options: opts, time: time, answerPings: false);
        await using var _ = session;

        var first = await peer.NextAsync(includePings: true); // the RTT probe sent at start
        Assert.Equal(YamuxFrameType.Ping, first.Header.Type);
        time.Advance(TimeSpan.FromSeconds(30));
        var keepAlive = await peer.NextAsync(includePings: true);
        Assert.Equal(YamuxFrameType.Ping, keepAlive.Header.Type);
        Assert.True(keepAlive.Header.Has(YamuxFlags.Syn));
        Assert.False(session.IsClosed);

        time.Advance(TimeSpan.FromSeconds(10));
        var ex = await Assert.ThrowsAsync<YamuxException>(() => session.Completion.Within());
        Assert.Contains("keep-alive", ex.Message);
        var rest = await peer.ReadUntilEndAsync().Within();
        Assert.Contains(rest, f => f.Header == YamuxHeader.GoAway(YamuxGoAwayCode.InternalError));
    }

    [Fact]
    public async Task Protocol_violations_fail_one_session_while_another_keeps_working()
    {
        var (healthyClient, healthyServer) = Pair();
        await using var _hc = healthyClient;
        await using var _hs = healthyServer;

        // An oversized data frame.
        var (bad1, peer1) = WithRawPeer(options: NoKeepAlive(new YamuxOptions { MaxFrameDataLength = 1000 }));
        await using var _b1 = bad1;
        await peer1.WriteAsync(YamuxHeader.Data(2, YamuxFlags.Syn, 1001));
        var pv1 = await Assert.ThrowsAsync<ProtocolViolationException>(() => bad1.Completion.Within());
        Assert.Equal("yamux", pv1.Protocol);
        Assert.Contains(await peer1.ReadUntilEndAsync().Within(), f => f.Header == YamuxHeader.GoAway(YamuxGoAwayCode.ProtocolError));

        // Data beyond the 256 KiB window (two frames of 200 KiB without any window update).
        var (bad2, peer2) = WithRawPeer();
        await using var _b2 = bad2;
        var block = new byte[200 * 1024];
        await peer2.WriteAsync(YamuxHeader.Data(2, YamuxFlags.Syn, (uint)block.Length), block);
        await peer2.WriteAsync(YamuxHeader.Data(2, YamuxFlags.None, (uint)block.Length), block);
        var pv2 = await Assert.ThrowsAsync<ProtocolViolationException>(() => bad2.Completion.Within());
        Assert.Contains("window", pv2.Detail);
        Assert.Contains(await peer2.ReadUntilEndAsync().Within(), f => f.Header == YamuxHeader.GoAway(YamuxGoAwayCode.ProtocolError));

        // The healthy pair does not notice.
        var s = await healthyClient.OpenStreamAsync(default);
        await s.Output.WriteAsync("still fine"u8.ToArray());
        await s.Output.CompleteAsync();
        var a = (await healthyServer.AcceptStreamAsync().Within())!;
        Assert.Equal("still fine"u8.ToArray(), await ReadToEndAsync(a.Input).Within());
        Assert.False(healthyClient.IsClosed);
    }

    [Fact]
    public async Task Dispose_fails_open_streams_and_ends_the_peer()
    {
        var (client, server) = Pair();
        await using var _s = server;
        var stream = await client.OpenStreamAsync(default);
        await stream.Output.WriteAsync(new byte[] { 1 });
        var accepted = (await server.AcceptStreamAsync().Within())!;

        var readTask = stream.Input.ReadAsync().AsTask();
        await client.DisposeAsync().Within();
        Assert.True(client.IsClosed);
        await client.Completion.Within();
        await Assert.ThrowsAsync<YamuxException>(() => readTask.Within());
        await Assert.ThrowsAsync<YamuxException>(async () => await client.OpenStreamAsync(default));
        Assert.Null(await client.AcceptStreamAsync().Within());
        await Assert.ThrowsAsync<YamuxException>(async () => await client.PingAsync());

        // The peer saw GoAway and then the end of the connection.
        await server.Completion.Within();
        await Assert.ThrowsAsync<YamuxException>(async () => await ReadToEndAsync(accepted.Input).Within());
    }

    [Fact]
    public async Task Disposing_a_stream_sends_fin_and_resets_if_the_peer_never_finishes()
    {
        var time = new ManualTimeProvider();
        var (client, server) = Pair(time: time);
        await using var _c = client;
        await using var _s = server;
        var stream = await client.OpenStreamAsync(default);
        await stream.Output.WriteAsync("data"u8.ToArray());
        await stream.DisposeAsync();
        var accepted = (await server.AcceptStreamAsync().Within())!;
        Assert.Equal("data"u8.ToArray(), await ReadToEndAsync(accepted.Input).Within());
        // The server keeps its direction open past the close timeout: the client resets.
        time.Advance(TimeSpan.FromMinutes(2));
        await Assert.ThrowsAsync<YamuxStreamResetException>(async () =>
        {
            while (true) await accepted.Output.WriteAsync(new byte[1024]).Within();
        });
    }

    [Fact]
    public async Task Data_to_a_disposed_stream_is_dropped_without_stalling_the_sender()
    {
        var (client, server) = Pair();
        await using var _c = client;
        await using var _s = server;
        var stream = await client.OpenStreamAsync(default);
        await stream.Output.WriteAsync(new byte[] { 1 });
        var accepted = (await server.AcceptStreamAsync().Within())!;
        await stream.DisposeAsync();
        // The server may still send far more than one window: the client gives the window back as it drops the bytes.
        await WriteAllAsync(accepted.Output, new byte[2 * 1024 * 1024]).Within();
        await accepted.Output.CompleteAsync();
        Assert.Equal(new byte[] { 1 }, await ReadToEndAsync(accepted.Input).Within());
    }

    [Fact]
    public async Task AsStream_round_trips()
    {
        var (client, server) = Pair();
        await using var _c = client;
        await using var _s = server;
        var data = Pattern(3 * 1024 * 1024 + 17);
        var echo = Task.Run(async () =>
        {
            var s = (await server.AcceptStreamAsync())!;
            await using var ss = s.AsStream();
            await ss.CopyToAsync(ss); // echo until FIN, then dispose sends our FIN
        });
        var stream = await client.OpenStreamAsync(default);
        var cs = stream.AsStream();
        var send = Task.Run(async () =>
        {
            for (var off = 0; off < data.Length; off += 100_000)
                await cs.WriteAsync(data.AsMemory(off, Math.Min(100_000, data.Length - off)));
            await stream.Output.CompleteAsync();
        });
        var back = new MemoryStream();
        var buf = new byte[50_000];
        int n;
        while ((n = await cs.ReadAsync(buf).AsTask().Within()) > 0) back.Write(buf, 0, n);
        await send.Within();
        await echo.Within();
        Assert.True(data.AsSpan().SequenceEqual(back.ToArray()));
        cs.Dispose();
    }

    [Fact]
    public async Task Many_streams_in_parallel()
    {
        var (client, server) = Pair();
        await using var _c = client;
        await using var _s = server;
        var serverLoop = Task.Run(async () =>
        {
            var tasks = new List<Task>();
            while (await server.AcceptStreamAsync() is { } s)
            {
                tasks.Add(Task.Run(async () =>
                {
                    var d = await ReadToEndAsync(s.Input);
                    await s.Output.WriteAsync(d);
                    await s.Output.CompleteAsync();
                }));
            }
            await Task.WhenAll(tasks);
        });
        var clients = Enumerable.Range(0, 64).Select(i => Task.Run(async () =>
        {
            var s = await client.OpenStreamAsync(default);
            var d = Pattern(10_000 + i * 3_000, i);
            await WriteAllAsync(s.Output, d, 7_000);
            await s.Output.CompleteAsync();
            var back = await ReadToEndAsync(s.Input);
            Assert.True(d.AsSpan().SequenceEqual(back));
        })).ToArray();
        await Task.WhenAll(clients).Within();
        await client.GoAwayAsync().Within();
        await serverLoop.Within();
        await client.Completion.Within();
    }
}
