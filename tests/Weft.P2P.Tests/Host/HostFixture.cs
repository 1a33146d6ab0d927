using Weft.P2P.Echo;
using Weft.P2P.Host;
using Weft.P2P.Perf;
using Weft.P2P.Ping;
using Weft.P2P.Tests.Support;
using Weft.Wire.Identity;
using Weft.Wire.Multiformats;

namespace Weft.P2P.Tests.Host;

public static class Hosts
{
    public static readonly TimeSpan Deadline = TimeSpan.FromSeconds(20);

    public static async Task<Libp2pHost> StartAsync(Func<HostOptions, HostOptions>? configure = null, ListLoggerProvider? logs = null)
    {
        var options = new HostOptions
        {
            Key = Ed25519PrivateKey.Generate(),
            ListenAddresses = [Multiaddr.Parse("/ip4/127.0.0.1/tcp/0")],
        };
        if (configure is not null) options = configure(options);
        var host = new Libp2pHost(options, logs);
        PingService.Register(host);
        EchoService.Register(host);
        PerfService.Register(host);
        await host.StartAsync();
        return host;
    }

    public static Multiaddr AddressOf(Libp2pHost h) => h.ListenAddresses[0].Encapsulate("/p2p/" + h.PeerId);

    /// <summary>Waits until <paramref name="host"/> has an open connection from <paramref name="peer"/>.</summary>
    public static async Task<Connection> WaitForConnection(Libp2pHost host, PeerId peer)
    {
        var tcs = new TaskCompletionSource<Connection>(TaskCreationOptions.RunContinuationsAsynchronously);
        void On(Connection c) { if (c.RemotePeer == peer) tcs.TrySetResult(c); }
        host.ConnectionOpened += On;
        try
        {
            if (host.GetConnection(peer) is { } c) return c;
            return await tcs.Task.WaitAsync(Deadline);
        }
        finally { host.ConnectionOpened -= On; }
    }

    /// <summary>Sends <paramref name="payload"/> on a new echo stream over <paramref name="conn"/> and returns what came back.</summary>
    public static async Task<byte[]> EchoAsync(Connection conn, byte[] payload)
    {
        var echo = await conn.OpenStreamAsync(Weft.P2P.Echo.EchoService.ProtocolId, CancellationToken.None).WaitAsync(Deadline);
        await using var _ = echo;
        var send = Task.Run(async () =>
        {
            await echo.Output.WriteAsync(payload);
            await echo.Output.CompleteAsync();
        });
        using var received = new MemoryStream();
        while (true)
        {
            var r = await echo.Input.ReadAsync().AsTask().WaitAsync(Deadline);
            foreach (var seg in r.Buffer)
            {
                if (received.Length + seg.Length > payload.Length) throw new InvalidOperationException("echo returned more than was sent");
                received.Write(seg.Span);
            }
            echo.Input.AdvanceTo(r.Buffer.End);
            if (r.IsCompleted) break;
        }
        await send.WaitAsync(Deadline);
        return received.ToArray();
    }

    public static byte[] Pattern(int n)
    {
        var b = new byte[n];
        for (var i = 0; i < n; i++) b[i] = (byte)(i % 251);
        return b;
    }
}
