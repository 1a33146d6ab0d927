using System.Buffers;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Weft.Mesh.Proxy;

/// <summary>Where the demo app listens (port 0: any free port).</summary>
public sealed record DemoAppOptions(string Name, IPEndPoint Http)
{
    /// <summary>A TCP echo server (echoes until the client's EOF, then closes its side).</summary>
    public IPEndPoint? TcpEcho { get; init; }

    /// <summary>A UDP echo server (each datagram back to its sender).</summary>
    public IPEndPoint? UdpEcho { get; init; }
}

/// <summary>
/// The lab's <c>demo</c> service (DESIGN.md §6): <c>GET /</c> answers the serving node's name, <c>GET /bytes/N</c> N
/// bytes where byte i is <c>i % 251</c>, <c>POST /echo</c> the request body; plus optional TCP and UDP echo servers
/// for the proxy's tests. Bounded: <see cref="MaxBytes"/>, <see cref="MaxEchoBody"/>, <see cref="MaxConnections"/>.
/// </summary>
public sealed class DemoApp : IAsyncDisposable
{
    /// <summary>Largest N of <c>GET /bytes/N</c>.</summary>
    public const long MaxBytes = 4L << 30;

    /// <summary>Largest <c>POST /echo</c> body (413 beyond).</summary>
    public const long MaxEchoBody = 64 << 20;

    /// <summary>Connections served at once by each server (HTTP, TCP echo).</summary>
    public const int MaxConnections = 1024;

    /// <summary>The byte pattern, a whole number of 251-byte periods long, so consecutive copies continue it.</summary>
    private static readonly byte[] Pattern = Enumerable.Range(0, 251 * 256).Select(i => (byte)(i % 251)).ToArray();

    private readonly WebApplication _web;
    private readonly Socket? _tcpEcho;
    private readonly Socket? _udpEcho;
    private readonly CancellationTokenSource _stop = new();
    private readonly List<Task> _loops = [];
    private int _echoConnections;

    private DemoApp(WebApplication web, Uri url, Socket? tcpEcho, Socket? udpEcho, long[] requests)
    {
        _web = web;
        _requests = requests;
        HttpUrl = url;
        _tcpEcho = tcpEcho;
        _udpEcho = udpEcho;
    }

    public Uri HttpUrl { get; }
    public IPEndPoint? TcpEcho => _tcpEcho?.LocalEndPoint as IPEndPoint;
    public IPEndPoint? UdpEcho => _udpEcho?.LocalEndPoint as IPEndPoint;

    /// <summary>Requests served (all paths), for tests that count which endpoint answered.</summary>
    public long Requests => Interlocked.Read(ref _requests[0]);
    private readonly long[] _requests;

    /// <summary>Byte i of <c>GET /bytes/N</c>.</summary>
    public static byte PatternAt(long i) => (byte)(i % 251);

    /// <summary>True when <paramref name="data"/> is bytes <paramref name="at"/>.. of the pattern (vectorised compare).</summary>
    public static bool MatchesPattern(long at, ReadOnlySpan<byte> data)
    {
        while (!data.IsEmpty)
        {
            var offset = (int)(at % 251);
            var take = Math.Min(data.Length, Pattern.Length - offset);
            if (!data[..take].SequenceEqual(Pattern.AsSpan(offset, take))) return false;
            data = data[take..];
            at += take;
        }
        return true;
    }

    public static async Task<DemoApp> StartAsync(DemoAppOptions options, CancellationToken ct = default)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.AddServerHeader = false;
            k.Limits.MaxRequestBodySize = MaxEchoBody;
            k.Limits.MaxConcurrentConnections = MaxConnections;
            k.Limits.MaxRequestHeadersTotalSize = 16 * 1024;
            k.Listen(options.Http);
        });
        var web = builder.Build();
        DemoApp? app = null;
        var requests = new long[1];
        web.Use(async (c, next) =>
        {
            Interlocked.Increment(ref requests[0]);
            await next(c).ConfigureAwait(false);
        });
        web.MapGet("/", () => Results.Text(options.Name, "text/plain; charset=utf-8"));
        web.MapGet("/bytes/{n}", async (HttpContext c, string n) =>
        {
            if (!long.TryParse(n, NumberStyles.None, CultureInfo.InvariantCulture, out var count) || count > MaxBytes)
            {
                c.Response.StatusCode = 400;
                await c.Response.WriteAsync($"N must be a whole number from 0 to {MaxBytes}\n", c.RequestAborted).ConfigureAwait(false);
                return;
            }
            c.Response.ContentType = "application/octet-stream";
            c.Response.ContentLength = count;
            for (var sent = 0L; sent < count;)
            {
                var take = (int)Math.Min(Pattern.Length, count - sent);
                await c.Response.Body.WriteAsync(Pattern.AsMemory(0, take), c.RequestAborted).ConfigureAwait(false);
                sent += take;
            }
        });
        web.MapPost("/echo", async (HttpContext c) =>
        {
            c.Response.ContentType = c.Request.ContentType ?? "application/octet-stream";
            if (c.Request.ContentLength is { } length) c.Response.ContentLength = length;
            await c.Request.Body.CopyToAsync(c.Response.Body, c.RequestAborted).ConfigureAwait(false);
        });
        Task NotAllowed(HttpContext c, string allow)
        {
            c.Response.StatusCode = 405;
            c.Response.Headers.Allow = allow;
            return c.Response.WriteAsync($"{c.Request.Method} is not allowed here; use {allow}\n", c.RequestAborted);
        }
        string[] notGet = ["POST", "PUT", "DELETE", "PATCH"];
        web.MapMethods("/", notGet, (HttpContext c) => NotAllowed(c, "GET"));
        web.MapMethods("/bytes/{n}", notGet, (HttpContext c) => NotAllowed(c, "GET"));
        web.MapMethods("/echo", ["GET", "PUT", "DELETE", "PATCH"], (HttpContext c) => NotAllowed(c, "POST"));
        web.MapFallback((HttpContext c) =>
        {
            c.Response.StatusCode = 404;
            return c.Response.WriteAsync($"no {c.Request.Method} {c.Request.Path} here; try GET /, GET /bytes/N, POST /echo\n", c.RequestAborted);
        });

        Socket? tcp = null, udp = null;
        try
        {
            await web.StartAsync(ct).ConfigureAwait(false);
            var bound = web.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
            if (options.TcpEcho is { } te)
            {
                tcp = new Socket(te.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
                tcp.Bind(te);
                tcp.Listen(512);
            }
            if (options.UdpEcho is { } ue)
            {
                udp = new Socket(ue.AddressFamily, SocketType.Dgram, ProtocolType.Udp) { ReceiveBufferSize = 4 << 20, SendBufferSize = 4 << 20 };
                udp.Bind(ue);
            }
            app = new DemoApp(web, new Uri(bound), tcp, udp, requests);
        }
        catch
        {
            tcp?.Dispose();
            udp?.Dispose();
            await web.DisposeAsync().ConfigureAwait(false);
            throw;
        }
        if (tcp is not null) app._loops.Add(Task.Run(() => app.TcpEchoLoopAsync(tcp)));
        if (udp is not null) app._loops.Add(Task.Run(() => app.UdpEchoLoopAsync(udp)));
        return app;
    }

    private async Task TcpEchoLoopAsync(Socket listener)
    {
        var ct = _stop.Token;
        while (!ct.IsCancellationRequested)
        {
            Socket s;
            try { s = await listener.AcceptAsync(ct).ConfigureAwait(false); }
            catch (Exception ex) when (ex is OperationCanceledException or ObjectDisposedException) { return; }
            catch (SocketException) { continue; }
            if (Interlocked.Increment(ref _echoConnections) > MaxConnections)
            {
                Interlocked.Decrement(ref _echoConnections);
                s.Dispose();
                continue;
            }
            _ = Task.Run(async () =>
            {
                var buffer = ArrayPool<byte>.Shared.Rent(64 * 1024);
                try
                {
                    int n;
                    while ((n = await s.ReceiveAsync(buffer, SocketFlags.None, ct).ConfigureAwait(false)) > 0)
                        for (var sent = 0; sent < n;) sent += await s.SendAsync(buffer.AsMemory(sent, n - sent), SocketFlags.None, ct).ConfigureAwait(false);
                    s.Shutdown(SocketShutdown.Send);
                }
                catch (Exception ex) when (ex is SocketException or OperationCanceledException or ObjectDisposedException)
                {
                    // the client went away
                }
                finally
                {
                    ArrayPool<byte>.Shared.Return(buffer);
                    s.Dispose();
                    Interlocked.Decrement(ref _echoConnections);
                }
            }, CancellationToken.None);
        }
    }

    private async Task UdpEchoLoopAsync(Socket socket)
    {
        var ct = _stop.Token;
        var buffer = new byte[65536];
        EndPoint any = new IPEndPoint(socket.AddressFamily == AddressFamily.InterNetwork ? IPAddress.Any : IPAddress.IPv6Any, 0);
        while (!ct.IsCancellationRequested)
        {
            try
            {
                var r = await socket.ReceiveFromAsync(buffer, SocketFlags.None, any, ct).ConfigureAwait(false);
                await socket.SendToAsync(buffer.AsMemory(0, r.ReceivedBytes), SocketFlags.None, r.RemoteEndPoint, ct).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is OperationCanceledException or ObjectDisposedException) { return; }
            catch (SocketException) { /* an ICMP error for an earlier reply */ }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        _tcpEcho?.Dispose();
        _udpEcho?.Dispose();
        try { await Task.WhenAll(_loops).ConfigureAwait(false); } catch (Exception) { /* stopping */ }
        using (var cts = new CancellationTokenSource(TimeSpan.FromSeconds(2)))
        {
            try { await _web.StopAsync(cts.Token).ConfigureAwait(false); } catch (Exception) { /* stopping anyway */ }
        }
        await _web.DisposeAsync().ConfigureAwait(false);
        _stop.Dispose();
    }
}
