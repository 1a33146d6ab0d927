using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Threading.Channels;
using Weft.Mesh.Tunnel;

namespace Weft.Mesh.Proxy;

/// <summary>One service port: its listener, its load balancer, and reaching an endpoint with bounded attempts.</summary>
internal abstract class PortRunner
{
    protected readonly ServiceProxy Proxy;
    private readonly object _gate = new();
    private bool _stopped;

    protected PortRunner(ServiceProxy proxy, ServiceState service, ServicePort port, IPAddress address)
    {
        Proxy = proxy;
        Address = address;
        Picker = new EndpointPicker(proxy.Time, proxy.Limits);
        Service = service;
        Port = port;
        Update(service, port);
    }

    public ServiceState Service { get; private set; }
    public ServicePort Port { get; private set; }
    public IPAddress Address { get; }
    public EndpointPicker Picker { get; }
    public bool Listening { get; private set; }
    public string? Error { get; private set; }
    public long Connections;
    public long Failures;
    public long Dropped;
    public int Active;

    public virtual int FlowCount => 0;

    /// <summary>Where clients connect: http:// for a TCP port named http (or http-...), https:// for https, else tcp:// or udp://.</summary>
    public string Url
    {
        get
        {
            var scheme = Port.Protocol == ServiceProtocol.Udp ? "udp"
                : Port.Name == "https" || Port.Name.StartsWith("https-", StringComparison.Ordinal) ? "https"
                : Port.Name == "http" || Port.Name.StartsWith("http-", StringComparison.Ordinal) ? "http"
                : "tcp";
            var url = $"{scheme}://{new IPEndPoint(Address, Port.Port)}";
            return scheme.StartsWith("http", StringComparison.Ordinal) ? url + "/" : url;
        }
    }

    protected string Label => Service.Label + (Port.Name.Length > 0 ? ":" + Port.Name : "");

    /// <summary>New endpoints, policy or target ports for this service port (open connections keep theirs).</summary>
    public void Update(ServiceState service, ServicePort port)
    {
        Service = service;
        Port = port;
        var spec = service.Spec!;
        var targets = spec.Endpoints.Select(e => new EndpointTarget(e.NodeName, e.Ip, e.PortFor(port))).ToList();
        Picker.Update(targets, spec.Policy, spec.Affinity, spec.AffinityTimeout);
        EndpointsChanged(targets.ToHashSet());
    }

    protected virtual void EndpointsChanged(HashSet<EndpointTarget> endpoints)
    {
    }

    /// <summary>Binds the listener unless already listening or stopped; a failure is kept in <see cref="Error"/> and retried later.</summary>
    public void TryListen()
    {
        lock (_gate)
        {
            if (_stopped || Listening) return;
            try
            {
                Bind(new IPEndPoint(Address, Port.Port));
                Listening = true;
                Error = null;
                Log.Listening(Proxy.LogTo, Service.Label, Port.Name, Url);
                Proxy.NotifyChanged();
            }
            catch (SocketException ex)
            {
                var why = ex.SocketErrorCode switch
                {
                    SocketError.AccessDenied when Port.Port < 1024 => $"{ex.Message}: ports below 1024 need root or CAP_NET_BIND_SERVICE",
                    SocketError.AddressNotAvailable => $"{ex.Message}: {Address} is not an address of this node (serviceCIDR must be a loopback range or local addresses)",
                    _ => ex.Message,
                };
                if (Error != why) Log.ListenFailed(Proxy.LogTo, Service.Label, Url, why);
                Error = why;
            }
        }
    }

    /// <summary>Closes the listener for good (the service or port left the catalogue, or the proxy stops).</summary>
    public void StopListening()
    {
        lock (_gate)
        {
            if (_stopped) return;
            _stopped = true;
            if (Listening) Log.StoppedListening(Proxy.LogTo, Service.Label, Url);
            Listening = false;
            Unbind();
        }
        Proxy.NotifyChanged();
    }

    protected abstract void Bind(IPEndPoint at);

    /// <summary>Runs <paramref name="setup"/> on a new socket; disposes it if that fails.</summary>
    protected static Socket Set(Socket socket, Action<Socket> setup)
    {
        try
        {
            setup(socket);
            return socket;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    protected abstract void Unbind();

    /// <summary>
    /// Reaches an endpoint for <paramref name="client"/>: at most <see cref="ProxyLimits.MaxAttempts"/> attempts, each
    /// within <see cref="ProxyLimits.ConnectTimeout"/>; a failed endpoint is marked (cooldown) and the next one tried at
    /// once; when every endpoint failed for this connection they are tried again after <see cref="ProxyLimits.RetryDelay"/>
    /// (doubling). Null when none could be reached.
    /// </summary>
    protected async Task<(T Upstream, EndpointTarget Endpoint)?> ReachAsync<T>(IPAddress client, Func<EndpointTarget, CancellationToken, Task<T>> open, CancellationToken ct)
        where T : class
    {
        var limits = Proxy.Limits;
        var tried = new List<EndpointTarget>();
        var delay = limits.RetryDelay;
        for (var attempt = 1; attempt <= limits.MaxAttempts; attempt++)
        {
            var endpoint = Picker.Pick(client, tried);
            if (endpoint is null && tried.Count > 0)
            {
                await Task.Delay(delay, Proxy.Time, ct).ConfigureAwait(false);
                delay *= 2;
                tried.Clear();
                endpoint = Picker.Pick(client, tried);
            }
            if (endpoint is null) break;
            var started = Proxy.Time.GetTimestamp();
            using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
            cts.CancelAfter(limits.ConnectTimeout);
            try
            {
                var upstream = await open(endpoint, cts.Token).ConfigureAwait(false);
                Picker.Succeeded(client, endpoint);
                var path = upstream switch { TcpUpstream t => t.Path, UdpUpstream u => u.Path, _ => "?" };
                Proxy.Metrics.ConnectSeconds.Record(Proxy.Time.GetElapsedTime(started).TotalSeconds, new KeyValuePair<string, object?>("path", path));
                return (upstream, endpoint);
            }
            catch (Exception ex) when (!ct.IsCancellationRequested)
            {
                Picker.Failed(endpoint);
                tried.Add(endpoint);
                Interlocked.Increment(ref Failures);
                Proxy.NotifyChanged();
                Proxy.Metrics.EndpointFailures.Add(1, new("service", Service.Label), new("path", Proxy.Upstreams.IsLocal(endpoint) ? "local" : "tunnel"));
                var why = ex is OperationCanceledException ? $"no answer within {limits.ConnectTimeout.TotalSeconds:0.###} s" : ex.Message;
                Log.EndpointFailed(Proxy.LogTo, Label, endpoint.ToString(), attempt, why);
            }
        }
        return null;
    }

    protected void CountBytes(long n, bool fromClient, string protocol)
    {
        if (fromClient) Interlocked.Add(ref Service.BytesFromClients, n);
        else Interlocked.Add(ref Service.BytesToClients, n);
        Proxy.Metrics.Bytes.Add(n, new("service", Service.Label), new("protocol", protocol), new("direction", fromClient ? "rx" : "tx"));
    }
}

/// <summary>A TCP service port: accepts clients and bridges each with a connection to an endpoint.</summary>
internal sealed class TcpPortRunner(ServiceProxy proxy, ServiceState service, ServicePort port, IPAddress address) : PortRunner(proxy, service, port, address)
{
    private Socket? _listener;

    protected override void Bind(IPEndPoint at)
    {
        var s = Set(new Socket(at.AddressFamily, SocketType.Stream, ProtocolType.Tcp), s =>
        {
            // Lets a listener come back on this address while connections it accepted earlier are still open.
            s.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
            s.Bind(at);
            s.Listen(ProxyLimits.ListenBacklog);
        });
        _listener = s;
        _ = Task.Run(() => AcceptLoopAsync(s));
    }

    protected override void Unbind()
    {
        _listener?.Dispose();
        _listener = null;
    }

    private async Task AcceptLoopAsync(Socket listener)
    {
        var ct = Proxy.Lifetime;
        while (!ct.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await listener.AcceptAsync(ct).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is ObjectDisposedException or OperationCanceledException || (ex is SocketException && _listener != listener))
            {
                return; // closed
            }
            catch (SocketException ex)
            {
                // Out of file descriptors, say: report, breathe, go on.
                Log.AcceptFailed(Proxy.LogTo, Label, ex.Message);
                try { await Task.Delay(TimeSpan.FromMilliseconds(100), Proxy.Time, ct).ConfigureAwait(false); } catch (OperationCanceledException) { return; }
                continue;
            }
            if (!Proxy.Track(() => ServeAsync(client))) client.Dispose();
        }
    }

    private async Task ServeAsync(Socket client)
    {
        var service = Service;
        var from = client.RemoteEndPoint as IPEndPoint;
        var clientIp = from?.Address ?? IPAddress.None;
        var tags = new KeyValuePair<string, object?>("service", service.Label);
        if (Proxy.EnterConnection(service) is { } limit)
        {
            Log.OverLimit(Proxy.LogTo, Label, from?.ToString() ?? "?", limit);
            Proxy.Metrics.Connections.Add(1, tags, new("result", "limit"));
            SocketBridge.Abort(client);
            return;
        }
        Interlocked.Increment(ref Active);
        try
        {
            client.NoDelay = true;
            var ct = Proxy.Lifetime;
            var reached = await ReachAsync(clientIp, Proxy.Upstreams.ConnectTcpAsync, ct).ConfigureAwait(false);
            if (reached is not { } found)
            {
                if (ct.IsCancellationRequested) return;
                Log.NoEndpoint(Proxy.LogTo, Label, from?.ToString() ?? "?", Proxy.Limits.MaxAttempts);
                Proxy.Metrics.Connections.Add(1, tags, new("result", "failed"));
                SocketBridge.Abort(client);
                return;
            }
            var (upstream, endpoint) = found;
            Interlocked.Increment(ref Connections);
            Proxy.Metrics.Connections.Add(1, tags, new("result", "ok"));
            await using (upstream.ConfigureAwait(false))
            {
                try
                {
                    await upstream.BridgeAsync(client, new ByteSink(n => CountBytes(n, true, "tcp"), n => CountBytes(n, false, "tcp")), ct).ConfigureAwait(false);
                }
                catch (Exception ex)
                {
                    SocketBridge.Abort(client);
                    Log.ConnectionBroken(Proxy.LogTo, Label, from?.ToString() ?? "?", endpoint.ToString(), upstream.Path, ex.Message);
                }
            }
        }
        finally
        {
            Interlocked.Decrement(ref Active);
            Proxy.LeaveConnection(service);
            client.Dispose();
        }
    }
}

/// <summary>
/// A UDP service port: one socket receives every client's datagrams; each client address and port is a flow with its
/// own endpoint association (a framed tunnel stream, or a connected socket for a local endpoint), which replies go
/// back through, from the service address. Flows end after <see cref="ProxyLimits.UdpIdleTimeout"/> of quiet.
/// </summary>
internal sealed class UdpPortRunner(ServiceProxy proxy, ServiceState service, ServicePort port, IPAddress address) : PortRunner(proxy, service, port, address)
{
    /// <summary>Socket buffer asked for each way (the kernel caps it at net.core.rmem_max / wmem_max).</summary>
    public const int SocketBuffer = 4 << 20;

    /// <summary>At the flow limit, a flow quiet for at least this long is closed to make room for a new client.</summary>
    public static readonly TimeSpan EvictableAfter = TimeSpan.FromSeconds(1);

    private readonly ConcurrentDictionary<IPEndPoint, Flow> _flows = new();
    private Socket? _socket;

    public override int FlowCount => _flows.Count;

    protected override void Bind(IPEndPoint at)
    {
        var s = Set(new Socket(at.AddressFamily, SocketType.Dgram, ProtocolType.Udp), s =>
        {
            s.ReceiveBufferSize = SocketBuffer;
            s.SendBufferSize = SocketBuffer;
            s.Bind(at);
        });
        _socket = s;
        _ = Task.Run(() => ReceiveLoopAsync(s));
    }

    protected override void Unbind()
    {
        _socket?.Dispose();
        _socket = null;
        foreach (var f in _flows.Values) f.Close("the service port closed");
    }

    protected override void EndpointsChanged(HashSet<EndpointTarget> endpoints)
    {
        foreach (var f in _flows.Values)
            if (f.Endpoint is { } e && !endpoints.Contains(e)) f.Close("its endpoint left the catalogue");
    }

    private async Task ReceiveLoopAsync(Socket socket)
    {
        var ct = Proxy.Lifetime;
        var buffer = new byte[ProxyLimits.MaxDatagram + 1];
        EndPoint any = new IPEndPoint(socket.AddressFamily == AddressFamily.InterNetwork ? IPAddress.Any : IPAddress.IPv6Any, 0);
        while (!ct.IsCancellationRequested)
        {
            SocketReceiveFromResult r;
            try
            {
                r = await socket.ReceiveFromAsync(buffer, SocketFlags.None, any, ct).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is ObjectDisposedException or OperationCanceledException || (ex is SocketException && _socket != socket))
            {
                return;
            }
            catch (SocketException)
            {
                continue; // an ICMP error for an earlier reply: nothing to do
            }
            var client = (IPEndPoint)r.RemoteEndPoint;
            var service = Service;
            var tags = new KeyValuePair<string, object?>("service", service.Label);
            Proxy.Metrics.UdpDatagrams.Add(1, tags, new("direction", "rx"));
            CountBytes(r.ReceivedBytes, true, "udp");
            if (_flows.TryGetValue(client, out var flow) && flow.Closing)
            {
                _flows.TryRemove(new KeyValuePair<IPEndPoint, Flow>(client, flow)); // a new flow takes over
                flow = null;
            }
            if (flow is null)
            {
                if (!Proxy.EnterFlow(service) && !(EvictOne() && Proxy.EnterFlow(service)))
                {
                    Log.FlowLimit(Proxy.LogTo, Label, Proxy.Limits.MaxUdpFlows, client.ToString());
                    Interlocked.Increment(ref Dropped);
                    Proxy.Metrics.UdpDropped.Add(1, tags, new("reason", "flows"));
                    continue;
                }
                flow = new Flow(this, service, client, socket);
                _flows[client] = flow;
                Proxy.Metrics.UdpFlowsOpened.Add(1, tags);
                if (!Proxy.Track(flow.RunAsync)) return;
            }
            if (!flow.Enqueue(buffer.AsSpan(0, r.ReceivedBytes).ToArray()))
            {
                Interlocked.Increment(ref Dropped);
                Proxy.Metrics.UdpDropped.Add(1, tags, new("reason", flow.Failed ? "unreachable" : "queue"));
            }
        }
    }

    /// <summary>Closes this port's longest-quiet flow if it has been quiet for <see cref="EvictableAfter"/>.</summary>
    private bool EvictOne()
    {
        var oldest = _flows.Values.Where(f => !f.Closing).MinBy(f => f.LastActive);
        if (oldest is null || Proxy.Time.GetElapsedTime(oldest.LastActive) < EvictableAfter) return false;
        oldest.Close("evicted: the UDP flow limit was reached");
        oldest.Release(); // its slot is free for the new flow now; the closing flow no longer counts
        return true;
    }

    private sealed class Flow(UdpPortRunner port, ServiceState service, IPEndPoint client, Socket socket)
    {
        private readonly Channel<byte[]> _queue = Channel.CreateBounded<byte[]>(new BoundedChannelOptions(port.Proxy.Limits.UdpFlowQueue)
        {
            SingleReader = true,
            SingleWriter = true,
            FullMode = BoundedChannelFullMode.Wait,
        });
        private readonly CancellationTokenSource _stop = CancellationTokenSource.CreateLinkedTokenSource(port.Proxy.Lifetime);
        private long _lastActive = port.Proxy.Time.GetTimestamp();
        private int _released;
        private string _why = "idle";

        public EndpointTarget? Endpoint { get; private set; }
        public bool Failed { get; private set; }
        public bool Closing => _stop.IsCancellationRequested;
        public long LastActive => Volatile.Read(ref _lastActive);

        private void Touch() => Volatile.Write(ref _lastActive, port.Proxy.Time.GetTimestamp());

        public bool Enqueue(byte[] datagram) => _queue.Writer.TryWrite(datagram);

        public void Close(string why)
        {
            _why = why;
            try { _stop.Cancel(); } catch (ObjectDisposedException) { /* ended already */ }
        }

        /// <summary>Gives the flow's slot back (once).</summary>
        public void Release()
        {
            if (Interlocked.Exchange(ref _released, 1) == 0) port.Proxy.LeaveFlow(service);
        }

        public async Task RunAsync()
        {
            var ct = _stop.Token;
            var tags = new KeyValuePair<string, object?>("service", service.Label);
            try
            {
                var reached = await port.ReachAsync(client.Address, port.Proxy.Upstreams.OpenUdpAsync, ct).ConfigureAwait(false);
                if (reached is not { } found)
                {
                    if (ct.IsCancellationRequested) return;
                    // Nothing reachable: the queued datagrams are lost, and so are the client's next ones for a
                    // cooldown (no new attempts per datagram); then a datagram starts a new flow.
                    Failed = true;
                    _queue.Writer.TryComplete();
                    var lost = 0;
                    while (_queue.Reader.TryRead(out _)) lost++;
                    Interlocked.Add(ref port.Dropped, lost);
                    port.Proxy.Metrics.UdpDropped.Add(lost, tags, new("reason", "unreachable"));
                    Log.NoEndpoint(port.Proxy.LogTo, port.Label, client.ToString(), port.Proxy.Limits.MaxAttempts);
                    _why = "no endpoint reachable";
                    await Task.Delay(port.Proxy.Limits.EndpointCooldown, port.Proxy.Time, ct).ConfigureAwait(false);
                    return;
                }
                var (upstream, endpoint) = found;
                Endpoint = endpoint;
                await using (upstream.ConfigureAwait(false))
                {
                    if (!port.Picker.Endpoints.Contains(endpoint)) return; // the catalogue changed while we dialled
                    Log.FlowOpened(port.Proxy.LogTo, port.Label, client.ToString(), endpoint.ToString(), upstream.Path);
                    var up = UpAsync(upstream, ct);
                    var down = DownAsync(upstream, tags, ct);
                    var idle = IdleAsync(ct);
                    var first = await Task.WhenAny(up, down, idle).ConfigureAwait(false);
                    if (first == down && first.IsCompletedSuccessfully) _why = "the endpoint side ended it";
                    else if (first.IsFaulted) _why = first.Exception!.InnerException!.Message;
                    await _stop.CancelAsync().ConfigureAwait(false);
                    try { await Task.WhenAll(up, down, idle).ConfigureAwait(false); } catch (Exception) { /* stopping */ }
                }
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                // closed
            }
            finally
            {
                port._flows.TryRemove(new KeyValuePair<IPEndPoint, Flow>(client, this));
                Release();
                _queue.Writer.TryComplete();
                Log.FlowClosed(port.Proxy.LogTo, port.Label, client.ToString(), _why);
                _stop.Dispose();
            }
        }

        private async Task UpAsync(UdpUpstream upstream, CancellationToken ct)
        {
            var reader = _queue.Reader;
            while (await reader.WaitToReadAsync(ct).ConfigureAwait(false))
            {
                while (reader.TryRead(out var d))
                {
                    Touch();
                    await upstream.SendAsync(d, reader.TryPeek(out _), ct).ConfigureAwait(false);
                }
            }
        }

        private async Task DownAsync(UdpUpstream upstream, KeyValuePair<string, object?> tags, CancellationToken ct)
        {
            var buffer = new byte[ProxyLimits.MaxDatagram];
            while (await upstream.ReceiveAsync(buffer, ct).ConfigureAwait(false) is { } d)
            {
                Touch();
                await socket.SendToAsync(d, SocketFlags.None, client, ct).ConfigureAwait(false);
                port.Proxy.Metrics.UdpDatagrams.Add(1, tags, new("direction", "tx"));
                port.CountBytes(d.Length, false, "udp");
            }
        }

        private async Task IdleAsync(CancellationToken ct)
        {
            var idle = port.Proxy.Limits.UdpIdleTimeout;
            while (true)
            {
                var quiet = port.Proxy.Time.GetElapsedTime(LastActive);
                if (quiet >= idle) return;
                await Task.Delay(idle - quiet, port.Proxy.Time, ct).ConfigureAwait(false);
            }
        }
    }
}
