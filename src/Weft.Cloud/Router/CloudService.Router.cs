using System.Globalization;
using System.Net.Sockets;
using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Weft.Cloud.Config;
using Weft.Cloud.Hub;
using Weft.Cloud.Router;
using Weft.HubLink;
using Weft.Wire;
using Weft.Wire.Hub;

namespace Weft.Cloud;

/// <summary>The REST ingress: <c>/{node}/{namespace}/{path}</c> → rule → local session, or one forward to the owner.</summary>
public sealed partial class CloudService
{
    /// <summary>Set on a forwarded request: the name of the replica that forwarded it. Such a request is never forwarded again.</summary>
    public const string ForwardedByHeader = "X-Weft-Forwarded-By";

    /// <summary>The time left of the caller's deadline, in milliseconds (set by callers and on forwards).</summary>
    public const string TimeoutHeader = "X-Weft-Timeout-Ms";

    /// <summary>On 421/503 answers: the replica the directory names as the node's owner.</summary>
    public const string OwnerHeader = "X-Weft-Owner";

    /// <summary>On answers that reached the edge: the replica that holds the session.</summary>
    public const string ServedByHeader = "X-Weft-Served-By";

    /// <summary>rest→eventbus: the caller's message id (letters, digits, '.', '_', '-'; at most 128), for deduplication of retries.</summary>
    public const string MessageIdHeader = "X-Weft-Message-Id";

    private static readonly HashSet<string> HopByHop = new(StringComparer.OrdinalIgnoreCase)
    {
        "Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "TE", "Trailer", "Transfer-Encoding", "Upgrade", "Host", "Content-Length",
        "Proxy-Connection",
    };

    private async Task RouteAsync(HttpContext ctx)
    {
        var (status, outcome) = await RouteInnerAsync(ctx).ConfigureAwait(false);
        Metrics.Request(outcome);
        Log.Routed(_log, ctx.Request.Method, ctx.Request.Path, status, outcome);
    }

    private async Task<(int, string)> RouteInnerAsync(HttpContext ctx)
    {
        var raw = ctx.Features.Get<Microsoft.AspNetCore.Http.Features.IHttpRequestFeature>()?.RawTarget ?? ctx.Request.Path.Value ?? "/";
        ctx.Response.Headers["X-Weft-Replica"] = Name;
        if (raw.StartsWith("/_weft/", StringComparison.Ordinal)) return await AdminAsync(ctx, raw).ConfigureAwait(false);

        var q = raw.IndexOf('?', StringComparison.Ordinal);
        var pathPart = q < 0 ? raw : raw[..q];
        var query = q < 0 ? "" : raw[q..];
        var segments = pathPart.Split('/');
        // "" node ns path... ; a trailing slash leaves one empty segment at the end
        var count = segments.Length > 1 && segments[^1].Length == 0 ? segments.Length - 1 : segments.Length;
        if (!pathPart.StartsWith('/') || count < 4 || segments.Skip(1).Take(count - 1).Any(s => s.Length == 0))
            return await Answer(ctx, 400, "malformed path: expected /{node}/{namespace}/{path}", "bad_path").ConfigureAwait(false);
        var node = segments[1];
        var ns = segments[2];
        var rest = segments.Skip(3).Take(count - 3).ToArray();
        if (!NodeTokens.IsValidNodeName(node)) return await Answer(ctx, 400, $"malformed path: '{node}' is not a node name", "bad_path").ConfigureAwait(false);
        if (!NodeTokens.IsValidNodeName(ns)) return await Answer(ctx, 400, $"malformed path: '{ns}' is not a namespace", "bad_path").ConfigureAwait(false);
        string[] decoded;
        try
        {
            decoded = rest.Select(Uri.UnescapeDataString).ToArray();
        }
        catch (UriFormatException)
        {
            return await Answer(ctx, 400, "malformed path: bad percent-encoding", "bad_path").ConfigureAwait(false);
        }

        if (ctx.Request.ContentLength > Options.Router.MaxBodyBytes)
            return await Answer(ctx, 413, $"body over the limit of {Options.Router.MaxBodyBytes} bytes", "too_large").ConfigureAwait(false);
        var timeout = Options.Router.RequestTimeout;
        if (ctx.Request.Headers[TimeoutHeader].ToString() is { Length: > 0 } t)
        {
            if (!long.TryParse(t, NumberStyles.None, CultureInfo.InvariantCulture, out var ms) || ms < 1)
                return await Answer(ctx, 400, $"{TimeoutHeader} must be a whole number of milliseconds ≥ 1", "bad_header").ConfigureAwait(false);
            timeout = TimeSpan.FromMilliseconds(Math.Min(ms, (long)Options.Router.MaxRequestTimeout.TotalMilliseconds));
        }
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(ctx.RequestAborted, _stop.Token);
        deadline.CancelAfter(timeout);
        var started = _time.GetTimestamp();

        if (Options.Rules.MatchRest(ns, decoded) is not { } match)
            return await Answer(ctx, 404, $"no rule for /{ns}/{string.Join('/', rest)}", "no_rule").ConfigureAwait(false);
        var local = LocalSession(node);
        if (local is null && !Directory.IsKnown(node))
            return await Answer(ctx, 404, $"unknown node {node}: it has never connected", "unknown_node").ConfigureAwait(false);

        byte[] body;
        try
        {
            body = await ReadBodyAsync(ctx.Request, deadline.Token).ConfigureAwait(false);
        }
        catch (BadHttpRequestException ex) when (ex.StatusCode == 413)
        {
            await DrainAsync(ctx.Request, deadline.Token).ConfigureAwait(false);
            return await Answer(ctx, 413, $"body over the limit of {Options.Router.MaxBodyBytes} bytes", "too_large").ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!ctx.RequestAborted.IsCancellationRequested)
        {
            return await Answer(ctx, 504, "the deadline passed while reading the body", "deadline").ConfigureAwait(false);
        }

        string? messageId = null;
        if (match.Route.Kind == RouteKind.RestToEventBus)
        {
            if (body.Length > Options.EventBus.MaxMessageBytes)
                return await Answer(ctx, 413, $"eventbus messages are limited to {Options.EventBus.MaxMessageBytes} bytes", "too_large").ConfigureAwait(false);
            messageId = ctx.Request.Headers[MessageIdHeader].ToString();
            if (messageId.Length == 0) messageId = Guid.NewGuid().ToString();
            else if (messageId.Length > 128 || !messageId.All(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-'))
                return await Answer(ctx, 400, $"{MessageIdHeader} may hold only letters, digits, '.', '_', '-' (at most 128)", "bad_header").ConfigureAwait(false);
        }

        var forwarded = ctx.Request.Headers[ForwardedByHeader].ToString();
        if (local is not null)
            return await ServeLocallyAsync(ctx, local, match.Route, match.SubPath + query, body, messageId, deadline.Token, started, timeout).ConfigureAwait(false);

        var owner = Directory.Lookup(node);
        if (forwarded.Length > 0)
        {
            // Never forward twice: say who we think owns it and let the first replica answer its caller.
            if (owner is not null && owner.Replica != Name)
            {
                ctx.Response.Headers[OwnerHeader] = owner.Replica;
                return await Answer(ctx, 421, $"replica {Name} does not hold node {node}; the directory names {owner.Replica}", "misdirected").ConfigureAwait(false);
            }
            if (match.Route.Kind == RouteKind.RestToEventBus) return await QueueAsync(ctx, node, match.Route, match.SubPath + query, body, messageId!, deadline.Token).ConfigureAwait(false);
            return await Answer(ctx, 503, $"node {node} has no session on any replica", "offline").ConfigureAwait(false);
        }
        if (owner is null || owner.Replica == Name)
        {
            if (match.Route.Kind == RouteKind.RestToEventBus) return await QueueAsync(ctx, node, match.Route, match.SubPath + query, body, messageId!, deadline.Token).ConfigureAwait(false);
            return await Answer(ctx, 503, $"node {node} has no session on any replica", "offline").ConfigureAwait(false);
        }
        return await ForwardAsync(ctx, owner, raw, body, messageId, match.Route, match.SubPath + query, deadline, started, timeout).ConfigureAwait(false);
    }

    /// <summary>
    /// Reads and drops what is left of a body found too large (at most another <c>MaxBodyBytes</c>, within the deadline),
    /// so the client has sent it all and reads the 413: closing on unread data would reset the connection under it.
    /// </summary>
    private async Task DrainAsync(HttpRequest request, CancellationToken ct)
    {
        var buffer = new byte[16 * 1024];
        long drained = 0;
        try
        {
            int read;
            while (drained < Options.Router.MaxBodyBytes && (read = await request.Body.ReadAsync(buffer, ct).ConfigureAwait(false)) > 0) drained += read;
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException or BadHttpRequestException)
        {
            // the client went away or the deadline passed: answer anyway
        }
    }

    private async Task<byte[]> ReadBodyAsync(HttpRequest request, CancellationToken ct)
    {
        using var ms = new MemoryStream(request.ContentLength is > 0 and var n ? (int)n : 0);
        var buffer = new byte[16 * 1024];
        int read;
        while ((read = await request.Body.ReadAsync(buffer, ct).ConfigureAwait(false)) > 0)
        {
            if (ms.Length + read > Options.Router.MaxBodyBytes) throw new BadHttpRequestException("body too large", 413);
            ms.Write(buffer, 0, read);
        }
        return ms.ToArray();
    }

    private async Task<(int, string)> ServeLocallyAsync(HttpContext ctx, NodeSession session, Route route, string subPathAndQuery, byte[] body, string? messageId, CancellationToken deadline, long started, TimeSpan timeout)
    {
        ctx.Response.Headers[ServedByHeader] = Name;
        if (route.Kind == RouteKind.RestToEventBus)
        {
            var message = Delivery.BuildPublish(messageId!, Topic(route, subPathAndQuery), body);
            var (outcome, duplicate) = await Delivery.PublishAsync(session.Node, message, session, deadline).ConfigureAwait(false);
            return await DeliveryAnswer(ctx, messageId!, outcome, duplicate).ConfigureAwait(false);
        }

        var headers = new Dictionary<string, string[]>(StringComparer.OrdinalIgnoreCase);
        foreach (var (k, v) in ctx.Request.Headers)
            if (!HopByHop.Contains(k) && !k.StartsWith("X-Weft-", StringComparison.OrdinalIgnoreCase)) headers[k] = v.Where(x => x is not null).ToArray()!;
        var left = Left(started, timeout);
        var path = route.TargetPath;
        var q = subPathAndQuery.IndexOf('?', StringComparison.Ordinal);
        var sub = q < 0 ? subPathAndQuery : subPathAndQuery[..q];
        if (sub.Length > 0) path = path.TrimEnd('/') + sub;
        if (q >= 0) path += subPathAndQuery[q..];
        var request = new HubMessage
        {
            Id = Guid.NewGuid().ToString(), Timestamp = _time.GetUtcNow().ToUnixTimeMilliseconds(),
            Source = HubNames.SourceRouterServiceBus, Group = HubNames.GroupUser, Operation = ctx.Request.Method,
            Resource = route.ServicePort.ToString(CultureInfo.InvariantCulture) + ":" + path,
            Content = new HubHttpRequest { Header = headers, Body = body, Method = ctx.Request.Method, TimeoutMs = (long)left.TotalMilliseconds }.ToJson(),
        };
        HubMessage reply;
        try
        {
            reply = await session.RequestAsync(request, deadline).ConfigureAwait(false);
        }
        catch (HubQueueFullException ex)
        {
            return await Answer(ctx, 503, ex.Message, "busy").ConfigureAwait(false);
        }
        catch (HubLinkClosedException ex)
        {
            // The request may have reached the edge: at most once, so no retry.
            return await Answer(ctx, 502, ex.Message + "; the request may or may not have reached the app", "session_lost").ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!ctx.RequestAborted.IsCancellationRequested)
        {
            return await Answer(ctx, 504, $"no answer from node {session.Node} within the deadline", "deadline").ConfigureAwait(false);
        }
        if (reply.Operation == HubNames.OpError)
            return await Answer(ctx, 502, $"node {session.Node}: {reply.ContentString ?? "error"}", "edge_error").ConfigureAwait(false);
        HubHttpResponse resp;
        try
        {
            resp = HubHttpResponse.FromJson(reply.Content);
        }
        catch (Weft.Wire.ProtocolViolationException ex)
        {
            return await Answer(ctx, 502, $"node {session.Node} sent an unreadable reply: {ex.Detail}", "edge_error").ConfigureAwait(false);
        }
        if (resp.Body.Length > Options.Router.MaxBodyBytes)
            return await Answer(ctx, 502, $"the app's reply is over {Options.Router.MaxBodyBytes} bytes", "edge_error").ConfigureAwait(false);
        ctx.Response.StatusCode = resp.StatusCode;
        foreach (var (k, v) in resp.Header)
            if (!HopByHop.Contains(k)) ctx.Response.Headers[k] = v;
        ctx.Response.ContentLength = resp.Body.Length;
        await ctx.Response.Body.WriteAsync(resp.Body, ctx.RequestAborted).ConfigureAwait(false);
        return (resp.StatusCode, "served");
    }

    private static string Topic(Route route, string subPathAndQuery)
    {
        var q = subPathAndQuery.IndexOf('?', StringComparison.Ordinal);
        var sub = q < 0 ? subPathAndQuery : subPathAndQuery[..q];
        return sub.Length == 0 ? route.Topic : route.Topic.TrimEnd('/') + sub;
    }

    private async Task<(int, string)> QueueAsync(HttpContext ctx, string node, Route route, string subPathAndQuery, byte[] body, string messageId, CancellationToken ct)
    {
        var outcome = await Delivery.QueueOnlyAsync(node, Delivery.BuildPublish(messageId, Topic(route, subPathAndQuery), body), ct).ConfigureAwait(false);
        // The node may have connected somewhere meanwhile; that replica's session start missed this message,
        // so pass it on once (the edge drops repeats by id).
        if (outcome == DeliveryOutcome.Queued && Directory.Lookup(node) is { } owner && owner.Replica != Name && ctx.Request.Headers[ForwardedByHeader].Count == 0)
            _ = NudgeAsync(owner, ctx.Features.Get<Microsoft.AspNetCore.Http.Features.IHttpRequestFeature>()!.RawTarget, body, messageId, ctx.Request.Method);
        return await DeliveryAnswer(ctx, messageId, outcome, false).ConfigureAwait(false);
    }

    private async Task NudgeAsync(Directory.OwnerRecord owner, string raw, byte[] body, string id, string method)
    {
        try
        {
            using var cts = new CancellationTokenSource(Options.Router.RequestTimeout);
            using var req = new HttpRequestMessage(new HttpMethod(method), new Uri(owner.Address, raw)) { Content = new ByteArrayContent(body) };
            req.Headers.TryAddWithoutValidation(ForwardedByHeader, Name);
            req.Headers.TryAddWithoutValidation(MessageIdHeader, id);
            using var _ = await _forwardClient.SendAsync(req, cts.Token).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is HttpRequestException or OperationCanceledException) { }
    }

    private async Task<(int, string)> DeliveryAnswer(HttpContext ctx, string id, DeliveryOutcome outcome, bool duplicate)
    {
        Metrics.Event(outcome.ToString().ToLowerInvariant());
        var (status, text) = outcome switch
        {
            DeliveryOutcome.Delivered => (200, "delivered"),
            DeliveryOutcome.Queued => (202, "queued"),
            DeliveryOutcome.Full => (503, "full"),
            _ => (503, "not_queued"),
        };
        ctx.Response.StatusCode = status;
        ctx.Response.ContentType = "application/json";
        await ctx.Response.WriteAsync(JsonSerializer.Serialize(new { id, status = text, duplicate }) + "\n").ConfigureAwait(false);
        return (status, "eventbus_" + text);
    }

    private TimeSpan Left(long started, TimeSpan timeout) =>
        TimeSpan.FromMilliseconds(Math.Max(1, (timeout - _time.GetElapsedTime(started)).TotalMilliseconds));

    private async Task<(int, string)> ForwardAsync(HttpContext ctx, Directory.OwnerRecord owner, string raw, byte[] body, string? messageId, Route route, string subPathAndQuery,
        CancellationTokenSource deadline, long started, TimeSpan timeout)
    {
        using var req = new HttpRequestMessage(new HttpMethod(ctx.Request.Method), new Uri(owner.Address, raw)) { Content = new ByteArrayContent(body) };
        foreach (var (k, v) in ctx.Request.Headers)
        {
            if (HopByHop.Contains(k) || k.StartsWith("X-Weft-", StringComparison.OrdinalIgnoreCase)) continue;
            if (!req.Headers.TryAddWithoutValidation(k, (IEnumerable<string>)v!)) req.Content.Headers.TryAddWithoutValidation(k, (IEnumerable<string>)v!);
        }
        req.Headers.TryAddWithoutValidation(ForwardedByHeader, Name);
        if (messageId is not null) req.Headers.TryAddWithoutValidation(MessageIdHeader, messageId);
        var left = (long)Left(started, timeout).TotalMilliseconds;
        req.Headers.TryAddWithoutValidation(TimeoutHeader, left.ToString(CultureInfo.InvariantCulture));
        HttpResponseMessage resp;
        try
        {
            resp = await _forwardClient.SendAsync(req, HttpCompletionOption.ResponseHeadersRead, deadline.Token).ConfigureAwait(false);
        }
        catch (HttpRequestException ex) when (ex.InnerException is SocketException || ex.HttpRequestError == HttpRequestError.ConnectionError)
        {
            // Nothing reached the owner: safe to say so (and to queue an eventbus message for whoever owns the node next).
            Metrics.Forward("unreachable");
            Log.ForwardFailed(_log, owner.Replica, ex.Message);
            if (route.Kind == RouteKind.RestToEventBus && messageId is not null)
                return await QueueAsync(ctx, owner.Node, route, subPathAndQuery, body, messageId, deadline.Token).ConfigureAwait(false);
            ctx.Response.Headers[OwnerHeader] = owner.Replica;
            return await Answer(ctx, 503, $"the owner of node {owner.Node}, {owner.Replica}, is unreachable: {ex.Message}", "owner_unreachable").ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!ctx.RequestAborted.IsCancellationRequested)
        {
            Metrics.Forward("deadline");
            ctx.Response.Headers[OwnerHeader] = owner.Replica;
            return await Answer(ctx, 504, $"no answer through {owner.Replica} within the deadline", "deadline").ConfigureAwait(false);
        }
        catch (HttpRequestException ex)
        {
            Metrics.Forward("failed");
            Log.ForwardFailed(_log, owner.Replica, ex.Message);
            ctx.Response.Headers[OwnerHeader] = owner.Replica;
            return await Answer(ctx, 502, $"forwarding to {owner.Replica} failed: {ex.Message}", "forward_failed").ConfigureAwait(false);
        }
        using (resp)
        {
            Metrics.Forward("ok");
            ctx.Response.StatusCode = (int)resp.StatusCode;
            foreach (var (k, v) in resp.Headers.Concat(resp.Content.Headers))
                if (!HopByHop.Contains(k) && k != "X-Weft-Replica") ctx.Response.Headers[k] = v.ToArray();
            try
            {
                var bytes = await resp.Content.ReadAsByteArrayAsync(deadline.Token).ConfigureAwait(false);
                ctx.Response.ContentLength = bytes.Length;
                await ctx.Response.Body.WriteAsync(bytes, ctx.RequestAborted).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is HttpRequestException or OperationCanceledException or IOException)
            {
                ctx.Abort();
            }
            return ((int)resp.StatusCode, "forwarded");
        }
    }

    private static async Task<(int, string)> Answer(HttpContext ctx, int status, string message, string outcome)
    {
        ctx.Response.StatusCode = status;
        ctx.Response.ContentType = "text/plain; charset=utf-8";
        await ctx.Response.WriteAsync(message + "\n").ConfigureAwait(false);
        return (status, outcome);
    }

    private async Task<(int, string)> AdminAsync(HttpContext ctx, string raw)
    {
        var path = raw.Split('?')[0];
        switch (path)
        {
            case "/_weft/healthz":
                return await Answer(ctx, 200, "ok", "admin").ConfigureAwait(false);
            case "/_weft/readyz":
                var h = Directory.Health;
                return await Answer(ctx, 200, h.Healthy ? "ready" : "ready, degraded: " + h.Reason, "admin").ConfigureAwait(false);
            case "/_weft/metrics":
                ctx.Response.ContentType = "text/plain; version=0.0.4; charset=utf-8";
                await ctx.Response.WriteAsync(_exporter.Scrape()).ConfigureAwait(false);
                return (200, "admin");
            case "/_weft/status":
                ctx.Response.ContentType = "application/json";
                await ctx.Response.WriteAsync(JsonSerializer.Serialize(Status()) + "\n").ConfigureAwait(false);
                return (200, "admin");
            default:
                return await Answer(ctx, 404, "unknown admin path; try /_weft/status, /_weft/metrics, /_weft/healthz, /_weft/readyz", "admin").ConfigureAwait(false);
        }
    }
}
