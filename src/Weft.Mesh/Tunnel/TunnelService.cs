using System.Buffers;
using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Weft.Mesh.Paths;
using Weft.P2P.Host;
using Weft.P2P.IO;
using Weft.P2P.Yamux;
using ProtocolViolationException = Weft.Wire.ProtocolViolationException;
using Weft.Wire.Identity;
using Weft.Wire.Multiformats;
using Weft.Wire.Tunnel;

namespace Weft.Mesh.Tunnel;

/// <summary>Every limit and timeout of the tunnel.</summary>
public sealed record TunnelOptions
{
    /// <summary>Reading the CONNECT (server) or its answer (client).</summary>
    public TimeSpan HandshakeTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>One TCP connect to the endpoint.</summary>
    public TimeSpan DialTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Connect attempts to the endpoint before answering FAILED (EdgeMesh: 3).</summary>
    public int DialAttempts { get; init; } = 3;

    /// <summary>Wait between connect attempts (EdgeMesh meant 500 ms and wrote 500 µs).</summary>
    public TimeSpan DialRetryDelay { get; init; } = TimeSpan.FromMilliseconds(100);

    /// <summary>A UDP tunnel with no datagram either way for this long is closed.</summary>
    public TimeSpan UdpIdleTimeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>Largest datagram carried.</summary>
    public int MaxDatagram { get; init; } = 65507;

    /// <summary>Tunnel streams served at once, from all peers (EdgeMesh's tunnelBaseStreamIn).</summary>
    public int MaxStreamsIn { get; init; } = 10240;

    /// <summary>Tunnel streams served at once on one connection (EdgeMesh's tunnelPeerBaseStreamIn).</summary>
    public int MaxStreamsInPerPeer { get; init; } = 1024;

    /// <summary>Tunnel streams opened at once, to all peers.</summary>
    public int MaxStreamsOut { get; init; } = 10240;

    /// <summary>Tunnel streams opened at once to one peer.</summary>
    public int MaxStreamsOutPerPeer { get; init; } = 1024;

    /// <summary>
    /// Endpoints the tunnel never dials for a peer: this node's loopback and link-local addresses (its admin API, cloud
    /// metadata services). A peer asking for them gets FAILED.
    /// </summary>
    public IReadOnlyList<IPNetwork> DeniedTargets { get; init; } = DefaultDeniedTargets;

    /// <summary>Loopback, link-local and unspecified addresses.</summary>
    public static readonly IReadOnlyList<IPNetwork> DefaultDeniedTargets =
        [IPNetwork.Parse("127.0.0.0/8"), IPNetwork.Parse("::1/128"), IPNetwork.Parse("169.254.0.0/16"), IPNetwork.Parse("fe80::/10"), IPNetwork.Parse("0.0.0.0/32"), IPNetwork.Parse("::/128")];
}

/// <summary>The far side answered FAILED (it could not reach the endpoint, or refused it).</summary>
public sealed class TunnelRefusedException(string message) : Exception(message);

/// <summary>A tunnel stream to an endpoint on another node, after the handshake.</summary>
public sealed class TunnelStream(YamuxStream stream, Connection connection, PeerId peer) : IAsyncDisposable
{
    public YamuxStream Stream { get; } = stream;
    public Connection Connection { get; } = connection;
    public PeerId Peer { get; } = peer;
    public bool IsRelayed => Connection.IsRelayed;

    public ValueTask DisposeAsync() => Stream.DisposeAsync();
}

/// <summary>
/// EdgeMesh's tunnel, <c>/libp2p/tunnel-proxy/1.0.0</c> (byte-compatible: one length-prefixed Proxy message each way,
/// then raw bytes; TCP half-close is carried as stream FINs), and Weft's <c>/weft/tunnel-udp/1.0.0</c> (the same
/// handshake, then datagrams each with a uvarint length prefix, so their boundaries survive). Serves peers' streams by
/// dialling the endpoint from this node, and opens streams to endpoints on other nodes through <see cref="MeshDialer"/>.
/// </summary>
public sealed class TunnelService : IDisposable
{
    private readonly Libp2pHost _host;
    private readonly string _nodeName;
    private readonly MeshDialer _dialer;
    private readonly MeshMetrics _metrics;
    private readonly ILogger _log;
    private readonly ConcurrentDictionary<PeerId, PeerCounters> _perPeer = new();
    private int _in, _out;

    /// <summary>Bytes carried for one peer, and on which kind of path.</summary>
    public sealed class PeerCounters
    {
        public long DirectBytes;
        public long RelayedBytes;
        public int OpenOut;
    }

    private TunnelService(Libp2pHost host, string nodeName, MeshDialer dialer, TunnelOptions options, MeshMetrics metrics, ILogger log)
    {
        _host = host;
        _nodeName = nodeName;
        _dialer = dialer;
        Options = options;
        _metrics = metrics;
        _log = log;
    }

    public TunnelOptions Options { get; }

    /// <summary>Streams being served (in) and opened (out) now.</summary>
    public (int In, int Out) Active => (Volatile.Read(ref _in), Volatile.Read(ref _out));

    /// <summary>Bytes by peer and path kind, both directions together.</summary>
    public IReadOnlyDictionary<PeerId, PeerCounters> PerPeer => _perPeer;

    /// <summary>Serves the tunnel protocols on <paramref name="host"/> (unless <paramref name="serve"/> is false: EdgeMesh's ClientOnly mode).</summary>
    public static TunnelService Register(Libp2pHost host, string nodeName, MeshDialer dialer, TunnelOptions options, MeshMetrics metrics, ILogger log, bool serve = true)
    {
        var t = new TunnelService(host, nodeName, dialer, options, metrics, log);
        if (serve)
        {
            host.Handle(ProxyMessage.ProtocolId, (s, ct) => t.ServeAsync(s, framedUdp: false, ct), maxInboundPerConnection: options.MaxStreamsInPerPeer);
            host.Handle(ProxyMessage.UdpProtocolId, (s, ct) => t.ServeAsync(s, framedUdp: true, ct), maxInboundPerConnection: options.MaxStreamsInPerPeer);
        }
        return t;
    }

    public void Dispose()
    {
        _host.Unhandle(ProxyMessage.ProtocolId);
        _host.Unhandle(ProxyMessage.UdpProtocolId);
    }

    // ------------------------------------------------------------------ client

    /// <summary>
    /// Opens a TCP tunnel to <paramref name="target"/> on node <paramref name="nodeName"/> (peer <paramref name="peer"/>).
    /// Throws <see cref="TunnelRefusedException"/> when the node answers FAILED.
    /// </summary>
    public Task<TunnelStream> OpenTcpAsync(PeerId peer, string nodeName, IPEndPoint target, CancellationToken ct) =>
        OpenAsync(peer, nodeName, "tcp", ProxyMessage.ProtocolId, target, ct);

    /// <summary>Opens a UDP tunnel (Weft framing: read and write whole datagrams with <see cref="UdpFraming"/>).</summary>
    public Task<TunnelStream> OpenUdpAsync(PeerId peer, string nodeName, IPEndPoint target, CancellationToken ct) =>
        OpenAsync(peer, nodeName, "udp", ProxyMessage.UdpProtocolId, target, ct);

    private async Task<TunnelStream> OpenAsync(PeerId peer, string nodeName, string protocol, string protocolId, IPEndPoint target, CancellationToken ct)
    {
        var counters = _perPeer.GetOrAdd(peer, _ => new PeerCounters());
        if (Interlocked.Increment(ref _out) > Options.MaxStreamsOut | Interlocked.Increment(ref counters.OpenOut) > Options.MaxStreamsOutPerPeer)
        {
            Interlocked.Decrement(ref _out);
            Interlocked.Decrement(ref counters.OpenOut);
            Count("out", protocol, "limit");
            throw new TunnelRefusedException($"too many tunnel streams open (at most {Options.MaxStreamsOut}, {Options.MaxStreamsOutPerPeer} to one node)");
        }
        var released = 0;
        void Release()
        {
            if (Interlocked.Exchange(ref released, 1) != 0) return;
            Interlocked.Decrement(ref _out);
            Interlocked.Decrement(ref counters.OpenOut);
        }
        YamuxStream? stream = null;
        try
        {
            var (s, _, conn) = await _dialer.OpenStreamAsync(peer, [protocolId], ct).ConfigureAwait(false);
            stream = s;
            using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
            cts.CancelAfter(Options.HandshakeTimeout);
            var request = new ProxyMessage { Type = ProxyMessageType.Connect, Protocol = protocol, NodeName = nodeName, Ip = target.Address.ToString(), Port = target.Port };
            request.WriteLengthPrefixedTo(stream.Output);
            await stream.Output.FlushAsync(cts.Token).ConfigureAwait(false);
            ProxyMessage answer;
            try
            {
                answer = (await stream.Input.ReadAsync<ProxyMessage?>(ProxyMessage.TryRead, cts.Token).ConfigureAwait(false))!;
            }
            catch (OperationCanceledException) when (!ct.IsCancellationRequested)
            {
                throw new TimeoutException($"{nodeName} did not answer the tunnel request within {Options.HandshakeTimeout.TotalSeconds:0.#} s");
            }
            if (answer.Type != ProxyMessageType.Success)
                throw new TunnelRefusedException($"{nodeName} could not open {protocol} {target}: it answered {answer.Type}");
            Count("out", protocol, "ok");
            _ = stream.Completion.ContinueWith(_ => Release(), TaskScheduler.Default);
            return new TunnelStream(stream, conn, peer);
        }
        catch (Exception ex)
        {
            stream?.Reset();
            Release();
            if (ex is not TunnelRefusedException) Count("out", protocol, "error");
            else Count("out", protocol, "refused");
            throw;
        }
    }

    /// <summary>Bridges an accepted local socket with a tunnel stream until both ends are done; counts the bytes by path.</summary>
    public async Task BridgeAsync(Socket socket, TunnelStream tunnel, CancellationToken ct)
    {
        var counters = NewCounters(tunnel.Peer, tunnel.IsRelayed);
        try
        {
            await SocketBridge.RunAsync(socket, tunnel.Stream, counters, ct).ConfigureAwait(false);
            await tunnel.Stream.DisposeAsync().ConfigureAwait(false);
        }
        catch (Exception)
        {
            tunnel.Stream.Reset();
            throw;
        }
    }

    /// <summary>
    /// Counters that feed the per-path metrics and the per-peer totals of <paramref name="peer"/>, by the path in
    /// <see cref="BridgeCounters.Relayed"/> (starting as <paramref name="relayed"/>).
    /// </summary>
    public BridgeCounters NewCounters(PeerId peer, bool relayed)
    {
        var per = _perPeer.GetOrAdd(peer, _ => new PeerCounters());
        var relay = new KeyValuePair<string, object?>("path", "relay");
        var direct = new KeyValuePair<string, object?>("path", "direct");
        var counters = new BridgeCounters { Relayed = relayed };
        void Add(long n, string dir)
        {
            var viaRelay = counters.Relayed;
            if (viaRelay) Interlocked.Add(ref per.RelayedBytes, n);
            else Interlocked.Add(ref per.DirectBytes, n);
            _metrics.TunnelBytes.Add(n, viaRelay ? relay : direct, new KeyValuePair<string, object?>("direction", dir));
        }
        counters.OnToPipe = n => Add(n, "tx");
        counters.OnToSocket = n => Add(n, "rx");
        return counters;
    }

    private void Count(string direction, string protocol, string result) =>
        _metrics.TunnelStreams.Add(1, new("direction", direction), new("protocol", protocol), new("result", result));

    // ------------------------------------------------------------------ server

    private async Task ServeAsync(IncomingStream s, bool framedUdp, CancellationToken ct)
    {
        var stream = s.Stream;
        var peer = s.Connection.RemotePeer;
        if (Interlocked.Increment(ref _in) > Options.MaxStreamsIn)
        {
            Interlocked.Decrement(ref _in);
            Log.Refused(_log, peer.ToString(), "too many tunnel streams", Options.MaxStreamsIn);
            Count("in", "?", "limit");
            stream.Reset();
            return;
        }
        try
        {
            ProxyMessage request;
            using (var cts = CancellationTokenSource.CreateLinkedTokenSource(ct))
            {
                cts.CancelAfter(Options.HandshakeTimeout);
                try
                {
                    request = (await stream.Input.ReadAsync<ProxyMessage?>(ProxyMessage.TryRead, cts.Token).ConfigureAwait(false))!;
                }
                catch (ProtocolViolationException ex)
                {
                    Log.BadRequest(_log, peer.ToString(), ex.Detail);
                    Count("in", "?", "malformed");
                    stream.Reset();
                    return;
                }
                catch (Exception ex) when (ex is OperationCanceledException or EndOfStreamException or IOException)
                {
                    Log.BadRequest(_log, peer.ToString(), ex is OperationCanceledException ? "no request in time" : ex.Message);
                    stream.Reset();
                    return;
                }
            }
            var protocol = request.Protocol?.ToLowerInvariant();
            var (target, problem) = CheckTarget(request, framedUdp ? "udp" : null);
            if (target is null)
            {
                Log.BadRequest(_log, peer.ToString(), problem!);
                Count("in", protocol ?? "?", "refused");
                await AnswerAsync(stream, new ProxyMessage { Type = ProxyMessageType.Failed }, ct).ConfigureAwait(false);
                return;
            }
            if (protocol == "tcp") await ServeTcpAsync(s, request, target, ct).ConfigureAwait(false);
            else await ServeUdpAsync(s, request, target, framedUdp, ct).ConfigureAwait(false);
        }
        finally
        {
            Interlocked.Decrement(ref _in);
        }
    }

    /// <summary>Socket buffer asked for each way on UDP sockets to endpoints (the kernel caps it at net.core.rmem_max / wmem_max).</summary>
    public const int UdpSocketBuffer = 4 << 20;

    private bool Denied(IPAddress ip)
    {
        if (ip.IsIPv4MappedToIPv6) ip = ip.MapToIPv4();
        return Options.DeniedTargets.Any(n => n.Contains(ip));
    }

    /// <summary>The endpoint a CONNECT asks for, or why it is refused (also used by the resumable tunnel).</summary>
    internal (IPEndPoint? Target, string? Problem) CheckTarget(ProxyMessage request, string? onlyProtocol)
    {
        var protocol = request.Protocol?.ToLowerInvariant();
        var problem = request.Type != ProxyMessageType.Connect ? $"expected CONNECT, got {request.Type}"
            : protocol is not ("tcp" or "udp") ? $"protocol '{request.Protocol}' is neither tcp nor udp"
            : onlyProtocol is not null && protocol != onlyProtocol ? $"this tunnel carries {onlyProtocol} only"
            : !IPAddress.TryParse(request.Ip, out var ip) ? $"'{request.Ip}' is not an IP address"
            : request.Port is not (> 0 and <= 65535) ? $"port {request.Port} is not 1..65535"
            : Denied(ip) ? $"{ip} is not a target the tunnel serves (loopback and link-local are refused)"
            : null;
        return problem is null ? (new IPEndPoint(IPAddress.Parse(request.Ip!), request.Port!.Value), null) : (null, problem);
    }

    /// <summary>Connects to an endpoint with the tunnel's timeout and retries; null when it cannot be reached.</summary>
    internal async Task<Socket?> DialAsync(IPEndPoint target, SocketType type, CancellationToken ct)
    {
        Exception? last = null;
        for (var attempt = 0; attempt < Options.DialAttempts; attempt++)
        {
            if (attempt > 0) await Task.Delay(Options.DialRetryDelay, _host.Time, ct).ConfigureAwait(false);
            var socket = new Socket(target.AddressFamily, type, type == SocketType.Stream ? ProtocolType.Tcp : ProtocolType.Udp);
            try
            {
                using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
                cts.CancelAfter(Options.DialTimeout);
                if (type == SocketType.Stream) socket.NoDelay = true;
                else
                {
                    // A burst of datagrams from the tunnel draws a burst of replies; the default buffer (~208 KiB) drops them.
                    socket.ReceiveBufferSize = UdpSocketBuffer;
                    socket.SendBufferSize = UdpSocketBuffer;
                }
                await socket.ConnectAsync(target, cts.Token).ConfigureAwait(false);
                return socket;
            }
            catch (Exception ex) when (!ct.IsCancellationRequested)
            {
                last = ex is OperationCanceledException ? new TimeoutException("connect timed out") : ex;
                socket.Dispose();
                if (ex is SocketException { SocketErrorCode: SocketError.ConnectionRefused } && type == SocketType.Stream && attempt + 1 >= 2) break;
            }
        }
        Log.DialFailed(_log, target.ToString(), last?.Message ?? "?");
        return null;
    }

    private async Task ServeTcpAsync(IncomingStream s, ProxyMessage request, IPEndPoint target, CancellationToken ct)
    {
        var stream = s.Stream;
        var socket = await DialAsync(target, SocketType.Stream, ct).ConfigureAwait(false);
        if (socket is null)
        {
            Count("in", "tcp", "unreachable");
            await AnswerAsync(stream, new ProxyMessage { Type = ProxyMessageType.Failed }, ct).ConfigureAwait(false);
            return;
        }
        using (socket)
        {
            // EdgeMesh answers by echoing the request with SUCCESS.
            (request with { Type = ProxyMessageType.Success }).WriteLengthPrefixedTo(stream.Output);
            await stream.Output.FlushAsync(ct).ConfigureAwait(false);
            Count("in", "tcp", "ok");
            Log.Serving(_log, s.Connection.RemotePeer.ToString(), "tcp", target.ToString(), s.Connection.IsRelayed ? "relay" : "direct");
            var counters = NewCounters(s.Connection.RemotePeer, s.Connection.IsRelayed);
            try
            {
                await SocketBridge.RunAsync(socket, stream, counters, ct).ConfigureAwait(false);
            }
            catch (Exception ex)
            {
                Log.StreamBroken(_log, s.Connection.RemotePeer.ToString(), target.ToString(), ex.Message);
                stream.Reset();
            }
        }
    }

    private async Task ServeUdpAsync(IncomingStream s, ProxyMessage request, IPEndPoint target, bool framed, CancellationToken ct)
    {
        var stream = s.Stream;
        var socket = await DialAsync(target, SocketType.Dgram, ct).ConfigureAwait(false);
        if (socket is null)
        {
            Count("in", "udp", "unreachable");
            await AnswerAsync(stream, new ProxyMessage { Type = ProxyMessageType.Failed }, ct).ConfigureAwait(false);
            return;
        }
        using (socket)
        {
            (request with { Type = ProxyMessageType.Success }).WriteLengthPrefixedTo(stream.Output);
            await stream.Output.FlushAsync(ct).ConfigureAwait(false);
            Count("in", "udp", "ok");
            var counters = NewCounters(s.Connection.RemotePeer, s.Connection.IsRelayed);
            try
            {
                await UdpFraming.BridgeAsync(socket, stream, framed, Options.MaxDatagram, Options.UdpIdleTimeout, _host.Time, counters, ct).ConfigureAwait(false);
                await stream.DisposeAsync().ConfigureAwait(false);
            }
            catch (Exception ex)
            {
                Log.StreamBroken(_log, s.Connection.RemotePeer.ToString(), target.ToString(), ex.Message);
                stream.Reset();
            }
        }
    }

    private static async Task AnswerAsync(YamuxStream stream, ProxyMessage answer, CancellationToken ct)
    {
        try
        {
            answer.WriteLengthPrefixedTo(stream.Output);
            await stream.Output.FlushAsync(ct).ConfigureAwait(false);
            await stream.Output.CompleteAsync().ConfigureAwait(false);
        }
        catch (Exception)
        {
            stream.Reset();
        }
    }
}
