using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using Weft.Wire.Multiformats;

namespace Weft.P2P.Transport;

/// <summary>A raw, not yet upgraded, connection: a duplex byte pipe plus its two addresses.</summary>
public sealed class RawConnection : IAsyncDisposable
{
    private readonly Action _abort;
    private readonly Func<ValueTask> _dispose;

    /// <summary>Any connected byte stream: a TCP socket, a relayed circuit, an in-memory pipe in tests.</summary>
    public RawConnection(IDuplexPipe transport, Multiaddr local, Multiaddr remote, Action abort, Func<ValueTask> dispose)
    {
        Transport = transport;
        LocalAddress = local;
        RemoteAddress = remote;
        _abort = abort;
        _dispose = dispose;
    }

    internal RawConnection(StreamSocketPipe pipe, Multiaddr local, Multiaddr remote)
        : this(pipe, local, remote, pipe.Abort, pipe.DisposeAsync)
    {
    }

    public IDuplexPipe Transport { get; }
    public Multiaddr LocalAddress { get; }
    public Multiaddr RemoteAddress { get; }

    /// <summary>Closes the connection now, whatever is buffered.</summary>
    public void Abort() => _abort();

    public ValueTask DisposeAsync() => _dispose();
}

/// <summary>
/// A socket as a duplex pipe through <see cref="NetworkStream"/> and the framework's stream pipes:
/// reads of 64 KiB+ into pooled buffers, writes straight from the caller's flush. Measured in bench/
/// at about 1.6× Kestrel's socket pipes end to end (Noise + yamux, loopback): Kestrel reads into
/// 4 KiB blocks and hops threads on every read and write.
/// </summary>
internal sealed class StreamSocketPipe : IDuplexPipe, IAsyncDisposable
{
    /// <summary>Buffer each socket read gets: a whole 65,551-byte Noise frame fits, and a read costs less per byte.</summary>
    public const int ReadBufferBytes = 256 * 1024;

    /// <summary>Smallest free space a read is started with.</summary>
    public const int MinimumReadBytes = 64 * 1024;

    /// <summary>Buffers the writer hands out; each flush writes its segments to the socket.</summary>
    public const int WriteBufferBytes = 256 * 1024;

    private readonly Socket _socket;
    private readonly NetworkStream _stream;

    public StreamSocketPipe(Socket socket)
    {
        _socket = socket;
        _stream = new NetworkStream(socket, ownsSocket: true);
        Input = PipeReader.Create(_stream, new StreamPipeReaderOptions(bufferSize: ReadBufferBytes, minimumReadSize: MinimumReadBytes, leaveOpen: true));
        Output = PipeWriter.Create(_stream, new StreamPipeWriterOptions(minimumBufferSize: WriteBufferBytes, leaveOpen: true));
    }

    public PipeReader Input { get; }
    public PipeWriter Output { get; }

    public void Abort()
    {
        try { _socket.Shutdown(SocketShutdown.Both); } catch (Exception ex) when (ex is SocketException or ObjectDisposedException) { }
        _socket.Dispose();
    }

    public ValueTask DisposeAsync()
    {
        Abort();
        return _stream.DisposeAsync();
    }
}

/// <summary>TCP over IPv4 and IPv6; each socket becomes a <see cref="StreamSocketPipe"/>.</summary>
public sealed class TcpTransport : IDisposable
{
    /// <summary>True when this transport can dial or listen on <paramref name="addr"/>.</summary>
    public static bool CanHandle(Multiaddr addr) =>
        addr.TryGetTcpEndPoint(out _) || addr.TryGetDnsTcp(out string _, out int _, out bool _);

    public TcpListenerHandle Listen(Multiaddr addr, int backlog, bool reusePort)
    {
        if (!addr.TryGetTcpEndPoint(out var ep) || ep is null)
            throw new ArgumentException($"cannot listen on {addr}: only /ip4|ip6/…/tcp/PORT addresses are supported", nameof(addr));
        var socket = new Socket(ep.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
            if (reusePort) SocketOptions.SetReusePort(socket);
            if (ep.AddressFamily == AddressFamily.InterNetworkV6) socket.DualMode = false;
            socket.Bind(ep);
            socket.Listen(backlog);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
        return new TcpListenerHandle(socket, this);
    }

    public async Task<RawConnection> DialAsync(Multiaddr addr, IPEndPoint? localBind, CancellationToken ct)
    {
        EndPoint target;
        if (addr.TryGetTcpEndPoint(out var ep) && ep is not null) target = ep;
        else if (addr.TryGetDnsTcp(out string host, out int port, out bool _)) target = new DnsEndPoint(host, port);
        else throw new ArgumentException($"not a TCP address: {addr}", nameof(addr));

        var family = target is IPEndPoint ip ? ip.AddressFamily : AddressFamily.InterNetwork;
        var socket = new Socket(family, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            if (localBind is not null && localBind.AddressFamily == family)
            {
                socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
                SocketOptions.SetReusePort(socket);
                socket.Bind(localBind);
            }
            await socket.ConnectAsync(target, ct).ConfigureAwait(false);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
        return Wrap(socket);
    }

    internal RawConnection Wrap(Socket socket)
    {
        socket.NoDelay = true;
        var local = Multiaddr.FromTcp((IPEndPoint)socket.LocalEndPoint!);
        var remote = Multiaddr.FromTcp(Normalize((IPEndPoint)socket.RemoteEndPoint!));
        return new RawConnection(new StreamSocketPipe(socket), local, remote);
    }

    private static IPEndPoint Normalize(IPEndPoint ep) =>
        ep.Address.IsIPv4MappedToIPv6 ? new IPEndPoint(ep.Address.MapToIPv4(), ep.Port) : ep;

    public void Dispose() { }
}

/// <summary>A bound TCP listening socket.</summary>
public sealed class TcpListenerHandle(Socket socket, TcpTransport transport) : IDisposable
{
    public Multiaddr Address { get; } = Multiaddr.FromTcp((IPEndPoint)socket.LocalEndPoint!);
    public IPEndPoint EndPoint => (IPEndPoint)socket.LocalEndPoint!;

    public async Task<RawConnection> AcceptAsync(CancellationToken ct)
    {
        var s = await socket.AcceptAsync(ct).ConfigureAwait(false);
        return transport.Wrap(s);
    }

    public void Dispose() => socket.Dispose();
}

internal static class SocketOptions
{
    /// <summary>SO_REUSEPORT, so that dialers can bind to the listen port (TCP simultaneous open for DCUtR).</summary>
    public static void SetReusePort(Socket socket)
    {
        if (OperatingSystem.IsLinux())
            socket.SetRawSocketOption(1 /* SOL_SOCKET */, 15 /* SO_REUSEPORT */, BitConverter.GetBytes(1));
    }
}
