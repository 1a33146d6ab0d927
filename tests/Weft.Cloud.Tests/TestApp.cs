using System.Net;
using System.Threading.Channels;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Weft.Lab.Services;

namespace Weft.Cloud.Tests;

/// <summary>
/// A small HTTP app on 127.0.0.1: the edge app of rest→servicebus rules (DESIGN §6's demo: GET / → name,
/// GET /bytes/N, POST /echo; plus /status/N, /slow/MS and /headers) and the cloud app of eventbus→rest rules
/// (POST /ingest, recorded in <see cref="Ingested"/>).
/// </summary>
public sealed class TestApp : IAsyncDisposable
{
    private readonly WebApplication _app;

    public sealed record Ingest(string? Node, string? MessageId, string? Topic, byte[] Body);

    private TestApp(WebApplication app, int port)
    {
        _app = app;
        Port = port;
    }

    public int Port { get; }

    public Uri Url => new($"http://127.0.0.1:{Port}");

    public Channel<Ingest> Ingested { get; } = Channel.CreateUnbounded<Ingest>();

    public int Calls;

    public static async Task<TestApp> StartAsync(string name)
    {
        var port = LabService.FreePort(IPAddress.Loopback);
        var b = WebApplication.CreateSlimBuilder();
        b.Logging.ClearProviders();
        b.WebHost.UseKestrel(k => k.Listen(IPAddress.Loopback, port));
        var app = b.Build();
        TestApp? self = null;
        app.Run(async ctx =>
        {
            Interlocked.Increment(ref self!.Calls);
            var path = ctx.Request.Path.Value ?? "/";
            var parts = path.Split('/', StringSplitOptions.RemoveEmptyEntries);
            using var ms = new MemoryStream();
            await ctx.Request.Body.CopyToAsync(ms);
            switch (parts)
            {
                case []:
                    await ctx.Response.WriteAsync(name);
                    break;
                case ["bytes", var n]:
                    var bytes = Enumerable.Range(0, int.Parse(n, System.Globalization.CultureInfo.InvariantCulture)).Select(i => (byte)(i % 251)).ToArray();
                    await ctx.Response.Body.WriteAsync(bytes);
                    break;
                case ["echo"]:
                    ctx.Response.ContentType = ctx.Request.ContentType ?? "application/octet-stream";
                    ctx.Response.Headers["X-Echo-Method"] = ctx.Request.Method;
                    ctx.Response.Headers["X-Echo-Query"] = ctx.Request.QueryString.Value ?? "";
                    await ctx.Response.Body.WriteAsync(ms.ToArray());
                    break;
                case ["status", var code]:
                    ctx.Response.StatusCode = int.Parse(code, System.Globalization.CultureInfo.InvariantCulture);
                    ctx.Response.Headers["X-App"] = "status";
                    await ctx.Response.WriteAsync("status " + code);
                    break;
                case ["slow", var ms2]:
                    await Task.Delay(int.Parse(ms2, System.Globalization.CultureInfo.InvariantCulture), ctx.RequestAborted);
                    await ctx.Response.WriteAsync("slow");
                    break;
                case ["headers"]:
                    await ctx.Response.WriteAsync(ctx.Request.Headers["X-Test"].ToString());
                    break;
                case ["ingest"]:
                    self.Ingested.Writer.TryWrite(new Ingest(ctx.Request.Headers["NodeName"], ctx.Request.Headers["X-Weft-Message-Id"], ctx.Request.Headers["X-Weft-Topic"], ms.ToArray()));
                    ctx.Response.StatusCode = 204;
                    break;
                default:
                    ctx.Response.StatusCode = 404;
                    break;
            }
        });
        self = new TestApp(app, port);
        await app.StartAsync();
        return self;
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}
