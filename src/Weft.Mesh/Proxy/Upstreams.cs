using System.Buffers;
using System.Net.Sockets;
using Weft.Mesh.Tunnel;
using Weft.Wire.Identity;

namespace Weft.Mesh.Proxy;

/// <summary>An endpoint could not be reached (unknown node, refused, timed out, tunnel refused).</summary>
public sealed class EndpointUnreachableException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>Bytes of one proxied connection or flow, reported as they move.</summary>
internal readonly record struct ByteSink(Action<long> FromClient, Action<long> ToClient);

/// <summary>A TCP connection to an endpoint, ready to be bridged with the client's socket.</summary>
internal abstract class TcpUpstream : IAsyncDisposable
{
    /// <summary>local (dialled from this node), direct or relay (through the tunnel).</summary>
    public abstract string Path { get; }

    /// <summary>Copies both ways with half-close until both directions end; throws what broke it (then the client is reset).</summary>
    public abstract Task BridgeAsync(Socket client, ByteSink bytes, CancellationToken ct);

    public abstract ValueTask DisposeAsync();
}

/// <summary>A UDP association with an endpoint: datagrams out, datagrams back, boundaries kept.</summary>
internal abstract class UdpUpstream : IAsyncDisposable
{
    public abstract string Path { get; }

    /// <summary>Sends one datagram; with <paramref name="more"/> a framed tunnel may hold it back until the last of a batch.</summary>
    public abstract ValueTask SendAsync(ReadOnlyMemory<byte> datagram, bool more, CancellationToken ct);

    /// <summary>The next datagram from the endpoint, or null when the association ended.</summary>
    public abstract ValueTask<ReadOnlyMemory<byte>?> ReceiveAsync(Memory<byte> buffer, CancellationToken ct);

    public abstract ValueTask DisposeAsync();
}

/// <summary>
/// Reaches endpoints: one on this node (or with no node) is dialled directly; one on another node through the
/// tunnel (TCP over EdgeMesh's <c>/libp2p/tunnel-proxy/1.0.0</c>, UDP over Weft's framed <c>/weft/tunnel-udp/1.0.0</c>),
/// the peer found by node name.
/// </summary>
internal sealed class Upstreams(string nodeName, Func<string, PeerId?> resolve, TunnelService? tunnel, Resume.ResumeService? resume = null)
{
    public bool IsLocal(EndpointTarget e) => e.NodeName is null || e.NodeName == nodeName;

    private (PeerId Peer, TunnelService Tunnel) Remote(EndpointTarget e)
    {
        if (tunnel is null) throw new EndpointUnreachableException($"{e}: this node has no tunnel to reach node {e.NodeName}");
        var peer = resolve(e.NodeName!) ?? throw new EndpointUnreachableException($"{e}: node {e.NodeName} is unknown (not found by discovery)");
        return (peer, tunnel);
    }

    public async Task<TcpUpstream> ConnectTcpAsync(EndpointTarget e, CancellationToken ct)
    {
        if (IsLocal(e)) return new LocalTcp(await ConnectLocalAsync(e, SocketType.Stream, ct).ConfigureAwait(false));
        var (peer, t) = Remote(e);
        if (resume is not null)
        {
            Resume.ResumableConnection? rc;
            try
            {
                rc = await resume.OpenAsync(peer, e.NodeName!, e.EndPoint, ct).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is not OperationCanceledException || !ct.IsCancellationRequested)
            {
                throw new EndpointUnreachableException($"{e}: {ex.Message}", ex);
            }
            if (rc is not null) return new ResumableTcp(rc, t);
            // An EdgeMesh agent: it speaks only the plain tunnel.
        }
        return new TunnelTcp(await TunnelledAsync(e, () => t.OpenTcpAsync(peer, e.NodeName!, e.EndPoint, ct), ct).ConfigureAwait(false), t);
    }

    public async Task<UdpUpstream> OpenUdpAsync(EndpointTarget e, CancellationToken ct)
    {
        if (IsLocal(e)) return new LocalUdp(await ConnectLocalAsync(e, SocketType.Dgram, ct).ConfigureAwait(false));
        var (peer, t) = Remote(e);
        return new TunnelUdp(await TunnelledAsync(e, () => t.OpenUdpAsync(peer, e.NodeName!, e.EndPoint, ct), ct).ConfigureAwait(false));
    }

    /// <summary>A socket connected to a local endpoint (TCP with no delay; UDP with large buffers).</summary>
    private static async Task<Socket> ConnectLocalAsync(EndpointTarget e, SocketType type, CancellationToken ct)
    {
        var s = type == SocketType.Stream
            ? new Socket(e.Ip.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true }
            : new Socket(e.Ip.AddressFamily, SocketType.Dgram, ProtocolType.Udp) { ReceiveBufferSize = UdpPortRunner.SocketBuffer, SendBufferSize = UdpPortRunner.SocketBuffer };
        try
        {
            await s.ConnectAsync(e.EndPoint, ct).ConfigureAwait(false);
            return s;
        }
        catch (Exception ex)
        {
            s.Dispose();
            if (ex is SocketException) throw new EndpointUnreachableException($"{e}: {ex.Message}", ex);
            throw;
        }
    }

    private static async Task<TunnelStream> TunnelledAsync(EndpointTarget e, Func<Task<TunnelStream>> open, CancellationToken ct)
    {
        try
        {
            return await open().ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is not OperationCanceledException || !ct.IsCancellationRequested)
        {
            throw new EndpointUnreachableException($"{e}: {ex.Message}", ex);
        }
    }

    private sealed class LocalTcp(Socket socket) : TcpUpstream
    {
        public override string Path => "local";

        public override Task BridgeAsync(Socket client, ByteSink bytes, CancellationToken ct) => SocketPair.RunAsync(client, socket, bytes, ct);

        public override ValueTask DisposeAsync()
        {
            socket.Dispose();
            return ValueTask.CompletedTask;
        }
    }

    private sealed class TunnelTcp(TunnelStream stream, TunnelService tunnel) : TcpUpstream
    {
        public override string Path => stream.IsRelayed ? "relay" : "direct";

        public override async Task BridgeAsync(Socket client, ByteSink bytes, CancellationToken ct)
        {
            // The tunnel's own counters (bytes by peer and path) plus this service's.
            var counters = tunnel.NewCounters(stream.Peer, stream.IsRelayed);
            var toPipe = counters.OnToPipe;
            var toSocket = counters.OnToSocket;
            counters.OnToPipe = n => { toPipe?.Invoke(n); bytes.FromClient(n); };
            counters.OnToSocket = n => { toSocket?.Invoke(n); bytes.ToClient(n); };
            try
            {
                await SocketBridge.RunAsync(client, stream.Stream, counters, ct).ConfigureAwait(false);
            }
            catch
            {
                stream.Stream.Reset();
                throw;
            }
        }

        public override ValueTask DisposeAsync() => stream.DisposeAsync();
    }

    /// <summary>A TCP connection through the resumable tunnel: it outlives the path it starts on.</summary>
    private sealed class ResumableTcp(Resume.ResumableConnection connection, TunnelService tunnel) : TcpUpstream
    {
        public override string Path => connection.IsRelayed ? "relay" : "direct";

        public override Task BridgeAsync(Socket client, ByteSink bytes, CancellationToken ct)
        {
            var counters = tunnel.NewCounters(connection.Peer, connection.IsRelayed);
            var toPipe = counters.OnToPipe;
            var toSocket = counters.OnToSocket;
            counters.OnToPipe = n => { toPipe?.Invoke(n); bytes.FromClient(n); };
            counters.OnToSocket = n => { toSocket?.Invoke(n); bytes.ToClient(n); };
            return connection.RunAsync(client, counters, ct);
        }

        public override ValueTask DisposeAsync() => ValueTask.CompletedTask; // the session owns its streams
    }

    private sealed class LocalUdp(Socket socket) : UdpUpstream
    {
        public override string Path => "local";

        public override async ValueTask SendAsync(ReadOnlyMemory<byte> datagram, bool more, CancellationToken ct)
        {
            try
            {
                await socket.SendAsync(datagram, SocketFlags.None, ct).ConfigureAwait(false);
            }
            catch (SocketException ex) when (ex.SocketErrorCode is SocketError.ConnectionRefused or SocketError.ConnectionReset)
            {
                // An ICMP port unreachable from an earlier datagram: UDP carries on, as it would without the proxy.
            }
        }

        public override async ValueTask<ReadOnlyMemory<byte>?> ReceiveAsync(Memory<byte> buffer, CancellationToken ct)
        {
            while (true)
            {
                try
                {
                    var n = await socket.ReceiveAsync(buffer, SocketFlags.None, ct).ConfigureAwait(false);
                    return buffer[..n];
                }
                catch (SocketException ex) when (ex.SocketErrorCode is SocketError.ConnectionRefused or SocketError.ConnectionReset)
                {
                    // as above
                }
            }
        }

        public override ValueTask DisposeAsync()
        {
            socket.Dispose();
            return ValueTask.CompletedTask;
        }
    }

    private sealed class TunnelUdp(TunnelStream stream) : UdpUpstream
    {
        public override string Path => stream.IsRelayed ? "relay" : "direct";

        public override async ValueTask SendAsync(ReadOnlyMemory<byte> datagram, bool more, CancellationToken ct)
        {
            UdpFraming.Write(stream.Stream.Output, datagram.Span);
            if (!more && (await stream.Stream.Output.FlushAsync(ct).ConfigureAwait(false)).IsCompleted)
                throw new IOException("the tunnel stream stopped taking datagrams");
        }

        public override async ValueTask<ReadOnlyMemory<byte>?> ReceiveAsync(Memory<byte> buffer, CancellationToken ct)
        {
            var d = await UdpFraming.ReadAsync(stream.Stream.Input, ProxyLimits.MaxDatagram, ct).ConfigureAwait(false);
            return d;
        }

        public override async ValueTask DisposeAsync()
        {
            try { await stream.Stream.Output.CompleteAsync().ConfigureAwait(false); } catch (Exception) { /* already gone */ }
            await stream.DisposeAsync().ConfigureAwait(false);
        }
    }
}

/// <summary>
/// Copies between two TCP sockets both ways with half-close (one side's EOF shuts the other's send side); ends when
/// both directions ended. An error in either resets both.
/// </summary>
internal static class SocketPair
{
    /// <summary>Largest single read.</summary>
    public const int Chunk = 64 * 1024;

    public static async Task RunAsync(Socket client, Socket upstream, ByteSink bytes, CancellationToken ct)
    {
        using var abort = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var up = PumpAsync(client, upstream, bytes.FromClient, abort.Token);
        var down = PumpAsync(upstream, client, bytes.ToClient, abort.Token);
        // The first direction to fail resets both sockets at once (the other may be waiting on a read that never ends).
        var first = await Task.WhenAny(up, down).ConfigureAwait(false);
        var second = first == up ? down : up;
        try
        {
            await first.ConfigureAwait(false);
            await second.ConfigureAwait(false);
        }
        catch
        {
            await abort.CancelAsync().ConfigureAwait(false);
            SocketBridge.Abort(client);
            SocketBridge.Abort(upstream);
            try { await second.ConfigureAwait(false); } catch (Exception) { /* the first error is rethrown */ }
            throw;
        }
    }

    private static async Task PumpAsync(Socket from, Socket to, Action<long> count, CancellationToken ct)
    {
        var buffer = ArrayPool<byte>.Shared.Rent(Chunk);
        try
        {
            while (true)
            {
                int n;
                try
                {
                    n = await from.ReceiveAsync(buffer.AsMemory(0, Chunk), SocketFlags.None, ct).ConfigureAwait(false);
                }
                catch (SocketException ex) when (ex.SocketErrorCode == SocketError.Shutdown)
                {
                    n = 0;
                }
                if (n == 0)
                {
                    try { to.Shutdown(SocketShutdown.Send); } catch (SocketException) { /* gone: the other direction reports it */ }
                    return;
                }
                var sent = 0;
                while (sent < n) sent += await to.SendAsync(buffer.AsMemory(sent, n - sent), SocketFlags.None, ct).ConfigureAwait(false);
                count(n);
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }
}
