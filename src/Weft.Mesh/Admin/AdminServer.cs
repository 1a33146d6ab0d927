using System.Globalization;
using System.Net;
using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Weft.Mesh.Agent;

namespace Weft.Mesh.Admin;

/// <summary>
/// The agent's admin API (Kestrel, loopback by default, no authentication — see AdminConfig.AllowRemote):
/// <c>GET /healthz</c>, <c>GET /readyz</c>, <c>GET /metrics</c> (Prometheus text), <c>GET /status</c> (JSON) and
/// <c>POST /ping?node=NAME&amp;count=N&amp;intervalMs=M&amp;timeoutMs=T</c> (one JSON object per line per ping, each on a new
/// tunnel stream). A second listener serves only <c>/metrics</c> when EdgeMesh's metricConfig is enabled.
/// </summary>
public sealed class AdminServer : IAsyncDisposable
{
    /// <summary>Most pings one request may ask for.</summary>
    public const int MaxPingCount = 100_000;

    /// <summary>Longest wait for one ping.</summary>
    public const int MaxPingTimeoutMs = 60_000;

    /// <summary>Request bodies are not used; anything larger than this is refused.</summary>
    public const long MaxRequestBody = 4096;

    public static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web)
    {
        DefaultIgnoreCondition = JsonIgnoreCondition.Never,
        WriteIndented = false,
    };

    private readonly List<WebApplication> _apps;

    private AdminServer(List<WebApplication> apps, IReadOnlyList<Uri> urls)
    {
        _apps = apps;
        Urls = urls;
    }

    /// <summary>The bound base URLs (the admin one first).</summary>
    public IReadOnlyList<Uri> Urls { get; }

    public static async Task<AdminServer> StartAsync(MeshAgent agent, IPEndPoint listen, IPEndPoint? metricsOnly, CancellationToken ct)
    {
        var app = NewApp(listen);
        IResult Metrics() => Results.Text(agent.Exporter.Scrape(), "text/plain; version=0.0.4; charset=utf-8");
        app.MapGet("/metrics", Metrics);
        app.MapGet("/healthz", () => Results.Text("ok\n"));
        app.MapGet("/readyz", () =>
        {
            var s = agent.Status();
            return s.Ready ? Results.Text("ready\n") : Results.Text("not ready: " + string.Join("; ", s.NotReadyBecause) + "\n", statusCode: 503);
        });
        app.MapGet("/status", () => Results.Json(agent.Status(), Json));
        app.MapPost("/ping", async (HttpContext c) =>
        {
            var q = c.Request.Query;
            var node = q["node"].ToString();
            if (string.IsNullOrEmpty(node)) { await Problem(c, 400, "the node query parameter is required").ConfigureAwait(false); return; }
            if (!TryInt(q["count"], 1, 1, MaxPingCount, out var count) || !TryInt(q["intervalMs"], 1000, 0, 3_600_000, out var interval)
                || !TryInt(q["timeoutMs"], 5000, 1, MaxPingTimeoutMs, out var timeout))
            {
                await Problem(c, 400, $"count must be 1..{MaxPingCount}, intervalMs 0..3600000, timeoutMs 1..{MaxPingTimeoutMs}").ConfigureAwait(false);
                return;
            }
            if (node != agent.NodeName && await agent.ResolveAsync(node, MeshAgent.ResolveWait, c.RequestAborted).ConfigureAwait(false) is null)
            {
                await Problem(c, 404, $"unknown node '{node}': not found by discovery").ConfigureAwait(false);
                return;
            }
            c.Response.ContentType = "application/x-ndjson";
            var ct2 = c.RequestAborted;
            var next = agent.Host.Time.GetTimestamp();
            for (var i = 1; i <= count && !ct2.IsCancellationRequested; i++)
            {
                using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct2);
                cts.CancelAfter(timeout);
                PingReply reply;
                try
                {
                    reply = await agent.PingNodeAsync(node, i, cts.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (!ct2.IsCancellationRequested)
                {
                    reply = new PingReply(i, false, null, timeout, null, null, $"no answer within {timeout} ms", agent.Host.Time.GetUtcNow().ToString("O", CultureInfo.InvariantCulture));
                }
                await c.Response.WriteAsync(JsonSerializer.Serialize(reply, Json) + "\n", ct2).ConfigureAwait(false);
                await c.Response.Body.FlushAsync(ct2).ConfigureAwait(false);
                if (i == count) break;
                next += (long)(interval / 1000.0 * agent.Host.Time.TimestampFrequency);
                var wait = TimeSpan.FromSeconds((next - agent.Host.Time.GetTimestamp()) / (double)agent.Host.Time.TimestampFrequency);
                if (wait > TimeSpan.Zero) await Task.Delay(wait, agent.Host.Time, ct2).ConfigureAwait(false);
            }
        });
        app.MapFallback((HttpContext c) => Problem(c, 404, $"no such endpoint {c.Request.Method} {c.Request.Path}; try /status, /metrics, /healthz, /readyz, POST /ping?node=NAME"));
        var apps = new List<WebApplication> { app };
        if (metricsOnly is not null)
        {
            var m = NewApp(metricsOnly);
            m.MapGet("/metrics", Metrics);
            m.MapFallback((HttpContext c) => Problem(c, 404, "only /metrics is served here"));
            apps.Add(m);
        }
        var urls = new List<Uri>();
        try
        {
            foreach (var a in apps)
            {
                await a.StartAsync(ct).ConfigureAwait(false);
                var bound = a.Services.GetRequiredService<Microsoft.AspNetCore.Hosting.Server.IServer>()
                    .Features.Get<Microsoft.AspNetCore.Hosting.Server.Features.IServerAddressesFeature>()?.Addresses ?? [];
                urls.AddRange(bound.Select(u => new Uri(u.Replace("0.0.0.0", "127.0.0.1", StringComparison.Ordinal).Replace("[::]", "[::1]", StringComparison.Ordinal))));
            }
        }
        catch
        {
            foreach (var a in apps) await a.DisposeAsync().ConfigureAwait(false);
            throw;
        }
        return new AdminServer(apps, urls);
    }

    private static WebApplication NewApp(IPEndPoint listen)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.AddServerHeader = false;
            k.Limits.MaxRequestBodySize = MaxRequestBody;
            k.Limits.MaxConcurrentConnections = 64;
            k.Limits.MaxRequestHeadersTotalSize = 16 * 1024;
            k.Listen(listen);
        });
        return builder.Build();
    }

    private static bool TryInt(Microsoft.Extensions.Primitives.StringValues v, int fallback, int min, int max, out int value)
    {
        if (v.Count == 0) { value = fallback; return true; }
        return int.TryParse(v.ToString(), NumberStyles.Integer, CultureInfo.InvariantCulture, out value) && value >= min && value <= max;
    }

    private static Task Problem(HttpContext c, int status, string message)
    {
        c.Response.StatusCode = status;
        return c.Response.WriteAsJsonAsync(new { error = message }, Json);
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var app in _apps)
        {
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(2));
            try { await app.StopAsync(cts.Token).ConfigureAwait(false); } catch (Exception) { /* stopping anyway */ }
            await app.DisposeAsync().ConfigureAwait(false);
        }
    }
}
