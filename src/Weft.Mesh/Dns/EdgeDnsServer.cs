using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using Microsoft.Extensions.Logging;

namespace Weft.Mesh.Dns;

/// <summary>The edge DNS server as <c>weft status</c> shows it.</summary>
public sealed record EdgeDnsView(string Listen, bool Listening, string? Error, string Domain, IReadOnlyList<string> Upstreams,
    long Queries, long Answered, long Forwarded, long Failed);

/// <summary>
/// The edge DNS server (<c>modules.edgeDNS</c>): UDP and TCP (RFC 1035 §4.2, RFC 7766) on one address and port. Service
/// names are answered from the proxy's catalogue by <see cref="EdgeDnsResponder"/>; other queries are forwarded to the
/// upstream servers in order, each given <see cref="EdgeDnsLimits.UpstreamTimeout"/>, over the transport the client used,
/// with a fresh random ID from a fresh socket (so an off-path guess must hit both). A listener that cannot be bound (the
/// port in use, the address not on this host) is logged and tried again every few seconds; the agent keeps running.
/// </summary>
public sealed class EdgeDnsServer : IAsyncDisposable
{
    public const string MeterName = "Weft.Mesh.Dns";

    private readonly EdgeDnsConfig _config;
    private readonly EdgeDnsResponder _responder;
    private readonly Func<string, string, ServiceLookup> _lookup;
    private readonly ILogger _log;
    private readonly CancellationTokenSource _stop = new();
    private readonly SemaphoreSlim _forwarding;
    private readonly ConcurrentDictionary<long, Task> _work = new();
    private readonly Meter _meter;
    private readonly Counter<long> _queries;
    private readonly Histogram<double> _forwardSeconds;
    private readonly object _gate = new();
    private readonly TaskCompletionSource _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _firstAttempt = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private Socket? _udp;
    private Socket? _tcp;
    private string? _error;
    private Task? _main;
    private long _workIds;
    private int _tcpConnections;
    private long _count, _answered, _forwarded, _failed;

    private EdgeDnsServer(EdgeDnsConfig config, Func<string, string, ServiceLookup> lookup, ILoggerFactory loggers, object? meterScope)
    {
        _meter = new Meter(MeterName, null, null, meterScope);
        _config = config;
        _lookup = lookup;
        _responder = new EdgeDnsResponder(config.Domain, config.Ttl, config.Upstreams.Count > 0);
        _log = loggers.CreateLogger("Weft.Mesh.Dns");
        _forwarding = new SemaphoreSlim(config.Limits.MaxForwarding, config.Limits.MaxForwarding);
        _queries = _meter.CreateCounter<long>("weft_dns_queries", description: "queries received by the edge DNS server, by transport (udp, tcp) and outcome (answer, nodata, nxdomain, forward, refused, formerr, notimp, servfail, drop)");
        _forwardSeconds = _meter.CreateHistogram<double>("weft_dns_forward_seconds", "s", "time for a forwarded query to be answered by an upstream, by result (ok, failed)");
        _meter.CreateObservableGauge("weft_dns_tcp_connections", () => (long)Volatile.Read(ref _tcpConnections), description: "DNS-over-TCP client connections open now");
    }

    /// <summary>The address and port bound (the configured port, or the one the system chose for port 0); null until bound.</summary>
    public IPEndPoint? EndPoint { get; private set; }

    /// <summary>True while both listeners are bound.</summary>
    public bool Listening { get { lock (_gate) return _udp is not null; } }

    /// <summary>Completes once the listeners are bound (for tests and readiness); never fails.</summary>
    public Task Ready => _ready.Task;

    /// <summary>Completes after the first attempt to bind, bound or not (then <see cref="Warnings"/> says why).</summary>
    public Task FirstAttempt => _firstAttempt.Task;

    public static EdgeDnsServer Start(EdgeDnsConfig config, Func<string, string, ServiceLookup> lookup, ILoggerFactory loggers, object? meterScope = null)
    {
        var server = new EdgeDnsServer(config, lookup, loggers, meterScope);
        server._main = Task.Run(server.RunAsync);
        return server;
    }

    private async Task RunAsync()
    {
        var ct = _stop.Token;
        while (!ct.IsCancellationRequested)
        {
            var bound = TryBind(out var error);
            if (!bound)
            {
                bool changed;
                lock (_gate) { changed = _error != error; _error = error; }
                if (changed) Log.ListenFailed(_log, _config.ListenEndPoint.ToString(), error);
            }
            _firstAttempt.TrySetResult();
            if (bound) break;
            try { await Task.Delay(EdgeDnsLimits.ListenRetryInterval, ct).ConfigureAwait(false); }
            catch (OperationCanceledException) { return; }
        }
        if (ct.IsCancellationRequested) return;
        Log.Listening(_log, EndPoint!.ToString(), _config.Domain.ToString(), _config.Upstreams.Count == 0 ? "none (other names refused)" : string.Join(", ", _config.Upstreams));
        _ready.TrySetResult();
        await Task.WhenAll(UdpLoopAsync(_udp!, ct), TcpAcceptLoopAsync(_tcp!, ct)).ConfigureAwait(false);
    }

    /// <summary>Binds UDP, then TCP on the same port (for port 0, a few tries until a port is free for both).</summary>
    private bool TryBind(out string error)
    {
        error = "";
        for (var attempt = 0; attempt < (_config.ListenPort == 0 ? 8 : 1); attempt++)
        {
            Socket? udp = null, tcp = null;
            try
            {
                udp = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
                udp.Bind(_config.ListenEndPoint);
                var bound = (IPEndPoint)udp.LocalEndPoint!;
                tcp = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                tcp.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
                tcp.Bind(bound);
                tcp.Listen(EdgeDnsLimits.ListenBacklog);
                lock (_gate)
                {
                    _udp = udp;
                    _tcp = tcp;
                    _error = null;
                }
                EndPoint = bound;
                return true;
            }
            catch (SocketException ex)
            {
                udp?.Dispose();
                tcp?.Dispose();
                error = ex.SocketErrorCode switch
                {
                    SocketError.AddressAlreadyInUse => "the port is in use (another DNS server? set modules.edgeDNS.listenPort or listenAddress)",
                    SocketError.AddressNotAvailable => "the address is not on this host (set modules.edgeDNS.listenAddress)",
                    SocketError.AccessDenied => "permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)",
                    _ => ex.Message,
                };
            }
        }
        return false;
    }

    // ------------------------------------------------------------------ UDP

    private async Task UdpLoopAsync(Socket udp, CancellationToken ct)
    {
        var buffer = GC.AllocateUninitializedArray<byte>(EdgeDnsLimits.MaxMessage);
        EndPoint any = new IPEndPoint(IPAddress.Any, 0);
        while (!ct.IsCancellationRequested)
        {
            SocketReceiveFromResult r;
            try { r = await udp.ReceiveFromAsync(buffer, SocketFlags.None, any, ct).ConfigureAwait(false); }
            catch (OperationCanceledException) { return; }
            catch (ObjectDisposedException) { return; }
            catch (SocketException) { continue; } // an ICMP error for an earlier reply: nothing to do with the next query
            var client = (IPEndPoint)r.RemoteEndPoint;
            var query = buffer.AsSpan(0, r.ReceivedBytes);
            var decision = _responder.Decide(query, _lookup);
            Count("udp", decision.Outcome);
            if (decision.Response is { } response)
            {
                await SendUdpAsync(udp, response, client).ConfigureAwait(false);
            }
            else if (decision.Outcome == DnsOutcome.Forward)
            {
                var copy = query.ToArray();
                if (!_forwarding.Wait(0))
                {
                    Count("udp", DnsOutcome.ServerFailure);
                    Log.ForwardLimit(_log, _config.Limits.MaxForwarding);
                    await SendUdpAsync(udp, _responder.ServerFailure(copy), client).ConfigureAwait(false);
                    continue;
                }
                Track(async () =>
                {
                    try
                    {
                        var answer = await ForwardAsync(copy, tcp: false, decision.Name, ct).ConfigureAwait(false);
                        await SendUdpAsync(udp, answer, client).ConfigureAwait(false);
                    }
                    finally { _forwarding.Release(); }
                });
            }
        }
    }

    private static async Task SendUdpAsync(Socket udp, byte[] datagram, IPEndPoint client)
    {
        try { await udp.SendToAsync(datagram, SocketFlags.None, client).ConfigureAwait(false); }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException) { /* the client is gone, or we stop */ }
    }

    // ------------------------------------------------------------------ TCP

    private async Task TcpAcceptLoopAsync(Socket listener, CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            Socket s;
            try { s = await listener.AcceptAsync(ct).ConfigureAwait(false); }
            catch (OperationCanceledException) { return; }
            catch (ObjectDisposedException) { return; }
            catch (SocketException) { continue; }
            if (Interlocked.Increment(ref _tcpConnections) > _config.Limits.MaxTcpConnections)
            {
                Interlocked.Decrement(ref _tcpConnections);
                Log.TcpLimit(_log, s.RemoteEndPoint?.ToString() ?? "?", _config.Limits.MaxTcpConnections);
                s.Dispose();
                continue;
            }
            s.NoDelay = true;
            Track(async () =>
            {
                try { await ServeTcpAsync(s, ct).ConfigureAwait(false); }
                finally
                {
                    s.Dispose();
                    Interlocked.Decrement(ref _tcpConnections);
                }
            });
        }
    }

    /// <summary>One client connection: length-prefixed queries answered in order until it closes, goes idle or breaks a rule.</summary>
    private async Task ServeTcpAsync(Socket s, CancellationToken ct)
    {
        var prefix = new byte[2];
        var buffer = new byte[EdgeDnsLimits.MaxMessage];
        while (!ct.IsCancellationRequested)
        {
            using var idle = CancellationTokenSource.CreateLinkedTokenSource(ct);
            idle.CancelAfter(_config.Limits.TcpIdleTimeout);
            int length;
            try
            {
                if (!await ReadExactlyAsync(s, prefix, idle.Token).ConfigureAwait(false)) return; // closed between queries
                length = BinaryPrimitives.ReadUInt16BigEndian(prefix);
                if (length == 0 || !await ReadExactlyAsync(s, buffer.AsMemory(0, length), idle.Token).ConfigureAwait(false)) return;
            }
            catch (Exception ex) when (ex is OperationCanceledException or SocketException or ObjectDisposedException) { return; }
            var query = buffer.AsSpan(0, length);
            var decision = _responder.Decide(query, _lookup);
            Count("tcp", decision.Outcome);
            byte[]? answer = decision.Response;
            if (decision.Outcome == DnsOutcome.Forward)
            {
                var copy = query.ToArray();
                if (!_forwarding.Wait(0))
                {
                    Count("tcp", DnsOutcome.ServerFailure);
                    Log.ForwardLimit(_log, _config.Limits.MaxForwarding);
                    answer = _responder.ServerFailure(copy);
                }
                else
                {
                    try { answer = await ForwardAsync(copy, tcp: true, decision.Name, ct).ConfigureAwait(false); }
                    finally { _forwarding.Release(); }
                }
            }
            if (answer is null) return; // a response sent to us, or garbage without a header: nothing to say, close
            var frame = new byte[2 + answer.Length];
            BinaryPrimitives.WriteUInt16BigEndian(frame, (ushort)answer.Length);
            answer.CopyTo(frame, 2);
            try { await s.SendAsync(frame, SocketFlags.None, ct).ConfigureAwait(false); }
            catch (Exception ex) when (ex is OperationCanceledException or SocketException or ObjectDisposedException) { return; }
        }
    }

    private static async Task<bool> ReadExactlyAsync(Socket s, Memory<byte> into, CancellationToken ct)
    {
        var read = 0;
        while (read < into.Length)
        {
            var n = await s.ReceiveAsync(into[read..], SocketFlags.None, ct).ConfigureAwait(false);
            if (n == 0) return false;
            read += n;
        }
        return true;
    }

    // ------------------------------------------------------------------ forwarding

    /// <summary>
    /// Asks each upstream in turn; returns the first answer with the client's ID restored, or SERVFAIL when none answered
    /// within its timeout.
    /// </summary>
    private async Task<byte[]> ForwardAsync(byte[] query, bool tcp, string? name, CancellationToken ct)
    {
        var clientId = BinaryPrimitives.ReadUInt16BigEndian(query);
        var started = Stopwatch.GetTimestamp();
        string lastError = "no upstream";
        foreach (var upstream in _config.Upstreams)
        {
            var id = (ushort)RandomNumberGenerator.GetInt32(65536);
            BinaryPrimitives.WriteUInt16BigEndian(query, id);
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
            timeout.CancelAfter(_config.Limits.UpstreamTimeout);
            try
            {
                var answer = tcp ? await AskTcpAsync(upstream, query, id, timeout.Token).ConfigureAwait(false)
                                 : await AskUdpAsync(upstream, query, id, timeout.Token).ConfigureAwait(false);
                BinaryPrimitives.WriteUInt16BigEndian(answer, clientId);
                Interlocked.Increment(ref _forwarded);
                _forwardSeconds.Record(Stopwatch.GetElapsedTime(started).TotalSeconds, new KeyValuePair<string, object?>("result", "ok"));
                return answer;
            }
            catch (OperationCanceledException) when (!ct.IsCancellationRequested)
            {
                lastError = $"{upstream} did not answer within {_config.Limits.UpstreamTimeout.TotalMilliseconds:0} ms";
            }
            catch (Exception ex) when (ex is SocketException or IOException or InvalidDataException)
            {
                lastError = $"{upstream}: {ex.Message}";
            }
            Log.UpstreamFailed(_log, name ?? "?", lastError);
        }
        BinaryPrimitives.WriteUInt16BigEndian(query, clientId);
        Interlocked.Increment(ref _failed);
        _forwardSeconds.Record(Stopwatch.GetElapsedTime(started).TotalSeconds, new KeyValuePair<string, object?>("result", "failed"));
        _queries.Add(1, new KeyValuePair<string, object?>("transport", tcp ? "tcp" : "udp"), new KeyValuePair<string, object?>("outcome", "servfail"));
        return _responder.ServerFailure(query);
    }

    /// <summary>One query over UDP from a fresh socket connected to the upstream; datagrams that are not the answer are ignored.</summary>
    private static async Task<byte[]> AskUdpAsync(IPEndPoint upstream, byte[] query, ushort id, CancellationToken ct)
    {
        using var s = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        await s.ConnectAsync(upstream, ct).ConfigureAwait(false);
        await s.SendAsync(query, SocketFlags.None, ct).ConfigureAwait(false);
        var buffer = GC.AllocateUninitializedArray<byte>(EdgeDnsLimits.MaxMessage);
        while (true)
        {
            var n = await s.ReceiveAsync(buffer, SocketFlags.None, ct).ConfigureAwait(false);
            if (IsAnswerTo(buffer.AsSpan(0, n), id)) return buffer.AsSpan(0, n).ToArray();
        }
    }

    /// <summary>One query over a fresh TCP connection to the upstream.</summary>
    private static async Task<byte[]> AskTcpAsync(IPEndPoint upstream, byte[] query, ushort id, CancellationToken ct)
    {
        using var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await s.ConnectAsync(upstream, ct).ConfigureAwait(false);
        var frame = new byte[2 + query.Length];
        BinaryPrimitives.WriteUInt16BigEndian(frame, (ushort)query.Length);
        query.CopyTo(frame, 2);
        await s.SendAsync(frame, SocketFlags.None, ct).ConfigureAwait(false);
        var prefix = new byte[2];
        if (!await ReadExactlyAsync(s, prefix, ct).ConfigureAwait(false)) throw new InvalidDataException("closed before answering");
        var answer = new byte[BinaryPrimitives.ReadUInt16BigEndian(prefix)];
        if (!await ReadExactlyAsync(s, answer, ct).ConfigureAwait(false)) throw new InvalidDataException("closed in the middle of its answer");
        if (!IsAnswerTo(answer, id)) throw new InvalidDataException("answered with another ID or not a response");
        return answer;
    }

    private static bool IsAnswerTo(ReadOnlySpan<byte> message, ushort id) =>
        message.Length >= 12 && BinaryPrimitives.ReadUInt16BigEndian(message) == id && (message[2] & 0x80) != 0;

    // ------------------------------------------------------------------ bookkeeping

    private void Count(string transport, DnsOutcome outcome)
    {
        Interlocked.Increment(ref _count);
        if (outcome is DnsOutcome.Answer or DnsOutcome.NoData or DnsOutcome.NxDomain) Interlocked.Increment(ref _answered);
        else if (outcome is DnsOutcome.ServerFailure or DnsOutcome.FormatError or DnsOutcome.NotImplemented or DnsOutcome.Drop) Interlocked.Increment(ref _failed);
        _queries.Add(1, new KeyValuePair<string, object?>("transport", transport), new KeyValuePair<string, object?>("outcome", OutcomeName(outcome)));
    }

    private static string OutcomeName(DnsOutcome o) => o switch
    {
        DnsOutcome.Answer => "answer",
        DnsOutcome.NoData => "nodata",
        DnsOutcome.NxDomain => "nxdomain",
        DnsOutcome.Forward => "forward",
        DnsOutcome.Refused => "refused",
        DnsOutcome.FormatError => "formerr",
        DnsOutcome.NotImplemented => "notimp",
        DnsOutcome.ServerFailure => "servfail",
        _ => "drop",
    };

    private void Track(Func<Task> work)
    {
        var id = Interlocked.Increment(ref _workIds);
        var task = Task.Run(work);
        _work[id] = task;
        task.ContinueWith(_ => _work.TryRemove(id, out var _), TaskScheduler.Default);
    }

    public EdgeDnsView View()
    {
        bool listening;
        string? error;
        lock (_gate) { listening = _udp is not null; error = _error; }
        return new EdgeDnsView((EndPoint ?? _config.ListenEndPoint).ToString(), listening, error, _config.Domain.ToString(),
            _config.Upstreams.Select(u => u.ToString()).ToList(),
            Interlocked.Read(ref _count), Interlocked.Read(ref _answered), Interlocked.Read(ref _forwarded), Interlocked.Read(ref _failed));
    }

    /// <summary>Status warnings: a listener that is not bound.</summary>
    public IReadOnlyList<string> Warnings()
    {
        lock (_gate)
            return _udp is null && _error is not null ? [$"edge DNS cannot listen at {_config.ListenEndPoint}: {_error}"] : [];
    }

    public async ValueTask DisposeAsync()
    {
        if (_stop.IsCancellationRequested) return;
        _stop.Cancel();
        _firstAttempt.TrySetResult();
        lock (_gate)
        {
            _udp?.Dispose();
            _tcp?.Dispose();
        }
        if (_main is not null) await _main.ConfigureAwait(false);
        try { await Task.WhenAll(_work.Values).WaitAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(false); }
        catch (Exception) { /* work ends with the sockets; errors were handled there */ }
        _meter.Dispose();
        _stop.Dispose();
    }
}
