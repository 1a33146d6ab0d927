using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Globalization;
using System.Net.Http.Headers;
using System.Net.Security;
using System.Net.WebSockets;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Weft.Edge.Mqtt;
using Weft.HubLink;
using Weft.Wire.Hub;
using ProtocolViolationException = Weft.Wire.ProtocolViolationException;

namespace Weft.Edge;

/// <summary>A snapshot of the cloud link.</summary>
public sealed record CloudLinkStatus
{
    /// <summary>True once the cloud has recorded this node's ownership and greeted us.</summary>
    public bool Connected { get; init; }

    /// <summary>The replica holding our session, or null.</summary>
    public string? Replica { get; init; }

    /// <summary>The URL dialled for the current (or last) session.</summary>
    public Uri? Url { get; init; }

    /// <summary>When the current state began.</summary>
    public DateTimeOffset Since { get; init; }

    /// <summary>The ownership epoch of the current session.</summary>
    public long Epoch { get; init; }

    /// <summary>Sessions opened so far (the first one included).</summary>
    public long Sessions { get; init; }

    /// <summary>Messages waiting to be written to the cloud.</summary>
    public int QueueDepth { get; init; }

    /// <summary>Edge MQTT messages waiting for the cloud's acknowledgement.</summary>
    public int PendingUploads { get; init; }

    /// <summary>True while the local MQTT broker is connected (false when the eventbus is off).</summary>
    public bool MqttConnected { get; init; }

    /// <summary>MQTT topics the cloud asked us to forward (eventbus-source rules) that the broker has acknowledged.</summary>
    public IReadOnlyList<string> Subscriptions { get; init; } = [];

    public long ServiceBusCalls { get; init; }
    public long EventsPublished { get; init; }
    public long EventsRepeated { get; init; }
    public long Uploads { get; init; }
    public long UploadsDropped { get; init; }

    /// <summary>Why the last session ended or the last dial failed.</summary>
    public string? LastError { get; init; }
}

/// <summary>
/// The edge's link to the cloud (run by `weft agent`): one WebSocket session to one replica (a list of replica
/// URLs or one load-balanced URL, reconnecting with jittered backoff from <see cref="EdgeOptions.ReconnectInitialDelay"/>);
/// servicebus (cloud requests to local HTTP apps, answers with status, headers and body; at most once) and
/// eventbus (cloud messages published to the local MQTT broker and acknowledged after its PUBACK, repeats
/// dropped by id; subscribed edge topics uploaded to the cloud until acknowledged). Metrics on meter
/// <see cref="MeterName"/>.
/// </summary>
public sealed class CloudLink : IAsyncDisposable
{
    public const string MeterName = "Weft.Edge";

    private readonly EdgeOptions _o;
    private readonly ILogger _log;
    private readonly TimeProvider _time;
    private readonly CancellationTokenSource _stop = new();
    private readonly HttpClient _apps;
    private readonly SemaphoreSlim _appSlots;
    private readonly MqttClient? _mqtt;
    private readonly Meter _meter = new(MeterName);
    private readonly Counter<long> _sessionsCounter;
    private readonly Counter<long> _callsCounter;
    private readonly Counter<long> _eventsCounter;
    private readonly ConcurrentDictionary<string, HubMessage> _uploads = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, long> _uploadSent = new(StringComparer.Ordinal);
    private readonly HashSet<string> _delivered = new(StringComparer.Ordinal);
    private readonly Queue<string> _deliveredOrder = new();
    private readonly ConcurrentDictionary<string, Task> _publishing = new(StringComparer.Ordinal);
    private readonly Lock _gate = new();
    private volatile CloudLinkStatus _status;
    private volatile HubSocket? _socket;
    private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private Task _loop = Task.CompletedTask;
    private Task _resend = Task.CompletedTask;
    private long _calls, _published, _repeated, _uploadCount, _dropped;
    private int _started;
    private int _disposed;

    public CloudLink(EdgeOptions options, ILoggerFactory loggers, TimeProvider? time = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(loggers);
        var problems = options.Validate();
        if (problems.Count > 0) throw new ArgumentException("cloud link options have problems:\n  " + string.Join("\n  ", problems), nameof(options));
        _o = options;
        _time = time ?? TimeProvider.System;
        _log = loggers.CreateLogger("Weft.Edge");
        _status = new CloudLinkStatus { Since = _time.GetUtcNow(), LastError = "not started" };
        _apps = new HttpClient(new SocketsHttpHandler { AllowAutoRedirect = false, UseCookies = false, UseProxy = false, ConnectTimeout = TimeSpan.FromSeconds(5) })
        { Timeout = Timeout.InfiniteTimeSpan };
        _appSlots = new SemaphoreSlim(options.MaxConcurrentAppCalls, options.MaxConcurrentAppCalls);
        if (options.MqttBroker is { } broker)
        {
            _mqtt = new MqttClient(new MqttClientOptions
            {
                Broker = broker, ClientId = options.MqttClientId ?? "weft-edge-" + options.NodeName, Username = options.MqttUsername, Password = options.MqttPassword,
                Keepalive = options.MqttKeepalive, ConnectTimeout = options.ConnectTimeout, ReconnectInitialDelay = options.ReconnectInitialDelay,
                ReconnectMaxDelay = options.ReconnectMaxDelay, MaxPacketBytes = options.MqttMaxPacketBytes, MaxInflight = options.MqttMaxInflight,
            }, loggers.CreateLogger("Weft.Edge.Mqtt"), _time);
            _mqtt.MessageReceived = OnMqttMessageAsync;
            _mqtt.Subscribed += () => SetStatus(_status);
            _mqtt.ConnectionChanged += () => SetStatus(_status);
        }
        _sessionsCounter = _meter.CreateCounter<long>("weft_edge_sessions", description: "cloud sessions opened");
        _callsCounter = _meter.CreateCounter<long>("weft_edge_servicebus_calls", description: "servicebus calls to edge apps, by result");
        _eventsCounter = _meter.CreateCounter<long>("weft_edge_eventbus_messages", description: "eventbus messages, by direction and result");
        _meter.CreateObservableGauge("weft_edge_connected", () => _status.Connected ? 1 : 0, description: "1 while a cloud session is up");
        _meter.CreateObservableGauge("weft_edge_pending_uploads", () => _uploads.Count, description: "edge MQTT messages awaiting the cloud's ack");
    }

    public EdgeOptions Options => _o;

    /// <summary>The current state.</summary>
    public CloudLinkStatus Status => _status with
    {
        QueueDepth = _socket?.QueueDepth ?? 0, PendingUploads = _uploads.Count, MqttConnected = _mqtt?.IsConnected ?? false,
        Subscriptions = _mqtt?.Subscriptions.ToArray() ?? [],
        ServiceBusCalls = Interlocked.Read(ref _calls), EventsPublished = Interlocked.Read(ref _published), EventsRepeated = Interlocked.Read(ref _repeated),
        Uploads = Interlocked.Read(ref _uploadCount), UploadsDropped = Interlocked.Read(ref _dropped),
    };

    /// <summary>Starts the link (returns at once; see <see cref="WaitAsync"/>).</summary>
    public void Start()
    {
        if (Interlocked.Exchange(ref _started, 1) != 0) throw new InvalidOperationException("the cloud link is already started");
        _mqtt?.Start();
        _loop = Task.Run(LoopAsync, CancellationToken.None);
        _resend = Task.Run(ResendLoopAsync, CancellationToken.None);
    }

    /// <summary>Waits until <paramref name="condition"/> holds for the status (checked on every change).</summary>
    public async Task<CloudLinkStatus> WaitAsync(Func<CloudLinkStatus, bool> condition, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(condition);
        while (true)
        {
            var changed = _changed.Task;
            var s = Status;
            if (condition(s)) return s;
            await changed.WaitAsync(ct).ConfigureAwait(false);
        }
    }

    /// <summary>Stops the link: closes the session and the broker link.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        await _stop.CancelAsync().ConfigureAwait(false);
        _socket?.Close("edge stopping");
        try { await Task.WhenAll(_loop, _resend).ConfigureAwait(false); } catch (OperationCanceledException) { }
        if (_mqtt is not null) await _mqtt.DisposeAsync().ConfigureAwait(false);
        _apps.Dispose();
        _meter.Dispose();
        _stop.Dispose();
    }

    private void SetStatus(CloudLinkStatus s)
    {
        _status = s;
        Interlocked.Exchange(ref _changed, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();
    }

    private async Task LoopAsync()
    {
        var delay = _o.ReconnectInitialDelay;
        var index = 0;
        long sessions = 0;
        while (!_stop.IsCancellationRequested)
        {
            var url = Target(_o.CloudUrls[index % _o.CloudUrls.Count]);
            string error;
            var upAt = 0L;
            try
            {
                (error, upAt) = await SessionAsync(url, () => ++sessions).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is WebSocketException or IOException or OperationCanceledException or HttpRequestException or System.Security.Authentication.AuthenticationException)
            {
                if (_stop.IsCancellationRequested) break;
                error = ex is OperationCanceledException ? $"no welcome within {_o.ConnectTimeout.TotalSeconds:0.#} s" : ex.Message;
            }
            if (_stop.IsCancellationRequested) break;
            // A session that lasted resets the backoff; the next dial goes to the next URL in the list.
            if (upAt != 0 && _time.GetElapsedTime(upAt) > TimeSpan.FromSeconds(10)) delay = _o.ReconnectInitialDelay;
            index++;
            var wait = TimeSpan.FromMilliseconds(delay.TotalMilliseconds * (0.5 + Random.Shared.NextDouble()));
            if (upAt != 0) wait = TimeSpan.FromMilliseconds(Math.Min(wait.TotalMilliseconds, _o.ReconnectInitialDelay.TotalMilliseconds));
            SetStatus(_status with { Connected = false, Replica = null, Since = _time.GetUtcNow(), LastError = error });
            Log.LinkDown(_log, url.ToString(), error, (long)wait.TotalMilliseconds);
            try { await Task.Delay(wait, _time, _stop.Token).ConfigureAwait(false); } catch (OperationCanceledException) { break; }
            delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, _o.ReconnectMaxDelay.Ticks));
        }
        SetStatus(_status with { Connected = false, Replica = null, Since = _time.GetUtcNow(), LastError = "stopped" });
    }

    private Uri Target(Uri u) => u.AbsolutePath is "/" or ""
        ? new Uri(u, $"/{_o.ProjectId}/{_o.NodeName}/events")
        : u;

    /// <summary>One session: dial, upgrade, wait for the welcome, run. Returns why it ended and when it came up (0 = never).</summary>
    private async Task<(string Error, long UpAt)> SessionAsync(Uri url, Func<long> nextSession)
    {
        using var ws = new ClientWebSocket();
        ws.Options.KeepAliveInterval = TimeSpan.Zero;
        ws.Options.SetRequestHeader("node_id", _o.NodeName);
        ws.Options.SetRequestHeader("project_id", _o.ProjectId);
        ws.Options.SetRequestHeader("ConnectionUse", "msg");
        ws.Options.SetRequestHeader("Authorization", "Bearer " + _o.Token);
        ws.Options.CollectHttpResponseDetails = true;
        if (_o.TrustedCaFile is { } ca) ws.Options.RemoteCertificateValidationCallback = TrustOnly(ca);
        using (var cts = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token))
        {
            cts.CancelAfter(_o.ConnectTimeout);
            try
            {
                await ws.ConnectAsync(url, cts.Token).ConfigureAwait(false);
            }
            catch (WebSocketException) when (ws.HttpStatusCode != 0 && (int)ws.HttpStatusCode != 101)
            {
                return ($"{url} answered {(int)ws.HttpStatusCode}", 0);
            }
        }
        var welcome = new TaskCompletionSource<HubWelcome>(TaskCreationOptions.RunContinuationsAsynchronously);
        var socket = new HubSocket(ws, new HubSocketOptions(_o.MaxMessageBytes, _o.ReadTimeout, _o.WriteTimeout, _o.KeepaliveInterval, _o.QueueLength),
            () => new HubMessage
            {
                Id = Guid.NewGuid().ToString(), Timestamp = _time.GetUtcNow().ToUnixTimeMilliseconds(),
                Source = HubNames.SourceEdgeHub, Group = HubNames.GroupResource, Operation = HubNames.OpKeepalive, Resource = "node", Content = JsonSerializer.SerializeToElement("ping"),
            }, _time, "the cloud");
        var run = socket.RunAsync(m => OnMessageAsync(socket, m, welcome), _ => { });
        long upAt = 0;
        try
        {
            HubWelcome w;
            using (var cts = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token))
            {
                cts.CancelAfter(_o.ConnectTimeout);
                w = await welcome.Task.WaitAsync(cts.Token).ConfigureAwait(false);
            }
            upAt = _time.GetTimestamp();
            _socket = socket;
            _sessionsCounter.Add(1);
            SetStatus(_status with { Connected = true, Replica = w.Replica, Url = url, Epoch = w.Epoch, Since = _time.GetUtcNow(), Sessions = nextSession(), LastError = null });
            Log.Connected(_log, w.Replica, url.ToString(), w.Epoch);
            foreach (var m in _uploads.Values) Upload(socket, m);
            await run.ConfigureAwait(false);
            return (socket.CloseReason, upAt);
        }
        catch (OperationCanceledException) when (!_stop.IsCancellationRequested)
        {
            socket.Close("no welcome from the cloud");
            await run.ConfigureAwait(false);
            return ($"no welcome within {_o.ConnectTimeout.TotalSeconds:0.#} s ({socket.CloseReason})", 0);
        }
        finally
        {
            socket.Close("session over");
            if (_socket == socket) _socket = null;
        }
    }

    private static RemoteCertificateValidationCallback TrustOnly(string caFile)
    {
        var ca = X509CertificateLoader.LoadCertificateFromFile(caFile);
        return (_, cert, _, errors) =>
        {
            if (cert is null) return false;
            if ((errors & SslPolicyErrors.RemoteCertificateNameMismatch) != 0) return false;
            using var chain = new X509Chain();
            chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
            chain.ChainPolicy.CustomTrustStore.Add(ca);
            chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
            return chain.Build(X509CertificateLoader.LoadCertificate(cert.GetRawCertData()));
        };
    }

    private Task OnMessageAsync(HubSocket socket, HubMessage m, TaskCompletionSource<HubWelcome> welcome)
    {
        switch (m.Source, m.Operation)
        {
            case (_, HubNames.OpKeepalive):
                break;
            case (HubNames.SourceCloudHub, HubNames.OpConnected):
                try { welcome.TrySetResult(HubWelcome.FromJson(m.Content)); }
                catch (ProtocolViolationException ex) { socket.Close(ex.Message); }
                break;
            case (HubNames.SourceRouterServiceBus, _) when string.IsNullOrEmpty(m.ParentId):
                _ = ServiceBusAsync(socket, m);
                break;
            case (HubNames.SourceRouterEventBus, HubNames.OpPublish):
                _ = PublishAsync(socket, m);
                break;
            case (HubNames.SourceRouterEventBus, HubNames.OpSubscribe):
                if (_mqtt is not null && !string.IsNullOrEmpty(m.Resource)) _ = SubscribeAsync(m.Resource);
                break;
            case (HubNames.SourceRouterEventBus, HubNames.OpResponse or HubNames.OpError) when m.ParentId is { Length: > 0 } parent:
                // The cloud took (or refused) an upload: either way it is settled; errors are counted.
                if (_uploads.TryRemove(parent, out _)) _eventsCounter.Add(1, new KeyValuePair<string, object?>("result", m.Operation == HubNames.OpResponse ? "uploaded" : "upload_refused"));
                _uploadSent.TryRemove(parent, out _);
                SetStatus(_status);
                break;
            default:
                Log.Ignored(_log, m.Source, m.Operation);
                break;
        }
        return Task.CompletedTask;
    }

    private async Task SubscribeAsync(string topic)
    {
        try
        {
            await _mqtt!.SubscribeAsync(topic, _stop.Token).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is IOException or OperationCanceledException or Weft.Wire.ProtocolViolationException) { Log.PublishFailed(_log, "subscribe " + topic, ex.Message); }
    }

    // ---------------------------------------------------------------- servicebus

    private async Task ServiceBusAsync(HubSocket socket, HubMessage m)
    {
        Interlocked.Increment(ref _calls);
        HubMessage reply;
        if (!await _appSlots.WaitAsync(0).ConfigureAwait(false))
        {
            reply = Error(m, $"node {_o.NodeName} is already making {_o.MaxConcurrentAppCalls} app calls");
        }
        else
        {
            try { reply = await CallAppAsync(m).ConfigureAwait(false); }
            finally { _appSlots.Release(); }
        }
        socket.TrySend(reply);
    }

    private HubMessage Error(HubMessage request, string text)
    {
        _callsCounter.Add(1, new KeyValuePair<string, object?>("result", "error"));
        return new HubMessage
        {
            Id = Guid.NewGuid().ToString(), ParentId = request.Id, Timestamp = _time.GetUtcNow().ToUnixTimeMilliseconds(),
            Source = HubNames.SourceServiceBus, Group = HubNames.GroupUser, Operation = HubNames.OpError, Content = JsonSerializer.SerializeToElement(text),
        };
    }

    private async Task<HubMessage> CallAppAsync(HubMessage m)
    {
        var colon = m.Resource.IndexOf(':', StringComparison.Ordinal);
        if (colon <= 0 || !int.TryParse(m.Resource.AsSpan(0, colon), NumberStyles.None, CultureInfo.InvariantCulture, out var port) || port is < 1 or > 65535
            || colon + 1 >= m.Resource.Length || m.Resource[colon + 1] != '/')
            return Error(m, $"servicebus resource '{m.Resource}' is not PORT:/PATH");
        HubHttpRequest req;
        try { req = HubHttpRequest.FromJson(m.Content); }
        catch (ProtocolViolationException ex) { return Error(m, ex.Detail); }
        var host = _o.AppAddress.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6 ? $"[{_o.AppAddress}]" : _o.AppAddress.ToString();
        var url = new Uri($"http://{host}:{port}{m.Resource[(colon + 1)..]}");
        var timeout = req.TimeoutMs is > 0 and var ms ? TimeSpan.FromMilliseconds(Math.Min(ms, _o.MaxAppTimeout.TotalMilliseconds)) : _o.MaxAppTimeout;
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
        cts.CancelAfter(timeout);
        try
        {
            using var msg = new HttpRequestMessage(new HttpMethod(req.Method), url);
            if (req.Body.Length > 0 || req.Method is "POST" or "PUT" or "PATCH") msg.Content = new ByteArrayContent(req.Body);
            foreach (var (k, v) in req.Header)
                if (!msg.Headers.TryAddWithoutValidation(k, v) && msg.Content is not null) msg.Content.Headers.TryAddWithoutValidation(k, v);
            using var resp = await _apps.SendAsync(msg, HttpCompletionOption.ResponseHeadersRead, cts.Token).ConfigureAwait(false);
            var body = await ReadBoundedAsync(resp.Content, _o.MaxAppBodyBytes, cts.Token).ConfigureAwait(false);
            if (body is null) return Error(m, $"the app's reply is over {_o.MaxAppBodyBytes} bytes");
            var headers = new Dictionary<string, string[]>(StringComparer.OrdinalIgnoreCase);
            foreach (var (k, v) in resp.Headers.Concat(resp.Content.Headers))
                if (k is not ("Transfer-Encoding" or "Connection" or "Content-Length" or "Keep-Alive")) headers[k] = v.ToArray();
            _callsCounter.Add(1, new KeyValuePair<string, object?>("result", "ok"));
            return new HubMessage
            {
                Id = Guid.NewGuid().ToString(), ParentId = m.Id, Timestamp = _time.GetUtcNow().ToUnixTimeMilliseconds(),
                Source = HubNames.SourceServiceBus, Group = HubNames.GroupUser, Operation = HubNames.OpUpload,
                Content = new HubHttpResponse { StatusCode = (int)resp.StatusCode, Header = headers, Body = body }.ToJson(),
            };
        }
        catch (Exception ex) when (ex is HttpRequestException or OperationCanceledException or IOException or ArgumentException or FormatException)
        {
            Log.AppCallFailed(_log, url.ToString(), ex.Message);
            return Error(m, ex is OperationCanceledException ? $"the app at {url} did not answer within {timeout.TotalMilliseconds:0} ms" : $"calling {url}: {ex.Message}");
        }
    }

    private static async Task<byte[]?> ReadBoundedAsync(HttpContent content, int max, CancellationToken ct)
    {
        if (content.Headers.ContentLength > max) return null;
        await using var s = await content.ReadAsStreamAsync(ct).ConfigureAwait(false);
        using var ms = new MemoryStream();
        var buf = new byte[16 * 1024];
        int n;
        while ((n = await s.ReadAsync(buf, ct).ConfigureAwait(false)) > 0)
        {
            if (ms.Length + n > max) return null;
            ms.Write(buf, 0, n);
        }
        return ms.ToArray();
    }

    // ---------------------------------------------------------------- eventbus

    private async Task PublishAsync(HubSocket socket, HubMessage m)
    {
        bool repeat;
        lock (_gate) repeat = _delivered.Contains(m.Id);
        if (repeat)
        {
            Interlocked.Increment(ref _repeated);
            Ack(socket, m, HubNames.OpResponse, HubNames.AckOk);
            return;
        }
        if (_mqtt is null)
        {
            Ack(socket, m, HubNames.OpError, "the eventbus is off on this node");
            return;
        }
        // One publish per id at a time; a repeat arriving meanwhile waits for the same outcome.
        var task = _publishing.GetOrAdd(m.Id, _ => PublishOnceAsync(m));
        try
        {
            await task.ConfigureAwait(false);
            Ack(socket, m, HubNames.OpResponse, HubNames.AckOk);
        }
        catch (Exception ex) when (ex is IOException or OperationCanceledException or FormatException or ArgumentException)
        {
            Log.PublishFailed(_log, m.Id, ex.Message);
            // No ack: the cloud keeps the message and sends it again.
        }
        finally
        {
            _publishing.TryRemove(new KeyValuePair<string, Task>(m.Id, task));
        }
    }

    private async Task PublishOnceAsync(HubMessage m)
    {
        var payload = m.Type == "base64" ? Convert.FromBase64String(m.ContentString ?? "")
            : m.ContentString is { } s ? Encoding.UTF8.GetBytes(s)
            : m.Content is { } c ? JsonSerializer.SerializeToUtf8Bytes(c) : [];
        if (m.Resource.Length == 0 || m.Resource.AsSpan().IndexOfAny('+', '#') >= 0) throw new ArgumentException($"'{m.Resource}' is not an MQTT topic name");
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
        cts.CancelAfter(_o.ConnectTimeout * 2);
        await _mqtt!.PublishAsync(m.Resource, payload, _o.MqttQos, cts.Token).ConfigureAwait(false);
        Interlocked.Increment(ref _published);
        _eventsCounter.Add(1, new KeyValuePair<string, object?>("result", "published"));
        lock (_gate)
        {
            if (_delivered.Add(m.Id))
            {
                _deliveredOrder.Enqueue(m.Id);
                while (_deliveredOrder.Count > _o.DedupWindow) _delivered.Remove(_deliveredOrder.Dequeue());
            }
        }
    }

    private void Ack(HubSocket socket, HubMessage m, string op, string content) => (_socket ?? socket).TrySend(new HubMessage
    {
        Id = Guid.NewGuid().ToString(), ParentId = m.Id, Timestamp = _time.GetUtcNow().ToUnixTimeMilliseconds(),
        Source = HubNames.SourceEventBus, Group = HubNames.GroupUser, Operation = op, Resource = m.Resource, Content = JsonSerializer.SerializeToElement(content),
    });

    private Task OnMqttMessageAsync(MqttMessage msg)
    {
        if (_uploads.Count >= _o.MaxPendingUploads)
        {
            Interlocked.Increment(ref _dropped);
            _eventsCounter.Add(1, new KeyValuePair<string, object?>("result", "upload_dropped"));
            return Task.CompletedTask;
        }
        string content;
        string? type = null;
        try { content = new UTF8Encoding(false, true).GetString(msg.Payload.Span); }
        catch (DecoderFallbackException)
        {
            content = Convert.ToBase64String(msg.Payload.Span);
            type = "base64";
        }
        var m = new HubMessage
        {
            Id = Guid.NewGuid().ToString(), Timestamp = _time.GetUtcNow().ToUnixTimeMilliseconds(), Type = type,
            Source = HubNames.SourceBus, Group = HubNames.GroupUser, Operation = HubNames.OpUpload, Resource = msg.Topic, Content = JsonSerializer.SerializeToElement(content),
        };
        _uploads[m.Id] = m;
        Interlocked.Increment(ref _uploadCount);
        SetStatus(_status);
        if (_socket is { } s) Upload(s, m);
        return Task.CompletedTask;
    }

    private void Upload(HubSocket socket, HubMessage m)
    {
        _uploadSent[m.Id] = _time.GetTimestamp();
        socket.TrySend(m);
    }

    private async Task ResendLoopAsync()
    {
        try
        {
            while (true)
            {
                await Task.Delay(_o.UploadResendInterval, _time, _stop.Token).ConfigureAwait(false);
                if (_socket is not { } s) continue;
                foreach (var m in _uploads.Values)
                    if (!_uploadSent.TryGetValue(m.Id, out var at) || _time.GetElapsedTime(at) >= _o.UploadResendInterval) Upload(s, m);
            }
        }
        catch (OperationCanceledException) { }
    }
}
