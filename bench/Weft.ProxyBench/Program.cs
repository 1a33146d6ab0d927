using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Weft.Lab;

// The service proxy benchmark (bench/proxy.sh): builds the NAT lab (LAN 2 behind a symmetric NAT, so traffic across
// the LANs goes through relay1), runs `weft agent` on relay1, lan1-a (proxy on), lan1-b and lan2-a, the demo app on
// lan1-b and lan2-a, and from lan1-a measures with `weft demo-call`, proxied and plain, taking turns:
//   same LAN:    lan1-a -> proxy -> tunnel -> lan1-b demo     vs  lan1-a -> 192.168.1.12:8080
//   across LANs: lan1-a -> proxy -> tunnel -> lan2-a demo     vs  lan1-a -> 10.250.0.12:18080 (a port forward on router2)
// Prints a markdown report and writes the raw results as JSON.

var inv = CultureInfo.InvariantCulture;
var opts = Options.Parse(args);
if (!NatLab.CanRun(out var why))
{
    Console.Error.WriteLine("weft-proxy-bench: needs root and network namespaces: " + why);
    return 2;
}
var dotnet = NatLab.FindExecutable("dotnet") ?? throw new InvalidOperationException("dotnet is not on PATH");
var iptables = NatLab.FindExecutable("iptables") ?? throw new InvalidOperationException("iptables is not installed");
var tc = NatLab.FindExecutable("tc");
string[] Weft(params string[] a) => [dotnet, opts.WeftDll, .. a];
void Say(string s) => Console.Error.WriteLine($"[proxy-bench {DateTime.Now:HH:mm:ss}] {s}");

var load0 = File.ReadAllText("/proc/loadavg").Split(' ')[0];
var dir = Directory.CreateTempSubdirectory("weft-proxy-bench-").FullName;
var running = new List<Process>();
await using var lab = await NatLab.CreateAsync(new LabOptions { Lan2Nat = NatMode.Symmetric });
try
{
    // Plain TCP across the NATs: a port forward on router2 to lan2-a's demo (lan1-a's traffic still leaves through router1's NAT).
    var wan = lab.Prefix + "w";
    await Check("router2", [iptables, "-w", "-t", "nat", "-A", "PREROUTING", "-i", wan, "-p", "tcp", "--dport", "18080", "-j", "DNAT", "--to-destination", "192.168.2.21:8080"]);
    await Check("router2", [iptables, "-w", "-A", "FORWARD", "-i", wan, "-p", "tcp", "-d", "192.168.2.21", "--dport", "8080", "-m", "conntrack", "--ctstate", "DNAT", "-j", "ACCEPT"]);

    var psk = Path.Combine(dir, "psk");
    await File.WriteAllTextAsync(psk, "proxy-bench-" + Guid.NewGuid().ToString("N"));
    var services = Path.Combine(dir, "services.yaml");
    await File.WriteAllTextAsync(services, """
        services:
        - name: demo-lan1
          ports: [{name: http, port: 80, targetPort: 8080}]
          endpoints: [{nodeName: lan1-b, ip: 192.168.1.12}]
        - name: demo-lan2
          ports: [{name: http, port: 80, targetPort: 8080}]
          endpoints: [{nodeName: lan2-a, ip: 192.168.2.21}]
        """);

    foreach (var (node, ip) in new[] { ("lan1-b", "192.168.1.12"), ("lan2-a", "192.168.2.21") })
        await StartAsync(node, Weft("demo-app", "--name", node, "--listen", ip + ":8080"), "ready");
    await Task.WhenAll(((string[])["relay1", "lan1-a", "lan1-b", "lan2-a"]).Select(node =>
    {
        var yaml = new StringBuilder();
        yaml.AppendLine("modules:");
        yaml.AppendLine("  edgeTunnel:");
        yaml.AppendLine(inv, $"    nodeName: {node}");
        yaml.AppendLine(inv, $"    psk: {{enable: true, path: {psk}}}");
        yaml.AppendLine("    identity: {mode: legacy}");
        yaml.AppendLine("    relayNodes: [{nodeName: relay1, advertiseAddress: [10.250.0.1]}]");
        if (node == "lan1-a") yaml.AppendLine(inv, $"  edgeProxy: {{enable: true, servicesFile: {services}}}");
        var config = Path.Combine(dir, node + ".yaml");
        File.WriteAllText(config, yaml.ToString());
        return StartAsync(node, Weft("agent", "--config", config), "ready");
    }));

    // Ready: services listening, relays reserved; then warm the paths and wait for lan1-b's path to turn direct (hole punch).
    var status = await WaitStatusAsync(s => s["services"]!.AsArray().All(x => x!["ports"]!.AsArray().All(p => (bool)p!["listening"]!))
        && s["relays"]!.AsArray().Any(r => (bool)r!["reserved"]!), "services listening and relay1 reserved");
    string Url(JsonNode s, string name) => (string)s["services"]!.AsArray().Single(x => (string)x!["name"]! == name)!["url"]!;
    var proxiedLan1 = Url(status, "demo-lan1");
    var proxiedLan2 = Url(status, "demo-lan2");
    await WarmAsync(proxiedLan1);
    await WarmAsync(proxiedLan2);
    status = await WaitStatusAsync(s => PathTo(s, "lan1-b") == "direct", "a direct path to lan1-b", TimeSpan.FromSeconds(60));
    var paths = $"lan1-a -> lan1-b: {PathTo(status, "lan1-b")}, lan1-a -> lan2-a: {PathTo(status, "lan2-a")}";
    Say(paths);

    var pairs = new (string Name, string Proxied, string Direct)[]
    {
        ("same LAN (lan1-a -> lan1-b)", proxiedLan1, "http://192.168.1.12:8080/"),
        ("across LANs (lan1-a -> lan2-a)", proxiedLan2, "http://10.250.0.12:18080/"),
    };
    var report = new StringBuilder();
    var raw = new JsonObject { ["paths"] = paths, ["loadStart"] = load0, ["options"] = JsonSerializer.SerializeToNode(opts) };
    await PassAsync("unshaped (veth, CPU-bound)", pairs, report, raw);
    if (opts.Shape is { } rate)
    {
        if (tc is null) throw new InvalidOperationException("tc is not installed; run without --shape");
        // Every host's egress at the given rate (a 1 Gbit/s LAN as in EdgeMesh issue #551), relay1 too.
        foreach (var node in (string[])["lan1-a", "lan1-b", "lan2-a", "relay1"])
            await Check(node, [tc, "qdisc", "add", "dev", lab.Prefix + "e", "root", "tbf", "rate", rate, "burst", "512kb", "latency", "20ms"]);
        await PassAsync($"shaped: every host's link at {rate}", pairs, report, raw);
    }
    var load1 = File.ReadAllText("/proc/loadavg").Split(' ')[0];
    raw["loadEnd"] = load1;
    Console.WriteLine($"Paths: {paths}. Load average (1 min) at start {load0}, at end {load1}.\n");
    Console.WriteLine(report.ToString());
    if (opts.Out is { } outFile) await File.WriteAllTextAsync(outFile, raw.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    return 0;
}
finally
{
    foreach (var p in running)
    {
        try { p.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
        p.Dispose();
    }
    Directory.Delete(dir, recursive: true);
}

async Task Check(string node, string[] argv)
{
    var (code, _, err) = await lab.ExecAsync(node, argv, TimeSpan.FromSeconds(30));
    if (code != 0) throw new InvalidOperationException($"{node}: {string.Join(' ', argv)} exited {code}: {err}");
}

async Task StartAsync(string node, string[] argv, string readyLine)
{
    var p = lab.Start(node, argv);
    running.Add(p);
    var ready = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
    var output = new StringBuilder();
    p.OutputDataReceived += (_, e) =>
    {
        if (e.Data is null) return;
        lock (output) output.AppendLine(e.Data);
        if (e.Data == readyLine) ready.TrySetResult();
    };
    p.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (output) output.AppendLine(e.Data); };
    p.BeginOutputReadLine();
    p.BeginErrorReadLine();
    try { await ready.Task.WaitAsync(TimeSpan.FromSeconds(60)); }
    catch (TimeoutException) { throw new TimeoutException($"{node}: {string.Join(' ', argv)} did not get ready:\n{output}"); }
}

async Task<JsonNode> WaitStatusAsync(Func<JsonNode, bool> condition, string what, TimeSpan? deadline = null)
{
    var until = DateTime.UtcNow + (deadline ?? TimeSpan.FromSeconds(60));
    while (true)
    {
        var (code, stdout, err) = await lab.ExecAsync("lan1-a", Weft("status", "--json"), TimeSpan.FromSeconds(30));
        var s = code == 0 ? JsonNode.Parse(stdout) : null;
        if (s is not null && condition(s)) return s;
        if (DateTime.UtcNow > until) throw new TimeoutException($"{what} did not happen: {stdout}{err}");
        await Task.Delay(500);
    }
}

static string? PathTo(JsonNode status, string node) =>
    status["peers"]!.AsArray().FirstOrDefault(p => (string?)p!["name"] == node) is { } p ? (string?)p["kind"] + ((string?)p["via"] is { } v ? " via " + v : "") : null;

// Opens the path to the endpoint (the first dial to a node may fail or be slow); retried for up to a minute.
async Task WarmAsync(string url)
{
    var until = DateTime.UtcNow + TimeSpan.FromSeconds(60);
    while (true)
    {
        var (code, stdout, err) = await lab.ExecAsync("lan1-a", Weft("demo-call", "get", url, "--count", "20"), TimeSpan.FromMinutes(2));
        if (code == 0) return;
        Say($"warm-up of {url} failed, trying again: {stdout.Trim()} {err.Trim()}");
        if (DateTime.UtcNow > until) throw new InvalidOperationException($"{url} did not answer within a minute: {stdout}{err}");
    }
}

async Task<JsonNode> CallAsync(params string[] a)
{
    var (code, stdout, err) = await lab.ExecAsync("lan1-a", Weft(["demo-call", .. a]), TimeSpan.FromMinutes(10));
    if (code != 0) throw new InvalidOperationException($"demo-call {string.Join(' ', a)} exited {code}: {stdout}{err}");
    Say($"demo-call {string.Join(' ', a)}: {stdout.Trim()}");
    return JsonNode.Parse(stdout)!;
}

async Task PassAsync(string title, (string Name, string Proxied, string Direct)[] pairs, StringBuilder report, JsonObject raw)
{
    var measures = new (string Name, string Unit, string Field, bool HigherIsBetter, string[] Args)[]
    {
        ("HTTP GET /, keep-alive, p50", "ms", "p50Ms", false, ["get", "{url}", "--count", opts.LatencyCount, "--warmup", "200"]),
        ("HTTP GET /, keep-alive, p99", "ms", "p99Ms", false, []),
        ("HTTP GET /, new connection each, p50", "ms", "p50Ms", false, ["get", "{url}", "--count", opts.ConnectionCount, "--warmup", "20", "--new-connection"]),
        ("HTTP GET /, new connection each, p99", "ms", "p99Ms", false, []),
        ("4 MiB transfer (GET /bytes, new connection), p50", "ms", "p50Ms", false, ["bytes", "{url}", "--size", "4MiB", "--count", opts.TransferCount, "--new-connection"]),
        ($"bulk TCP throughput (GET /bytes/{opts.BulkBytes}, median of {opts.BulkCount})", "MiB/s", "mibPerSecond", true, ["bytes", "{url}", "--size", opts.BulkBytes, "--count", opts.BulkCount]),
    };
    var section = new JsonObject();
    raw[title] = section;
    report.AppendLine(inv, $"### {title}\n");
    report.AppendLine("| measure | path | proxied | plain TCP | proxied / plain (time) |");
    report.AppendLine("|---|---|---:|---:|---:|");
    for (var m = 0; m < measures.Length; m++)
    {
        var measure = measures[m];
        foreach (var pair in pairs)
        {
            // A measure with no args reads another field of the previous measure's runs.
            List<JsonNode> proxied = [], direct = [];
            if (measure.Args.Length == 0)
            {
                proxied = ((JsonArray)section[pair.Name + "|" + measures[m - 1].Name + "|proxied"]!).Select(x => x!).ToList();
                direct = ((JsonArray)section[pair.Name + "|" + measures[m - 1].Name + "|direct"]!).Select(x => x!).ToList();
            }
            else
            {
                for (var r = 0; r < opts.Rounds; r++)
                {
                    proxied.Add(await CallAsync(measure.Args.Select(x => x == "{url}" ? pair.Proxied : x).ToArray()));
                    direct.Add(await CallAsync(measure.Args.Select(x => x == "{url}" ? pair.Direct : x).ToArray()));
                }
                section[pair.Name + "|" + measure.Name + "|proxied"] = new JsonArray(proxied.Select(x => x.DeepClone()).ToArray());
                section[pair.Name + "|" + measure.Name + "|direct"] = new JsonArray(direct.Select(x => x.DeepClone()).ToArray());
            }
            var p = Median(proxied.Select(x => (double)x[measure.Field]!));
            var d = Median(direct.Select(x => (double)x[measure.Field]!));
            var ratio = measure.HigherIsBetter ? d / p : p / d;
            report.AppendLine(inv, $"| {measure.Name} | {pair.Name} | {p:0.###} {measure.Unit} | {d:0.###} {measure.Unit} | **{ratio:0.00}×** |");
        }
    }
    report.AppendLine();
}

static double Median(IEnumerable<double> values)
{
    var v = values.Order().ToList();
    return v.Count == 0 ? double.NaN : v.Count % 2 == 1 ? v[v.Count / 2] : (v[v.Count / 2 - 1] + v[v.Count / 2]) / 2;
}

internal sealed record Options(string WeftDll, int Rounds, string LatencyCount, string ConnectionCount, string TransferCount, string BulkBytes, string BulkCount, string? Shape, string? Out)
{
    public static Options Parse(string[] args)
    {
        string? Get(string name, string? fallback)
        {
            var i = Array.IndexOf(args, name);
            return i >= 0 && i + 1 < args.Length ? args[i + 1] : fallback;
        }
        var weft = Get("--weft", null) ?? throw new ArgumentException("usage: weft-proxy-bench --weft PATH/weft.dll [--rounds N] [--latency-count N] [--connection-count N] [--transfer-count N] [--bulk-bytes B] [--bulk-count N] [--shape RATE] [--out FILE]");
        return new Options(Path.GetFullPath(weft), int.Parse(Get("--rounds", "2")!, CultureInfo.InvariantCulture),
            Get("--latency-count", "2000")!, Get("--connection-count", "300")!, Get("--transfer-count", "40")!,
            Get("--bulk-bytes", "256MiB")!, Get("--bulk-count", "3")!, Get("--shape", null), Get("--out", null));
    }
}
