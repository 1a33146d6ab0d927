using System.Buffers;
using System.Buffers.Binary;
using System.IO.Pipelines;
using System.Net.Sockets;
using Microsoft.Extensions.Logging.Abstractions;
using Weft.P2P.Host;
using Weft.P2P.Multistream;
using Weft.P2P.Noise;
using Weft.P2P.Ping;
using Weft.P2P.Tests.Support;
using Weft.P2P.Transport;
using Weft.Wire.Identity;
using Weft.Wire.Multistream;
using static Weft.P2P.Tests.Host.Hosts;

namespace Weft.P2P.Tests.Host;

/// <summary>
/// A peer that misbehaves is disconnected with a logged, typed error within the handshake timeout,
/// while a healthy connection to the same host keeps working.
/// </summary>
public class BadPeerTests
{
    private static readonly TimeSpan Step = TimeSpan.FromMilliseconds(1500);

    private static Task<Libp2pHost> StartVictim(ListLoggerProvider logs) =>
        StartAsync(o => o with { Timeouts = new HostTimeouts { HandshakeStep = Step } }, logs);

    private static async Task<(Socket Socket, IDuplexPipe Pipe)> RawConnect(Libp2pHost host)
    {
        var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await s.ConnectAsync(host.ListenEndPoints[0]);
        var ns = new NetworkStream(s, ownsSocket: false);
        return (s, new DuplexPipe(PipeReader.Create(ns), PipeWriter.Create(ns)));
    }

    /// <summary>Reads until the host closes the socket; fails the test if that takes longer than <paramref name="within"/>.</summary>
    private static async Task AssertClosedWithin(Socket s, TimeSpan within)
    {
        var buf = new byte[4096];
        using var cts = new CancellationTokenSource(within);
        try
        {
            while (await s.ReceiveAsync(buf, SocketFlags.None, cts.Token) > 0) { }
        }
        catch (SocketException) { /* reset counts as closed */ }
        catch (OperationCanceledException)
        {
            Assert.Fail($"the host did not close the connection within {within.TotalSeconds} s");
        }
    }

    /// <summary>A connection the victim has fully accepted: it answered identify on it.</summary>
    private static async Task<Connection> HealthyConnection(Libp2pHost victim, Libp2pHost friend)
    {
        var conn = await friend.DialAsync(AddressOf(victim)).WaitAsync(Deadline);
        Assert.NotNull(await conn.Identified.WaitAsync(Deadline));
        return conn;
    }

    private static async Task AssertStillServes(Libp2pHost friend, Connection healthy, ListLoggerProvider victimLogs)
    {
        try
        {
            await using var ps = await PingService.OpenAsync(healthy, default).WaitAsync(Deadline);
            await PingService.PingAsync(ps, friend.Time, default).WaitAsync(Deadline);
            Assert.False(healthy.IsClosed);
        }
        catch (Exception ex)
        {
            Assert.Fail($"the healthy connection stopped working: {ex.Message}\nvictim log:\n{string.Join("\n", victimLogs.Entries.Select(e => $"{e.Level} {e.Category}: {e.Message}"))}");
        }
    }

    /// <summary>A victim host, and a friend whose connection to it the victim has fully accepted.</summary>
    private sealed class Scene : IAsyncDisposable
    {
        public required ListLoggerProvider Logs { get; init; }
        public required Libp2pHost Victim { get; init; }
        public required Libp2pHost Friend { get; init; }
        public required Connection Healthy { get; init; }

        public static async Task<Scene> StartAsync()
        {
            var logs = new ListLoggerProvider();
            var victim = await StartVictim(logs);
            var friend = await Hosts.StartAsync();
            return new Scene { Logs = logs, Victim = victim, Friend = friend, Healthy = await HealthyConnection(victim, friend) };
        }

        public Task AssertStillServes() => BadPeerTests.AssertStillServes(Friend, Healthy, Logs);

        public async ValueTask DisposeAsync()
        {
            await Friend.DisposeAsync();
            await Victim.DisposeAsync();
        }
    }

    [Fact]
    public async Task Malformed_noise_message_is_refused()
    {
        await using var scene = await Scene.StartAsync();
        var (logs, victim) = (scene.Logs, scene.Victim);

        var (s, pipe) = await RawConnect(victim);
        using (s)
        {
            await MultistreamSelect.SelectOutboundAsync(pipe, ["/noise"], default).WaitAsync(Deadline);
            // Noise message 1 must be a 32-byte ephemeral key; send a 5-byte one.
            await pipe.Output.WriteAsync(new byte[] { 0, 5, 1, 2, 3, 4, 5 });
            await AssertClosedWithin(s, TimeSpan.FromSeconds(5));
        }
        Assert.Contains("noise", await logs.WaitFor("protocol violation").WaitAsync(Deadline));
        await scene.AssertStillServes();
    }

    [Fact]
    public async Task Stalling_mid_handshake_is_cut_off_at_the_step_timeout()
    {
        await using var scene = await Scene.StartAsync();
        var (logs, victim) = (scene.Logs, scene.Victim);

        var (s, pipe) = await RawConnect(victim);
        using (s)
        {
            await MultistreamSelect.SelectOutboundAsync(pipe, ["/noise"], default).WaitAsync(Deadline);
            // Say nothing more. The host must give up after one handshake step (1.5 s).
            var started = DateTime.UtcNow;
            await AssertClosedWithin(s, TimeSpan.FromSeconds(5));
            Assert.True(DateTime.UtcNow - started >= Step - TimeSpan.FromMilliseconds(100));
        }
        await logs.WaitFor("(TimeoutException)").WaitAsync(Deadline);
        await scene.AssertStillServes();
    }

    [Fact]
    public async Task Silent_socket_is_cut_off_before_multistream()
    {
        var logs = new ListLoggerProvider();
        await using var victim = await StartVictim(logs);
        var (s, _) = await RawConnect(victim);
        using (s) await AssertClosedWithin(s, TimeSpan.FromSeconds(5));
        await logs.WaitFor("security negotiation timed out").WaitAsync(Deadline);
    }

    [Fact]
    public async Task Oversized_yamux_frame_closes_that_connection_only()
    {
        await using var scene = await Scene.StartAsync();
        var (logs, victim) = (scene.Logs, scene.Victim);

        var (s, pipe) = await RawConnect(victim);
        using (s)
        {
            await MultistreamSelect.SelectOutboundAsync(pipe, ["/noise"], default).WaitAsync(Deadline);
            var secure = await NoiseSecurity.SecureOutboundAsync(pipe, Ed25519PrivateKey.Generate(), victim.PeerId,
                new NoiseOptions(), NullLogger.Instance, default).WaitAsync(Deadline);
            if (secure.EarlyMuxer is null)
                await MultistreamSelect.SelectOutboundAsync(secure, ["/yamux/1.0.0"], default).WaitAsync(Deadline);
            // yamux Data frame, SYN, stream 1, claiming 256 MiB: beyond any window and frame limit.
            var header = new byte[12];
            header[0] = 0; header[1] = 0;
            BinaryPrimitives.WriteUInt16BigEndian(header.AsSpan(2), 1);
            BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(4), 1);
            BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(8), 256u << 20);
            await secure.Output.WriteAsync(header);
            await secure.Output.WriteAsync(new byte[64 * 1024]);
            await AssertClosedWithin(s, TimeSpan.FromSeconds(5));
        }
        Assert.Contains("yamux", await logs.WaitFor("protocol violation").WaitAsync(Deadline));
        await scene.AssertStillServes();
    }

    [Fact]
    public async Task Too_many_pending_handshakes_are_refused_at_once()
    {
        var logs = new ListLoggerProvider();
        await using var victim = await StartAsync(o => o with
        {
            Limits = new ConnectionLimits { MaxPendingInboundHandshakes = 2 },
            Timeouts = new HostTimeouts { HandshakeStep = TimeSpan.FromSeconds(30) },
        }, logs);
        var held = new List<Socket>();
        try
        {
            for (var i = 0; i < 2; i++) held.Add((await RawConnect(victim)).Socket);
            Socket? extra = null;
            try
            {
                extra = (await RawConnect(victim)).Socket;
            }
            catch (SocketException)
            {
                // Reset before connect() returned: refused at once, which is what we want.
            }
            if (extra is not null)
            {
                held.Add(extra);
                await AssertClosedWithin(extra, TimeSpan.FromSeconds(5));
            }
            await logs.WaitFor(nameof(ConnectionLimits.MaxPendingInboundHandshakes)).WaitAsync(Deadline);
        }
        finally
        {
            foreach (var h in held) h.Dispose();
        }
    }
}
