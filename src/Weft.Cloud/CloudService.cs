using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Weft.Cloud.Config;
using Weft.Cloud.Directory;
using Weft.Cloud.Hub;
using Weft.Cloud.Router;
using Weft.Wire;
using Weft.Wire.Hub;

namespace Weft.Cloud;

/// <summary>
/// One `weft cloud` replica: the WebSocket hub for edge nodes, the REST router, the ownership directory and
/// rest→eventbus delivery. <see cref="StartAsync"/> returns once both listeners accept connections.
/// </summary>
public sealed partial class CloudService : IAsyncDisposable
{
    private readonly ILogger _log;
    private readonly ILoggerFactory _loggers;
    private readonly TimeProvider _time;
    private readonly ConcurrentDictionary<string, NodeSession> _sessions = new(StringComparer.Ordinal);
    private readonly NodeTokens _tokens;
    private readonly CancellationTokenSource _stop = new();
    private readonly HttpClient _forwardClient;
    private readonly HttpClient _targetClient;
    private WebApplication? _app;
    private Task _resendLoop = Task.CompletedTask;
    private int _sessionCount;
    private int _disposed;

    public CloudService(CloudOptions options, ILoggerFactory loggers, TimeProvider? time = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(loggers);
        _time = time ?? TimeProvider.System;
        _loggers = loggers;
        _log = loggers.CreateLogger("Weft.Cloud");
        Options = FixPorts(options);
        _tokens = NodeTokens.FromFile(options.Hub.TokenSecretFile);
        Directory = options.Directory.Backend == DirectoryBackend.Etcd
            ? new EtcdDirectory(options.Directory.EtcdEndpoints, options.Directory.EtcdPrefix, options.Replica.Name, Options.Replica.AdvertiseAddress,
                options.Directory.LeaseTtl, options.Directory.RequestTimeout, _time, loggers.CreateLogger("Weft.Cloud.Directory"))
            : new EmbeddedDirectory(options.Directory.EmbeddedPath, options.Replica.Name, Options.Replica.AdvertiseAddress, options.Directory.LeaseTtl, _time,
                loggers.CreateLogger("Weft.Cloud.Directory"));
        Delivery = new EventDelivery(Directory, options.EventBus, _time, _log);
        Metrics = new CloudMetrics(() => Volatile.Read(ref _sessionCount), () => Directory.Health.Healthy ? 0 : 1);
        Directory.OwnerChanged += OnOwnerChanged;
        _forwardClient = new HttpClient(new SocketsHttpHandler
        {
            ConnectTimeout = options.Router.ForwardConnectTimeout, PooledConnectionIdleTimeout = TimeSpan.FromSeconds(60),
            AllowAutoRedirect = false, UseCookies = false, AutomaticDecompression = DecompressionMethods.None, UseProxy = false,
        }) { Timeout = Timeout.InfiniteTimeSpan, MaxResponseContentBufferSize = options.Router.MaxBodyBytes };
        _targetClient = new HttpClient(new SocketsHttpHandler { ConnectTimeout = options.EventBus.TargetTimeout, AllowAutoRedirect = false, UseCookies = false, UseProxy = false })
        { Timeout = options.EventBus.TargetTimeout };
    }

    public CloudOptions Options { get; }

    public IOwnershipDirectory Directory { get; }

    public EventDelivery Delivery { get; }

    public CloudMetrics Metrics { get; }

    /// <summary>Serves every Weft meter of this process as Prometheus text on <c>/_weft/metrics</c>.</summary>
    private readonly Weft.Wire.Metrics.PrometheusExporter _exporter = new("Weft");

    /// <summary>Sessions held now.</summary>
    public int SessionCount => Volatile.Read(ref _sessionCount);

    /// <summary>The nodes whose sessions this replica holds.</summary>
    public IReadOnlyCollection<string> OwnedNodes => _sessions.Keys.ToArray();

    /// <summary>Raised (on the session's thread) when a node's session on this replica has ended, before its record is released.</summary>
    public event Action<string>? SessionClosed;

    public string Name => Options.Replica.Name;

    public async Task StartAsync(CancellationToken ct)
    {
        await Directory.StartAsync(ct).ConfigureAwait(false);
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseKestrel(k =>
        {
            k.AddServerHeader = false;
            k.Limits.MaxRequestBodySize = Options.Router.MaxBodyBytes;
            k.Limits.MaxConcurrentConnections = null;
            k.Limits.MaxConcurrentUpgradedConnections = Options.Hub.MaxSessions + 1024;
            k.Listen(Options.Hub.Listen, l =>
            {
                if (Options.Hub.TlsCertFile is { } cert)
                    l.UseHttps(X509Certificate2.CreateFromPemFile(cert, Options.Hub.TlsKeyFile));
            });
            k.Listen(Options.Router.Listen);
        });
        var app = builder.Build();
        app.UseWebSockets(new WebSocketOptions { KeepAliveInterval = TimeSpan.Zero });
        app.Run(ctx => ctx.Connection.LocalPort == Options.Hub.Listen.Port ? HubAsync(ctx) : RouteAsync(ctx));
        await app.StartAsync(ct).ConfigureAwait(false);
        _app = app;
        _resendLoop = Task.Run(ResendLoopAsync, CancellationToken.None);
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        await _stop.CancelAsync().ConfigureAwait(false);
        foreach (var s in _sessions.Values) s.Close("replica stopping");
        if (_app is not null)
        {
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(5));
            try { await _app.StopAsync(cts.Token).ConfigureAwait(false); } catch (OperationCanceledException) { }
            await _app.DisposeAsync().ConfigureAwait(false);
        }
        try { await _resendLoop.ConfigureAwait(false); } catch (OperationCanceledException) { }
        await Directory.DisposeAsync().ConfigureAwait(false);
        _forwardClient.Dispose();
        _targetClient.Dispose();
        Metrics.Dispose();
        _exporter.Dispose();
        _stop.Dispose();
    }

    /// <summary>Port 0 in the config means "any free port": pick them now, so the advertise address is right.</summary>
    private static CloudOptions FixPorts(CloudOptions o)
    {
        var hub = o.Hub.Listen.Port == 0 ? new IPEndPoint(o.Hub.Listen.Address, FreePort(o.Hub.Listen.Address)) : o.Hub.Listen;
        var router = o.Router.Listen.Port == 0 ? new IPEndPoint(o.Router.Listen.Address, FreePort(o.Router.Listen.Address)) : o.Router.Listen;
        var adv = o.Replica.AdvertiseAddress;
        if (adv.Port == 0) adv = new UriBuilder(adv) { Port = router.Port }.Uri;
        return o with
        {
            Hub = o.Hub with { Listen = hub }, Router = o.Router with { Listen = router },
            Replica = o.Replica with { AdvertiseAddress = adv },
        };
    }

    private static int FreePort(IPAddress address)
    {
        using var s = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        s.Bind(new IPEndPoint(address, 0));
        return ((IPEndPoint)s.LocalEndPoint!).Port;
    }

    private async Task ResendLoopAsync()
    {
        try
        {
            while (true)
            {
                await Task.Delay(Options.EventBus.ResendInterval, _time, _stop.Token).ConfigureAwait(false);
                Delivery.Resend(n => _sessions.TryGetValue(n, out var s) && !s.IsClosed ? s : null);
            }
        }
        catch (OperationCanceledException) { }
    }

    private void OnOwnerChanged(OwnerRecord rec)
    {
        if (rec.Replica == Name) return;
        // An unrecorded claim (the directory was down at open) cannot be compared; it is written with a newer
        // epoch as soon as the directory is back.
        if (_sessions.TryGetValue(rec.Node, out var s) && s.Claim.Recorded && rec.Epoch > s.Claim.Epoch)
        {
            Log.Superseded(_log, rec.Node, rec.Replica, rec.Epoch);
            s.Close($"node now belongs to {rec.Replica}");
        }
    }

    internal NodeSession? LocalSession(string node) => _sessions.TryGetValue(node, out var s) && !s.IsClosed ? s : null;

    // ---------------------------------------------------------------- hub

    private async Task HubAsync(HttpContext ctx)
    {
        var remote = $"{ctx.Connection.RemoteIpAddress}:{ctx.Connection.RemotePort}";
        var node = ctx.Request.Headers["node_id"].ToString();
        if (node.Length == 0)
        {
            // KubeEdge's path: /{projectID}/{nodeName}/events
            var parts = ctx.Request.Path.Value?.Split('/', StringSplitOptions.RemoveEmptyEntries) ?? [];
            if (parts.Length == 3 && parts[2] == "events") node = parts[1];
        }
        if (!ctx.WebSockets.IsWebSocketRequest)
        {
            await Refuse(ctx, remote, 400, "expected a WebSocket upgrade").ConfigureAwait(false);
            return;
        }
        if (!NodeTokens.IsValidNodeName(node))
        {
            await Refuse(ctx, remote, 400, "the node_id header (or the path /{project}/{node}/events) must name a node (a DNS-1123 name)").ConfigureAwait(false);
            return;
        }
        var auth = ctx.Request.Headers.Authorization.ToString();
        if (!auth.StartsWith("Bearer ", StringComparison.Ordinal) || !_tokens.Verify(node, auth["Bearer ".Length..].Trim()))
        {
            await Refuse(ctx, remote, 401, $"no valid token for node {node}").ConfigureAwait(false);
            return;
        }
        if (Interlocked.Increment(ref _sessionCount) > Options.Hub.MaxSessions)
        {
            Interlocked.Decrement(ref _sessionCount);
            ctx.Response.Headers.RetryAfter = "1";
            await Refuse(ctx, remote, 503, $"replica {Name} holds its maximum of {Options.Hub.MaxSessions} sessions; try another replica").ConfigureAwait(false);
            return;
        }
        try
        {
            using var ws = await ctx.WebSockets.AcceptWebSocketAsync(new WebSocketAcceptContext { KeepAliveInterval = TimeSpan.Zero }).ConfigureAwait(false);
            var session = new NodeSession(node, remote, ws, Options.Hub, _time);
            if (_sessions.TryGetValue(node, out var old)) old.Close("replaced by a newer session");
            _sessions[node] = session;
            Metrics.SessionOpened();
            var run = session.RunAsync(OnMessageAsync, _ => Metrics.Violation());
            await OpenAsync(session).ConfigureAwait(false);
            await run.ConfigureAwait(false);
            _sessions.TryRemove(new KeyValuePair<string, NodeSession>(node, session));
            Log.SessionClosed(_log, node, session.CloseReason);
            try { SessionClosed?.Invoke(node); } catch (Exception) { /* a watcher's fault is not the hub's */ }
            try
            {
                using var cts = new CancellationTokenSource(Options.Directory.RequestTimeout);
                await Directory.ReleaseAsync(session.Claim, cts.Token).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is DirectoryUnavailableException or OperationCanceledException or IOException)
            {
                // The record's lease lapses on its own; a newer claim has a larger epoch anyway.
            }
            if (!_sessions.ContainsKey(node)) Delivery.Forget(node);
        }
        finally
        {
            Interlocked.Decrement(ref _sessionCount);
        }
    }

    /// <summary>Records ownership (before the session counts as ready), greets the edge, pushes subscriptions and queued messages.</summary>
    private async Task OpenAsync(NodeSession session)
    {
        using (var cts = new CancellationTokenSource(Options.Hub.ClaimTimeout))
        {
            try
            {
                await Directory.RecordAsync(session.Claim, cts.Token).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is DirectoryUnavailableException or OperationCanceledException or IOException)
            {
                // Serve the node from here anyway; the etcd lease loop keeps trying to record it.
                Log.ClaimFailed(_log, session.Node, ex.Message);
            }
        }
        Log.SessionOpened(_log, session.Node, session.Remote, session.Claim.Epoch);
        var now = _time.GetUtcNow().ToUnixTimeMilliseconds();
        session.TrySend(new HubMessage
        {
            Id = Guid.NewGuid().ToString(), Timestamp = now, Source = HubNames.SourceCloudHub, Group = HubNames.GroupHub, Operation = HubNames.OpConnected,
            Resource = "node/" + session.Node, Content = new HubWelcome(Name, session.Claim.Epoch, (long)Options.Hub.KeepaliveInterval.TotalMilliseconds).ToJson(),
        });
        foreach (var r in Options.Rules.EventSourcesFor(session.Node))
        {
            session.TrySend(new HubMessage
            {
                Id = Guid.NewGuid().ToString(), Timestamp = now, Source = HubNames.SourceRouterEventBus, Group = HubNames.GroupUser,
                Operation = HubNames.OpSubscribe, Resource = r.Namespace + "/" + r.Topic,
            });
        }
        using var flush = new CancellationTokenSource(Options.Directory.RequestTimeout * 2);
        try { await Delivery.OnSessionOpenedAsync(session, flush.Token).ConfigureAwait(false); }
        catch (OperationCanceledException) { }
    }

    private async Task Refuse(HttpContext ctx, string remote, int status, string reason)
    {
        Log.Refused(_log, remote, reason);
        ctx.Response.StatusCode = status;
        ctx.Response.Headers.Connection = "close";
        await ctx.Response.WriteAsync(reason + "\n").ConfigureAwait(false);
    }

    private Task OnMessageAsync(NodeSession session, HubMessage m)
    {
        if (m.Operation == HubNames.OpKeepalive) return Task.CompletedTask;
        if (!string.IsNullOrEmpty(m.ParentId))
        {
            if (m.Source == HubNames.SourceEventBus && m.Operation == HubNames.OpResponse)
            {
                Delivery.OnAck(session.Node, m.ParentId);
                return Task.CompletedTask;
            }
        }
        if (m.Operation == HubNames.OpUpload && m.Group == HubNames.GroupUser && m.Source is HubNames.SourceBus or HubNames.SourceEventBus && string.IsNullOrEmpty(m.ParentId))
        {
            _ = UploadAsync(session, m);
            return Task.CompletedTask;
        }
        Log.Unexpected(_log, session.Node, m.Source, m.Operation);
        return Task.CompletedTask;
    }

    /// <summary>eventbus→rest: POST the MQTT payload to the rule's URL, then acknowledge (or report the error) to the edge.</summary>
    private async Task UploadAsync(NodeSession session, HubMessage m)
    {
        Metrics.Upload();
        var route = Options.Rules.MatchUpload(session.Node, m.Resource);
        string op = HubNames.OpResponse, content = HubNames.AckOk;
        if (route is null)
        {
            op = HubNames.OpError;
            content = $"no eventbus rule takes topic {m.Resource} from node {session.Node}";
        }
        else
        {
            try
            {
                var body = m.Type == "base64" && m.ContentString is { } b64 ? Convert.FromBase64String(b64)
                    : m.ContentString is { } s ? System.Text.Encoding.UTF8.GetBytes(s)
                    : m.Content is { } c ? JsonSerializer.SerializeToUtf8Bytes(c) : [];
                using var req = new HttpRequestMessage(HttpMethod.Post, route.TargetUrl) { Content = new ByteArrayContent(body) };
                req.Headers.TryAddWithoutValidation("NodeName", session.Node);
                req.Headers.TryAddWithoutValidation("X-Weft-Message-Id", m.Id);
                req.Headers.TryAddWithoutValidation("X-Weft-Topic", m.Resource);
                using var resp = await _targetClient.SendAsync(req, _stop.Token).ConfigureAwait(false);
                if (!resp.IsSuccessStatusCode)
                {
                    op = HubNames.OpError;
                    content = $"{route.TargetUrl} answered {(int)resp.StatusCode}";
                }
            }
            catch (Exception ex) when (ex is HttpRequestException or OperationCanceledException or FormatException)
            {
                op = HubNames.OpError;
                content = $"{route.TargetUrl}: {ex.Message}";
                Log.TargetFailed(_log, route.TargetUrl!.ToString(), session.Node, ex.Message);
            }
        }
        session.TrySend(new HubMessage
        {
            Id = Guid.NewGuid().ToString(), ParentId = m.Id, Timestamp = _time.GetUtcNow().ToUnixTimeMilliseconds(),
            Source = HubNames.SourceRouterEventBus, Group = HubNames.GroupUser, Operation = op, Resource = m.Resource,
            Content = JsonSerializer.SerializeToElement(content),
        });
    }

    /// <summary>A snapshot for /_weft/status.</summary>
    public object Status() => new
    {
        replica = Name,
        router = Options.Replica.AdvertiseAddress.ToString(),
        hub = Options.Hub.Listen.ToString(),
        sessions = SessionCount,
        owns = _sessions.Keys.Order(StringComparer.Ordinal).ToArray(),
        directory = new { backend = Directory.Backend, healthy = Directory.Health.Healthy, reason = Directory.Health.Reason, since = Directory.Health.Since },
        degraded = !Directory.Health.Healthy,
        eventbusPending = Delivery.PendingCount,
        counters = new
        {
            requests = Metrics.Requests, forwards = Metrics.Forwards, sessionsOpened = Metrics.SessionsOpened,
            violations = Metrics.Violations, eventbusMessages = Metrics.EventMessages, uploads = Metrics.Uploads,
        },
    };
}
