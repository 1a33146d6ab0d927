using System.Buffers;
using System.Net;
using System.Net.Sockets;
using Weft.Mesh.Agent;
using Weft.Mesh.Relays;
using Weft.Mesh.Resume;
using Weft.Mesh.Tests.Agent;
using Weft.P2P.IO;
using Weft.Wire.Resume;
using Xunit.Abstractions;

namespace Weft.Mesh.Tests.Resume;

/// <summary>The resumable tunnel between agents in this process: path deaths, moves, restarts and bad offsets.</summary>
public sealed class ResumeTests(ITestOutputHelper output)
{
    private static bool AllReserved(IReadOnlyList<RelayLinkState> links) => links.Count > 0 && links.All(l => l.Status == RelayLinkStatus.Up && l.Reserved);

    /// <summary>A short grace period, and no DHT rendezvous: on loopback its provider records would connect a and b directly.</summary>
    private static Func<Weft.Mesh.Config.TunnelConfig, Weft.Mesh.Config.TunnelConfig> Grace(TimeSpan grace) =>
        t => t with { Resume = t.Resume with { Grace = grace }, Dht = false };

    /// <summary>An echo endpoint on b's side: everything it reads it writes back; closes its side when the client does.</summary>
    private sealed class EchoEndpoint : IDisposable
    {
        private readonly TcpListener _listener = new(IPAddress.Loopback, 0);

        public EchoEndpoint()
        {
            _listener.Start();
            _ = Task.Run(async () =>
            {
                while (true)
                {
                    Socket s;
                    try { s = await _listener.AcceptSocketAsync(); }
                    catch (Exception) { return; }
                    _ = Task.Run(async () =>
                    {
                        using (s)
                        {
                            var buf = new byte[65536];
                            try
                            {
                                int n;
                                while ((n = await s.ReceiveAsync(buf)) > 0) await s.SendAsync(buf.AsMemory(0, n));
                                s.Shutdown(SocketShutdown.Send);
                            }
                            catch (SocketException) { }
                        }
                    });
                }
            });
        }

        public IPEndPoint EndPoint => (IPEndPoint)_listener.LocalEndpoint;

        public void Dispose() => _listener.Stop();
    }

    /// <summary>A connected pair: the proxy's side (handed to the tunnel) and the application's.</summary>
    private static async Task<(Socket Proxy, Socket App)> SocketPairAsync()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        var app = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        var accept = l.AcceptSocketAsync();
        await app.ConnectAsync((IPEndPoint)l.LocalEndpoint);
        return (await accept, app);
    }

    /// <summary>A resumable connection from <paramref name="a"/> to <paramref name="target"/> on node b, run over a socket pair: the application's end, and the run.</summary>
    private static async Task<(ResumableConnection Connection, Socket App, Task Run)> RunToAsync(MeshAgent a, IPEndPoint target)
    {
        var c = await a.Resume!.OpenAsync(a.Directory.Resolve("b")!, "b", target, CancellationToken.None);
        Assert.NotNull(c);
        var (proxy, app) = await SocketPairAsync();
        return (c, app, c.RunAsync(proxy, CancellationToken.None));
    }

    private static byte Pattern(long i) => (byte)(i * 7 % 251);

    /// <summary>Writes <paramref name="total"/> pattern bytes and reads them back, checking each; calls <paramref name="midway"/> once after half.</summary>
    private static async Task<long> EchoThroughAsync(Socket app, long total, Func<Task> midway)
    {
        var writer = Task.Run(async () =>
        {
            var buf = new byte[64 * 1024];
            for (long sent = 0; sent < total;)
            {
                var n = (int)Math.Min(buf.Length, total - sent);
                for (var i = 0; i < n; i++) buf[i] = Pattern(sent + i);
                await app.SendAsync(buf.AsMemory(0, n));
                sent += n;
            }
            app.Shutdown(SocketShutdown.Send);
        });
        var rbuf = new byte[64 * 1024];
        long got = 0;
        var fired = false;
        while (true)
        {
            var n = await app.ReceiveAsync(rbuf).WaitAsync(TimeSpan.FromSeconds(30));
            if (n == 0) break;
            for (var i = 0; i < n; i++)
                if (rbuf[i] != Pattern(got + i)) throw new Xunit.Sdk.XunitException($"byte {got + i} is {rbuf[i]}, expected {Pattern(got + i)}");
            got += n;
            if (!fired && got >= total / 2)
            {
                fired = true;
                await midway();
            }
        }
        await writer;
        return got;
    }

    private static async Task<(LoopbackMesh Mesh, MeshAgent A, MeshAgent B)> MeshAsync(TimeSpan grace)
    {
        var mesh = new LoopbackMesh();
        mesh.DeclareRelays("r1", "r2");
        await mesh.StartAsync("r1");
        await mesh.StartAsync("r2");
        var a = await mesh.StartAsync("a", Grace(grace));
        var b = await mesh.StartAsync("b", Grace(grace));
        await LoopbackMesh.WaitRelays(a, AllReserved, "reservations on both relays");
        await LoopbackMesh.WaitRelays(b, AllReserved, "reservations on both relays");
        return (mesh, a, b);
    }

    [Fact]
    public async Task A_transfer_survives_the_death_of_the_relay_under_it()
    {
        var (mesh, a, _) = await MeshAsync(TimeSpan.FromSeconds(20));
        await using var _m = mesh;
        using var echo = new EchoEndpoint();
        var (c, app, run) = await RunToAsync(a, echo.EndPoint);
        using var _a = app;
        Assert.True(c.IsRelayed); // first contact: through a relay
        var relay = a.Relays.NameOf(c.Connection.Relay!)!;
        const long total = 48L * 1024 * 1024;
        var got = await EchoThroughAsync(app, total, () => mesh.StopAsync(relay));
        Assert.Equal(total, got); // every byte back, in order, checked one by one, then a clean EOF
        await run.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(0, a.Resume!.Count);
        Assert.True(a.Resume.Resumed + a.Resume.Moved >= 1, "the connection never left the dead relay's stream");
        output.WriteLine($"48 MiB echoed through the resumable tunnel; relay {relay} stopped halfway; the connection moved and finished cleanly");
    }

    [Fact]
    public async Task A_connection_on_a_relayed_path_moves_to_a_direct_one_without_a_reset()
    {
        var (mesh, a, b) = await MeshAsync(TimeSpan.FromSeconds(20));
        await using var _m = mesh;
        using var echo = new EchoEndpoint();
        var (c, app, run) = await RunToAsync(a, echo.EndPoint);
        using var _a = app;
        Assert.True(c.IsRelayed);
        Weft.P2P.Host.Connection? direct = null;
        var moved = new TaskCompletionSource<Weft.P2P.Host.Connection>(TaskCreationOptions.RunContinuationsAsynchronously);
        a.Resume!.ConnectionMoved += conn => moved.TrySetResult(conn);
        var got = await EchoThroughAsync(app, 32L * 1024 * 1024, async () =>
        {
            // A direct path appears (what a hole punch does): the connection moves to it while data flows.
            direct = await a.Host.DialAsync(b.Host.ListenAddresses[0].WithPeerId(b.Host.PeerId));
            Assert.Same(direct, await moved.Task.WaitAsync(TimeSpan.FromSeconds(10)));
        });
        Assert.Equal(32L * 1024 * 1024, got);
        await run.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.NotNull(direct);
        Assert.False(direct!.IsRelayed);
        Assert.Equal(1, a.Resume.Moved);
        Assert.Equal(0, a.Resume.Resumed);
    }

    [Fact]
    public async Task A_peer_restart_mid_stream_ends_in_a_clean_reset_not_a_hang()
    {
        var (mesh, a, _) = await MeshAsync(TimeSpan.FromSeconds(20));
        await using var _m = mesh;
        using var echo = new EchoEndpoint();
        var (_, app, run) = await RunToAsync(a, echo.EndPoint);
        using var _a = app;
        await app.SendAsync(new byte[1000]);
        var buf = new byte[1000];
        var read = 0;
        while (read < 1000) read += await app.ReceiveAsync(buf.AsMemory(read));

        // b restarts: it comes back with the same identity but without the session.
        await mesh.StopAsync("b");
        await mesh.StartAsync("b", Grace(TimeSpan.FromSeconds(20)));
        var ex = await Assert.ThrowsAnyAsync<Exception>(() => run.WaitAsync(TimeSpan.FromSeconds(15)));
        Assert.Contains("cannot resume", ex.Message);
        var reset = await Assert.ThrowsAsync<SocketException>(async () =>
        {
            while (await app.ReceiveAsync(buf).WaitAsync(TimeSpan.FromSeconds(5)) > 0) { }
        });
        Assert.Equal(SocketError.ConnectionReset, reset.SocketErrorCode);
        output.WriteLine($"after b restarted: {ex.Message}; the application saw {reset.SocketErrorCode}");
    }

    [Fact]
    public async Task No_path_within_the_grace_period_resets_both_ends()
    {
        var (mesh, a, _) = await MeshAsync(TimeSpan.FromSeconds(2));
        await using var _m = mesh;
        using var echo = new EchoEndpoint();
        var (_, app, run) = await RunToAsync(a, echo.EndPoint);
        using var _a = app;
        await mesh.StopAsync("b");
        var started = DateTime.UtcNow;
        var ex = await Assert.ThrowsAnyAsync<Exception>(() => run.WaitAsync(TimeSpan.FromSeconds(15)));
        var took = DateTime.UtcNow - started;
        Assert.Contains("no path to resume on within 2 s", ex.Message);
        Assert.InRange(took, TimeSpan.FromSeconds(1.5), TimeSpan.FromSeconds(8));
        await Assert.ThrowsAsync<SocketException>(async () =>
        {
            var buf = new byte[16];
            while (await app.ReceiveAsync(buf).WaitAsync(TimeSpan.FromSeconds(5)) > 0) { }
        });
    }

    [Fact]
    public async Task Offsets_that_do_not_meet_end_in_a_clean_reset()
    {
        var (mesh, a, b) = await MeshAsync(TimeSpan.FromSeconds(20));
        await using var _m = mesh;
        using var echo = new EchoEndpoint();
        var peerB = a.Directory.Resolve("b")!;
        var (c, app, run) = await RunToAsync(a, echo.EndPoint);
        using var _a = app;
        await app.SendAsync(new byte[100]);

        // Someone resumes the session claiming bytes that were never sent: b cannot resume it and resets it.
        var conn = await a.Dialer.ConnectAsync(peerB, CancellationToken.None);
        var raw = await conn.OpenStreamAsync(ResumeHello.ProtocolId, CancellationToken.None);
        new ResumeHello { Session = c.Id, Kind = ResumeHelloKind.Resume, Received = 1UL << 40 }.WriteLengthPrefixedTo(raw.Output);
        await raw.Output.FlushAsync();
        var welcome = await raw.Input.ReadAsync<ResumeWelcome?>(ResumeWelcome.TryRead, CancellationToken.None).AsTask().WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(ResumeStatus.Ok, welcome!.Status); // b took the stream over, then found the offsets do not meet
        await Assert.ThrowsAnyAsync<Exception>(() => run.WaitAsync(TimeSpan.FromSeconds(15)));
        Assert.True(b.Resume!.Count == 0);
        // A resume of a session nobody knows is refused outright.
        var raw2 = await conn.OpenStreamAsync(ResumeHello.ProtocolId, CancellationToken.None);
        new ResumeHello { Session = new byte[16], Kind = ResumeHelloKind.Resume }.WriteLengthPrefixedTo(raw2.Output);
        await raw2.Output.FlushAsync();
        var w2 = await raw2.Input.ReadAsync<ResumeWelcome?>(ResumeWelcome.TryRead, CancellationToken.None).AsTask().WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(ResumeStatus.UnknownSession, w2!.Status);
    }
    [Fact]
    public async Task A_peer_that_overruns_the_buffers_gets_a_clean_reset_and_the_node_keeps_serving()
    {
        var (mesh, a, b) = await MeshAsync(TimeSpan.FromSeconds(20));
        await using var _m = mesh;
        // An endpoint that accepts and never reads: what b receives for it can only pile up.
        using var deaf = new TcpListener(IPAddress.Loopback, 0);
        deaf.Start();
        var target = (IPEndPoint)deaf.LocalEndpoint;
        var accepted = deaf.AcceptSocketAsync();

        // A misbehaving peer (a's host, speaking the protocol by hand): it opens a session and sends DATA far past what
        // b acknowledged, ignoring that b stops acknowledging when its socket is full.
        var peerB = a.Directory.Resolve("b")!;
        var conn = await a.Dialer.ConnectAsync(peerB, CancellationToken.None);
        var raw = await conn.OpenStreamAsync(ResumeHello.ProtocolId, CancellationToken.None);
        var target2 = new Weft.Wire.Tunnel.ProxyMessage { Type = Weft.Wire.Tunnel.ProxyMessageType.Connect, Protocol = "tcp", NodeName = "b", Ip = target.Address.ToString(), Port = target.Port };
        new ResumeHello { Session = System.Security.Cryptography.RandomNumberGenerator.GetBytes(ResumeHello.SessionIdLength), Kind = ResumeHelloKind.Open, Target = target2 }.WriteLengthPrefixedTo(raw.Output);
        await raw.Output.FlushAsync();
        var welcome = await raw.Input.ReadAsync<ResumeWelcome?>(ResumeWelcome.TryRead, CancellationToken.None).AsTask().WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(ResumeStatus.Ok, welcome!.Status);
        using var app = await accepted.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(1, b.Resume!.Count);

        // Read b's frames while flooding: the RESET must come, with its reason.
        var reset = Task.Run(async () =>
        {
            while (true)
            {
                var r = await raw.Input.ReadAsync();
                var buf = r.Buffer;
                try
                {
                    while (ResumeFrame.TryRead(ref buf, out var f))
                        if (f.Type == ResumeFrameType.Reset) return f.Reason ?? "";
                }
                finally { raw.Input.AdvanceTo(buf.Start, buf.End); }
                if (r.IsCompleted) return null;
            }
        });
        var payload = new byte[ResumeFrame.MaxPayload];
        var limit = 2L * new Weft.Mesh.Resume.ResumeOptions().ResendBufferBytes + ResumeFrame.MaxPayload;
        long offset = 0;
        try
        {
            // At most 64 MiB: b's socket buffers plus its inbox limit are far below that.
            while (offset < 64L << 20 && !reset.IsCompleted)
            {
                ResumeFrame.WriteDataHeader(raw.Output, (ulong)offset, payload.Length);
                raw.Output.Write(payload);
                offset += payload.Length;
                var flush = await raw.Output.FlushAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10));
                if (flush.IsCompleted) break;
            }
        }
        catch (Exception ex) when (ex is not TimeoutException)
        {
            // b reset the stream under us: the RESET frame may or may not have been read first.
        }
        var reason = await reset.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.True(offset > limit, $"only {offset} bytes were sent");
        Assert.NotNull(reason);
        Assert.Contains("past what was acknowledged", reason, StringComparison.Ordinal);

        // b dropped the session and reset its endpoint connection (not a clean close: the data did not all arrive).
        var sink = new byte[1 << 20];
        var ended = await Assert.ThrowsAsync<SocketException>(async () =>
        {
            while (await app.ReceiveAsync(sink).WaitAsync(TimeSpan.FromSeconds(10)) > 0) { }
        });
        Assert.Equal(SocketError.ConnectionReset, ended.SocketErrorCode);
        Assert.Equal(0, b.Resume!.Count);

        // Everything else on b keeps serving: a real session from a works.
        using var echo = new EchoEndpoint();
        var (_, client, run) = await RunToAsync(a, echo.EndPoint);
        using var _c = client;
        Assert.Equal(1L << 20, await EchoThroughAsync(client, 1L << 20, () => Task.CompletedTask));
        await run.WaitAsync(TimeSpan.FromSeconds(10));
    }
}
