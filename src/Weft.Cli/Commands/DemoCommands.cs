using System.Diagnostics;
using System.Net;
using System.Text.Json;
using Weft.Mesh.Proxy;

namespace Weft.Cli.Commands;

/// <summary>
/// Hidden commands for the lab, tests and benchmarks: `weft demo-app` serves the lab's demo service (printing
/// "listening URL", "tcp-echo IP:PORT", "udp-echo IP:PORT", then "ready"), `weft demo-call`
/// calls it (directly or through the service proxy) and prints one JSON object with what it measured and checked.
/// </summary>
public static class DemoCommands
{
    public const string AppUsage = "weft demo-app --name NODE --listen IP:PORT [--tcp-echo IP:PORT] [--udp-echo IP:PORT]";

    public const string CallUsage = """
        weft demo-call get URL [--count N] [--warmup N] [--new-connection]
        weft demo-call bytes URL --size BYTES [--count N] [--new-connection]
        weft demo-call echo URL [--size BYTES]
        weft demo-call tcp-echo IP:PORT [--size BYTES] [--count N]
        weft demo-call udp-echo IP:PORT [--queries N] [--stream N] [--window N]
        weft demo-call session IP:PORT [--seconds N] [--interval MS] [--size BYTES] [--timeout MS]
                                   (one TCP connection to an echo port, a message every MS, each echo timed and checked)
        """;

    /// <summary>Most requests, transfers or datagrams one call makes.</summary>
    public const int MaxCount = 1_000_000;

    /// <summary>Longest one request or transfer may take.</summary>
    public static readonly TimeSpan RequestTimeout = TimeSpan.FromMinutes(2);

    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    public static Task<int> RunAsync(string[] args, CancellationToken ct) => args[0] == "demo-app" ? AppAsync(args[1..], ct) : CallAsync(args[1..], ct);

    private static IPEndPoint Endpoint(Args a, string option, string usage)
    {
        var text = a.Get(option);
        if (text is null || !IPEndPoint.TryParse(text, out var ep) || ep.Port is < 0 or > 65535)
            throw new UsageException($"{option} must be IP:PORT, got '{text}'\nusage: {usage}");
        return ep;
    }

    public static async Task<int> AppAsync(string[] argv, CancellationToken ct)
    {
        var a = Args.Parse(argv, AppUsage, ["--name", "--listen", "--tcp-echo", "--udp-echo"]);
        if (a.Positionals.Count > 0) throw new UsageException($"unexpected argument '{a.Positionals[0]}'\nusage: {AppUsage}");
        var name = a.Get("--name") ?? throw new UsageException($"--name is required\nusage: {AppUsage}");
        var options = new DemoAppOptions(name, Endpoint(a, "--listen", AppUsage))
        {
            TcpEcho = a.Get("--tcp-echo") is null ? null : Endpoint(a, "--tcp-echo", AppUsage),
            UdpEcho = a.Get("--udp-echo") is null ? null : Endpoint(a, "--udp-echo", AppUsage),
        };
        var output = new LineWriter();
        await using var app = await DemoApp.StartAsync(options, ct).ConfigureAwait(false);
        output.Write($"listening {app.HttpUrl.ToString().TrimEnd('/')}");
        if (app.TcpEcho is { } te) output.Write($"tcp-echo {te}");
        if (app.UdpEcho is { } ue) output.Write($"udp-echo {ue}");
        output.Write("ready");
        try { await Task.Delay(Timeout.Infinite, ct).ConfigureAwait(false); }
        catch (OperationCanceledException) { }
        return WeftCli.ExitOk;
    }

    public static async Task<int> CallAsync(string[] argv, CancellationToken ct)
    {
        var a = Args.Parse(argv, CallUsage, ["--count", "--warmup", "--size", "--queries", "--stream", "--window", "--seconds", "--interval", "--timeout"], ["--new-connection"]);
        if (a.Positionals.Count != 2) throw new UsageException($"expected a mode and a target\nusage: {CallUsage}");
        var (mode, target) = (a.Positionals[0], a.Positionals[1]);
        var result = mode switch
        {
            "get" => await GetAsync(Url(target), a.GetInt("--count", 1, 1, MaxCount), a.GetInt("--warmup", 0, 0, MaxCount), a.Has("--new-connection"), ct).ConfigureAwait(false),
            "bytes" => await BytesAsync(Url(target), a.GetBytes("--size", 1 << 20), a.GetInt("--count", 1, 1, MaxCount), a.Has("--new-connection"), ct).ConfigureAwait(false),
            "echo" => await EchoAsync(Url(target), (int)Math.Min(a.GetBytes("--size", 1 << 16), DemoApp.MaxEchoBody), ct).ConfigureAwait(false),
            "tcp-echo" => await TcpEchoAsync(Target(target), (int)Math.Min(a.GetBytes("--size", 1 << 20), 1L << 30), a.GetInt("--count", 1, 1, MaxCount), ct).ConfigureAwait(false),
            "udp-echo" => await UdpEchoAsync(Target(target), a.GetInt("--queries", 10, 0, MaxCount), a.GetInt("--stream", 0, 0, MaxCount), a.GetInt("--window", 64, 1, 65536), ct).ConfigureAwait(false),
            "session" => await SessionAsync(Target(target), TimeSpan.FromSeconds(a.GetInt("--seconds", 10, 1, 86_400)), TimeSpan.FromMilliseconds(a.GetInt("--interval", 20, 0, 60_000)),
                (int)Math.Clamp(a.GetBytes("--size", 64), 8, 1 << 20), TimeSpan.FromMilliseconds(a.GetInt("--timeout", 30_000, 1, 600_000)), ct).ConfigureAwait(false),
            _ => throw new UsageException($"unknown mode '{mode}'\nusage: {CallUsage}"),
        };
        Console.WriteLine(JsonSerializer.Serialize(result.Fields, Json));
        return result.Ok ? WeftCli.ExitOk : WeftCli.ExitFailed;
    }

    private sealed record Outcome(bool Ok, Dictionary<string, object?> Fields);

    private static Uri Url(string s) =>
        Uri.TryCreate(s.EndsWith('/') ? s : s + "/", UriKind.Absolute, out var u) && u.Scheme == "http" ? u : throw new UsageException($"'{s}' is not an http:// URL");

    private static IPEndPoint Target(string s) =>
        IPEndPoint.TryParse(s, out var ep) && ep.Port > 0 ? ep : throw new UsageException($"'{s}' is not IP:PORT");

    private static HttpClient Http(bool newConnection) =>
        new(new SocketsHttpHandler { PooledConnectionLifetime = newConnection ? TimeSpan.Zero : Timeout.InfiniteTimeSpan, UseProxy = false })
        {
            Timeout = RequestTimeout,
            DefaultRequestHeaders = { ConnectionClose = newConnection },
        };

    private static Dictionary<string, object?> Percentiles(List<double> ms)
    {
        ms.Sort();
        double? At(double q) => ms.Count == 0 ? null : Math.Round(ms[Math.Min(ms.Count - 1, (int)Math.Ceiling(q * ms.Count) - 1)], 3);
        return new() { ["p50Ms"] = At(0.50), ["p90Ms"] = At(0.90), ["p99Ms"] = At(0.99), ["maxMs"] = At(1.0) };
    }

    private static async Task<Outcome> GetAsync(Uri url, int count, int warmup, bool newConnection, CancellationToken ct)
    {
        using var http = Http(newConnection);
        var answers = new Dictionary<string, int>(StringComparer.Ordinal);
        var ms = new List<double>(count);
        var errors = new List<string>();
        for (var i = 0; i < warmup + count; i++)
        {
            var sw = Stopwatch.StartNew();
            try
            {
                var body = await http.GetStringAsync(url, ct).ConfigureAwait(false);
                if (i < warmup) continue;
                ms.Add(sw.Elapsed.TotalMilliseconds);
                answers[body] = answers.GetValueOrDefault(body) + 1;
            }
            catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException && !ct.IsCancellationRequested)
            {
                if (errors.Count < 5) errors.Add(ex.Message);
                if (i >= warmup) ms.Add(double.NaN);
            }
        }
        var failed = ms.Count(double.IsNaN);
        var fields = new Dictionary<string, object?> { ["mode"] = "get", ["url"] = url.ToString(), ["count"] = count, ["ok"] = count - failed, ["failed"] = failed, ["newConnection"] = newConnection, ["answers"] = answers, ["errors"] = errors };
        foreach (var (k, v) in Percentiles(ms.Where(x => !double.IsNaN(x)).ToList())) fields[k] = v;
        return new Outcome(failed == 0, fields);
    }

    private static async Task<Outcome> BytesAsync(Uri url, long size, int count, bool newConnection, CancellationToken ct)
    {
        if (size > DemoApp.MaxBytes) throw new UsageException($"--size may be at most {DemoApp.MaxBytes}");
        using var http = Http(newConnection);
        var seconds = new List<double>();
        var errors = new List<string>();
        var maxGap = 0.0;
        for (var i = 0; i < count; i++)
        {
            try
            {
                var r = await DemoClient.GetBytesAsync(http, url, size, ct).ConfigureAwait(false);
                seconds.Add(r.Seconds);
                maxGap = Math.Max(maxGap, r.MaxGapMs);
            }
            catch (Exception ex) when (ex is HttpRequestException or InvalidDataException or IOException or TaskCanceledException && !ct.IsCancellationRequested)
            {
                errors.Add(ex.Message);
            }
        }
        var ms = seconds.Select(s => s * 1000).ToList();
        var fields = new Dictionary<string, object?> { ["mode"] = "bytes", ["url"] = url.ToString(), ["bytes"] = size, ["count"] = count, ["ok"] = seconds.Count, ["failed"] = errors.Count, ["errors"] = errors };
        foreach (var (k, v) in Percentiles(ms)) fields[k] = v;
        fields["mibPerSecond"] = seconds.Count == 0 ? null : Math.Round(size / 1048576.0 / Median(seconds), 1);
        fields["maxGapMs"] = maxGap;
        return new Outcome(errors.Count == 0, fields);
    }

    private static async Task<Outcome> SessionAsync(IPEndPoint target, TimeSpan duration, TimeSpan interval, int size, TimeSpan timeout, CancellationToken ct)
    {
        var r = await DemoClient.SessionAsync(target, duration, interval, size, timeout, ct).ConfigureAwait(false);
        return new Outcome(r.Error is null, new()
        {
            ["mode"] = "session", ["target"] = target.ToString(), ["exchanges"] = r.Exchanges, ["corrupt"] = r.Corrupt,
            ["p50Ms"] = r.P50Ms, ["maxMs"] = r.MaxMs, ["seconds"] = r.Seconds, ["error"] = r.Error, ["ok"] = r.Error is null,
        });
    }

    private static double Median(List<double> v)
    {
        var s = v.Order().ToList();
        return s.Count % 2 == 1 ? s[s.Count / 2] : (s[s.Count / 2 - 1] + s[s.Count / 2]) / 2;
    }

    private static async Task<Outcome> EchoAsync(Uri url, int size, CancellationToken ct)
    {
        using var http = Http(newConnection: false);
        var body = new byte[size];
        Random.Shared.NextBytes(body);
        var sw = Stopwatch.StartNew();
        using var response = await http.PostAsync(new Uri(url, "echo"), new ByteArrayContent(body), ct).ConfigureAwait(false);
        var back = await response.Content.ReadAsByteArrayAsync(ct).ConfigureAwait(false);
        var ok = response.IsSuccessStatusCode && back.AsSpan().SequenceEqual(body);
        return new Outcome(ok, new() { ["mode"] = "echo", ["url"] = url.ToString(), ["bytes"] = size, ["status"] = (int)response.StatusCode, ["ok"] = ok, ["ms"] = Math.Round(sw.Elapsed.TotalMilliseconds, 3) });
    }

    private static async Task<Outcome> TcpEchoAsync(IPEndPoint target, int size, int count, CancellationToken ct)
    {
        var seconds = new List<double>();
        var errors = new List<string>();
        for (var i = 0; i < count; i++)
        {
            using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
            cts.CancelAfter(RequestTimeout);
            try { seconds.Add(await DemoClient.TcpEchoAsync(target, size, cts.Token).ConfigureAwait(false)); }
            catch (Exception ex) when (ex is System.Net.Sockets.SocketException or InvalidDataException or OperationCanceledException && !ct.IsCancellationRequested)
            {
                errors.Add(ex.Message);
            }
        }
        var fields = new Dictionary<string, object?> { ["mode"] = "tcp-echo", ["target"] = target.ToString(), ["bytes"] = size, ["count"] = count, ["ok"] = seconds.Count, ["failed"] = errors.Count, ["errors"] = errors.Take(5).ToList() };
        foreach (var (k, v) in Percentiles(seconds.Select(s => s * 1000).ToList())) fields[k] = v;
        fields["mibPerSecond"] = seconds.Count == 0 ? null : Math.Round(size / 1048576.0 / Median(seconds), 1);
        return new Outcome(errors.Count == 0, fields);
    }

    private static async Task<Outcome> UdpEchoAsync(IPEndPoint target, int queries, int stream, int window, CancellationToken ct)
    {
        int[] sizes = [0, 1, 100, 512, 1400, 9000, 65000, ProxyLimits.MaxDatagram];
        var (sent, answered) = await DemoClient.UdpQueriesAsync(target, queries, sizes, TimeSpan.FromSeconds(5), ct).ConfigureAwait(false);
        var fields = new Dictionary<string, object?> { ["mode"] = "udp-echo", ["target"] = target.ToString(), ["queries"] = sent, ["answered"] = answered };
        var ok = answered > 0 || sent == 0;
        if (stream > 0)
        {
            var r = await DemoClient.UdpStreamAsync(target, stream, window, ct).ConfigureAwait(false);
            fields["stream"] = r.Sent;
            fields["received"] = r.Received;
            fields["lost"] = r.Lost;
            fields["corrupt"] = r.Corrupt;
            fields["duplicates"] = r.Duplicates;
            fields["seconds"] = Math.Round(r.Seconds, 3);
            ok &= r.Corrupt == 0 && r.Duplicates == 0 && r.Received > 0;
        }
        fields["ok"] = ok;
        return new Outcome(ok, fields);
    }
}
