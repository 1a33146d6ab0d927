using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Net.WebSockets;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Weft.Edge;

// weft-cloudload router   --hub WS --owner URL --other URL --app-port P --token-secret FILE [--count N] [--seconds S] [--concurrency C]
// weft-cloudload sessions --hub WS --status URL --pid PID --token-secret FILE --count N [--prefix P] [--sources 127.0.0.2,127.0.0.3] [--seconds S]
// Every loop is bounded by a count and a time limit. Output: one JSON object per line on stdout.
var a = ParseArgs(args);
var deadline = TimeSpan.FromSeconds(double.Parse(a.GetValueOrDefault("seconds", "10"), CultureInfo.InvariantCulture));
using var total = new CancellationTokenSource(TimeSpan.FromMinutes(10));
return args.Length > 0 && args[0] == "router" ? await RouterAsync() : args.Length > 0 && args[0] == "sessions" ? await SessionsAsync() : Usage();

int Usage()
{
    Console.Error.WriteLine("usage: weft-cloudload router|sessions --hub WS ... (see bench/cloud.sh)");
    return 2;
}

string Token(string node) => Convert.ToHexStringLower(HMACSHA256.HashData(File.ReadAllBytes(a["token-secret"]), Encoding.UTF8.GetBytes("weft-node-token:" + node)));

async Task<int> RouterAsync()
{
    // The edge app: answers GET /ping with 2 bytes.
    var appPort = int.Parse(a["app-port"], CultureInfo.InvariantCulture);
    var b = WebApplication.CreateSlimBuilder();
    b.Logging.ClearProviders();
    b.WebHost.UseKestrel(k => k.Listen(IPAddress.Loopback, appPort));
    var app = b.Build();
    app.Run(ctx => ctx.Response.WriteAsync("ok"));
    await app.StartAsync(total.Token);
    var node = a.GetValueOrDefault("node", "bench-node");
    await using var link = new CloudLink(new EdgeOptions { NodeName = node, CloudUrls = [new Uri(a["hub"])], Token = Token(node), MqttBroker = null }, NullLoggerFactory.Instance);
    link.Start();
    await link.WaitAsync(s => s.Connected, total.Token);
    var count = int.Parse(a.GetValueOrDefault("count", "3000"), CultureInfo.InvariantCulture);
    var conc = int.Parse(a.GetValueOrDefault("concurrency", "32"), CultureInfo.InvariantCulture);
    using var http = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = 1024, UseProxy = false }) { Timeout = TimeSpan.FromSeconds(30) };
    var owner = new Uri(new Uri(a["owner"]), $"/{node}/default/bench");
    var other = new Uri(new Uri(a["other"]), $"/{node}/default/bench");
    var baseline = new Uri($"http://127.0.0.1:{appPort}/");
    // Wait until the other replica's directory names the owner (it polls or watches).
    while ((await http.GetAsync(other, total.Token)).StatusCode != HttpStatusCode.OK) await Task.Delay(50, total.Token);

    var results = new List<object>();
    (string Name, Uri Url)[] paths = [("app-direct", baseline), ("owner-direct", owner), ("forwarded", other)];
    foreach (var (_, url) in paths)
        for (var i = 0; i < 200; i++) await http.GetAsync(url, total.Token); // warm-up
    // Latency: the three paths interleaved request by request, so that they share whatever else the machine does.
    var lat = paths.Select(_ => new List<double>(count)).ToArray();
    var sw = Stopwatch.StartNew();
    for (var i = 0; i < count && sw.Elapsed < deadline * 6; i++)
    {
        for (var k = 0; k < paths.Length; k++)
        {
            var t = Stopwatch.GetTimestamp();
            using var r = await http.GetAsync(paths[k].Url, total.Token);
            await r.Content.ReadAsByteArrayAsync(total.Token);
            if (r.StatusCode != HttpStatusCode.OK) throw new InvalidOperationException($"{paths[k].Url}: {(int)r.StatusCode}");
            lat[k].Add(Stopwatch.GetElapsedTime(t).TotalMilliseconds);
        }
    }
    for (var k = 0; k < paths.Length; k++)
    {
        lat[k].Sort();
        results.Add(new { measure = "latency", path = paths[k].Name, n = lat[k].Count, p50_ms = Pct(lat[k], 0.50), p90_ms = Pct(lat[k], 0.90), p99_ms = Pct(lat[k], 0.99) });
    }
    // Throughput: one-second slices rotating over the paths, `seconds` slices per path.
    var done = new long[paths.Length];
    var failed = new long[paths.Length];
    var spent = new double[paths.Length];
    var slices = (int)Math.Max(1, deadline.TotalSeconds);
    for (var slice = 0; slice < slices * paths.Length; slice++)
    {
        var k = slice % paths.Length;
        var url = paths[k].Url;
        var sliceWatch = Stopwatch.StartNew();
        await Task.WhenAll(Enumerable.Range(0, conc).Select(async _ =>
        {
            while (sliceWatch.Elapsed < TimeSpan.FromSeconds(1))
            {
                using var r = await http.GetAsync(url, total.Token);
                await r.Content.ReadAsByteArrayAsync(total.Token);
                if (r.StatusCode == HttpStatusCode.OK) Interlocked.Increment(ref done[k]); else Interlocked.Increment(ref failed[k]);
            }
        }));
        spent[k] += sliceWatch.Elapsed.TotalSeconds;
    }
    for (var k = 0; k < paths.Length; k++)
        results.Add(new { measure = "throughput", path = paths[k].Name, concurrency = conc, seconds = Math.Round(spent[k], 2), requests = done[k], failed = failed[k], rps = Math.Round(done[k] / spent[k]) });
    foreach (var r in results) Console.WriteLine(JsonSerializer.Serialize(r));
    await app.StopAsync();
    return 0;
}

async Task<int> SessionsAsync()
{
    var count = int.Parse(a["count"], CultureInfo.InvariantCulture);
    var sources = a.GetValueOrDefault("sources", "127.0.0.1").Split(',').Select(IPAddress.Parse).ToArray();
    var pid = int.Parse(a["pid"], CultureInfo.InvariantCulture);
    var hub = new Uri(a["hub"]);
    using var http = new HttpClient();
    var before = Rss(pid);
    var beforeStatus = await http.GetStringAsync(a["status"], total.Token);
    var invokers = sources.Select(src => new HttpMessageInvoker(new SocketsHttpHandler
    {
        UseProxy = false,
        ConnectCallback = async (ctx, ct) =>
        {
            var s = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            s.Bind(new IPEndPoint(src, 0));
            await s.ConnectAsync(ctx.DnsEndPoint, ct);
            return new NetworkStream(s, ownsSocket: true);
        },
    })).ToArray();
    var sockets = new ClientWebSocket[count];
    var sw = Stopwatch.StartNew();
    var opened = 0;
    var failures = 0;
    string? lastError = null;
    using var gate = new SemaphoreSlim(64);
    await Task.WhenAll(Enumerable.Range(0, count).Select(async i =>
    {
        await gate.WaitAsync(total.Token);
        try
        {
            var node = a.GetValueOrDefault("prefix", "load-") + i.ToString(CultureInfo.InvariantCulture);
            var ws = new ClientWebSocket();
            ws.Options.KeepAliveInterval = TimeSpan.Zero;
            ws.Options.SetRequestHeader("node_id", node);
            ws.Options.SetRequestHeader("Authorization", "Bearer " + Token(node));
            await ws.ConnectAsync(hub, invokers[i % invokers.Length], total.Token);
            // the welcome message proves the session is recorded and ready
            var buf = new byte[4096];
            await ws.ReceiveAsync(buf, total.Token);
            sockets[i] = ws;
            Interlocked.Increment(ref opened);
        }
        catch (Exception ex) when (ex is WebSocketException or HttpRequestException or IOException or SocketException)
        {
            Interlocked.Increment(ref failures);
            lastError = ex.Message;
        }
        finally
        {
            gate.Release();
        }
    }));
    var openTime = sw.Elapsed;
    var status = JsonDocument.Parse(await http.GetStringAsync(a["status"], total.Token)).RootElement;
    // Hold them for a while: the replica keeps sending keepalives; sessions must stay up.
    await Task.Delay(deadline, total.Token);
    var held = JsonDocument.Parse(await http.GetStringAsync(a["status"], total.Token)).RootElement.GetProperty("sessions").GetInt32();
    var after = Rss(pid);
    var mine = Rss(Environment.ProcessId);
    Console.WriteLine(JsonSerializer.Serialize(new
    {
        measure = "sessions", requested = count, opened, failures, lastError, open_seconds = Math.Round(openTime.TotalSeconds, 1),
        replica_sessions = status.GetProperty("sessions").GetInt32(), held_after_seconds = deadline.TotalSeconds, held,
        replica_rss_before_mib = Math.Round(before / 1048576.0, 1), replica_rss_after_mib = Math.Round(after / 1048576.0, 1),
        replica_bytes_per_session = opened > 0 ? (after - before) / opened : 0,
        loader_rss_mib = Math.Round(mine / 1048576.0, 1), sources = sources.Length, before_status_sessions = JsonDocument.Parse(beforeStatus).RootElement.GetProperty("sessions").GetInt32(),
    }));
    foreach (var s in sockets) s?.Abort();
    return opened == count ? 0 : 1;
}

static long Rss(int pid)
{
    foreach (var line in File.ReadLines($"/proc/{pid}/status"))
        if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
            return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) * 1024;
    return 0;
}

static double Pct(List<double> sorted, double p) => sorted.Count == 0 ? 0 : Math.Round(sorted[Math.Min(sorted.Count - 1, (int)(p * sorted.Count))], 3);

static Dictionary<string, string> ParseArgs(string[] args)
{
    var d = new Dictionary<string, string>(StringComparer.Ordinal);
    for (var i = 1; i + 1 < args.Length; i += 2)
    {
        if (!args[i].StartsWith("--", StringComparison.Ordinal)) throw new ArgumentException($"unexpected '{args[i]}'");
        d[args[i][2..]] = args[i + 1];
    }
    return d;
}
