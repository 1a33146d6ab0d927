using System.Globalization;
using System.Text;
using System.Text.Json;
using Weft.Lab;
using Weft.Lab.Tests;

namespace Weft.LabBench;

/// <summary>
/// weft-labbench resume: the resumable tunnel's two figures (issue 8), in one NAT lab.
/// <list type="number">
/// <item>Stall: lan1-a's application (`weft demo-call session`: a 64-byte message echoed every 10 ms through the proxy,
/// each echo timed) talks to lan2-a across the symmetric NAT, relayed; the relay in use is killed (SIGKILL), and in a
/// second series vanishes (link down). The stall is the session's longest echo; the relay is restored between trials.</item>
/// <item>Cost: 256 MiB downloads through lan1-a's proxy, with the resumable tunnel and with the plain one (lan1-a
/// restarted with <c>resume: {enable: false}</c>), on the relayed path to lan2-a and on the direct LAN path to lan1-b,
/// alternating modes over three rounds (--rounds), after a warm-up round that is not counted.</item>
/// </list>
/// </summary>
internal static class ResumeBench
{
    private static readonly (string, string)[] Relays = [("relay1", "10.250.0.1"), ("relay2", "10.250.0.2")];
    private const long Download = 256L << 20;

    private const string Services = """
        services:
        - name: far
          ports:
          - {name: http, port: 80, targetPort: 8080}
          - {name: echo, port: 7, targetPort: 7007}
          endpoints:
          - {nodeName: lan2-a, ip: 192.168.2.21}
        - name: near
          ports:
          - {name: http, port: 80, targetPort: 8080}
          endpoints:
          - {nodeName: lan1-b, ip: 192.168.1.12}
        """;

    public static async Task<int> RunAsync(int trials, int rounds, string? outFile)
    {
        var dir = Directory.CreateTempSubdirectory("weft-resume-bench-").FullName;
        var services = Path.Combine(dir, "services.yaml");
        await File.WriteAllTextAsync(services, Services);
        await using var lab = await NatLab.CreateAsync(new LabOptions { ExtraPublicNodes = ["relay2"], Lan2Nat = NatMode.Symmetric });
        await using var agents = new LabAgents(lab);
        var apps = new List<LabWeft>();
        try
        {
            foreach (var (node, ip) in new[] { ("lan2-a", "192.168.2.21"), ("lan1-b", "192.168.1.12") })
            {
                var app = LabWeft.Start(lab, node, "demo-app", "--name", node, "--listen", ip + ":8080", "--tcp-echo", ip + ":7007");
                apps.Add(app);
                await app.WaitLine("ready");
            }
            string Yaml(string node, bool resume = true)
            {
                var extra = "holePunching: false" + (resume ? "" : "\nresume: {enable: false}");
                var yaml = agents.Yaml(node, Relays, extra);
                return node == "lan1-a" ? yaml + $"  edgeProxy:\n    enable: true\n    servicesFile: {services}\n" : yaml;
            }
            await Task.WhenAll(((string[])["relay1", "relay2", "lan1-a", "lan2-a", "lan1-b"]).Select(n => agents.StartAsync(n, Yaml(n))));

            async Task AllReservedAsync()
            {
                foreach (var n in (string[])["lan1-a", "lan2-a"])
                    await agents.WaitStatusAsync(n, s => Relays.All(r => LabAgents.RelayReserved(s, r.Item1)), "reservations on both relays", TimeSpan.FromSeconds(60));
            }
            async Task<(string Far, string Echo, string Near)> UrlsAsync()
            {
                var s = await agents.WaitStatusAsync("lan1-a", st => st.GetProperty("services").GetArrayLength() == 2
                    && st.GetProperty("services").EnumerateArray().All(v => v.GetProperty("url").ValueKind == JsonValueKind.String), "both services listening");
                var far = s.GetProperty("services").EnumerateArray().Single(v => v.GetProperty("name").GetString() == "far");
                var near = s.GetProperty("services").EnumerateArray().Single(v => v.GetProperty("name").GetString() == "near");
                return (far.GetProperty("url").GetString()!, far.GetProperty("address").GetString()! + ":7", near.GetProperty("url").GetString()!);
            }
            static int Active(JsonElement s) => s.GetProperty("services").EnumerateArray().Single(v => v.GetProperty("name").GetString() == "far")
                .GetProperty("ports").EnumerateArray().Sum(p => p.GetProperty("activeConnections").GetInt32());
            async Task<JsonElement> CallAsync(params string[] args)
            {
                await using var call = LabWeft.Start(lab, "lan1-a", ["demo-call", .. args]);
                await call.WaitExit(TimeSpan.FromMinutes(3));
                return JsonDocument.Parse(call.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Last()).RootElement.Clone();
            }

            await AllReservedAsync();
            var urls = await UrlsAsync();

            // 1. Stall.
            var stalls = new Dictionary<string, List<double>> { ["kill"] = [], ["silent"] = [] };
            var broken = new Dictionary<string, int> { ["kill"] = 0, ["silent"] = 0 };
            foreach (var kind in (string[])["kill", "silent"])
            {
                for (var trial = 1; trial <= trials; trial++)
                {
                    await AllReservedAsync();
                    var ping = (await agents.PingAsync("lan1-a", "lan2-a", timeoutMs: 10_000)).Single();
                    var relay = ping.Via ?? throw new InvalidOperationException($"lan1-a does not reach lan2-a through a relay: {ping.Error}");
                    await using var session = LabWeft.Start(lab, "lan1-a", "demo-call", "session", urls.Echo, "--seconds", "6", "--interval", "10", "--size", "64");
                    await agents.WaitStatusAsync("lan1-a", s => Active(s) >= 1, "the session's connection");
                    if (kind == "kill") await agents.KillAsync(relay);
                    else await lab.SetLinkAsync(relay, up: false);
                    await session.WaitExit(TimeSpan.FromMinutes(1));
                    var r = JsonDocument.Parse(session.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Last()).RootElement;
                    var ok = r.GetProperty("ok").GetBoolean();
                    if (ok) stalls[kind].Add(r.GetProperty("maxMs").GetDouble());
                    else broken[kind]++;
                    Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"[resume] {kind} {relay} trial {trial}/{trials}: {(ok ? $"longest echo {r.GetProperty("maxMs").GetDouble():0} ms over {r.GetProperty("exchanges").GetInt32()} exchanges" : "BROKEN: " + r.GetProperty("error"))}"));
                    if (kind == "kill") await agents.StartAsync(relay, Yaml(relay));
                    else await lab.SetLinkAsync(relay, up: true);
                }
            }

            // 2. Cost: plain against resumable, alternating.
            var rates = new Dictionary<string, List<double>> { ["far resumable"] = [], ["far plain"] = [], ["near resumable"] = [], ["near plain"] = [] };
            // CPU seconds per GiB of the two agents at the ends (where the layer runs), from their process_cpu_seconds_total.
            var cpu = rates.Keys.ToDictionary(k => k, _ => new List<double>());
            async Task<double> CpuAsync(string node) => LabAgents.Sum(await agents.MetricsAsync(node), "process_cpu_seconds_total");
            // Round 0 warms up (JIT, pools, windows) the agents and apps that stay up; it is not counted.
            for (var round = 0; round <= rounds; round++)
            {
                foreach (var resumable in (bool[])[true, false])
                {
                    await agents.KillAsync("lan1-a");
                    await agents.StartAsync("lan1-a", Yaml("lan1-a", resumable));
                    await AllReservedAsync();
                    urls = await UrlsAsync();
                    foreach (var (path, url) in new[] { ("far", urls.Far), ("near", urls.Near) })
                    {
                        await CallAsync("get", url, "--count", "3"); // the path (and a hole punch, if any) first
                        var peer = path == "far" ? "lan2-a" : "lan1-b";
                        var cpuBefore = await CpuAsync("lan1-a") + await CpuAsync(peer);
                        var r = await CallAsync("bytes", url, "--size", Download.ToString(CultureInfo.InvariantCulture));
                        if (r.GetProperty("ok").GetInt32() != 1) throw new InvalidOperationException($"download failed: {r}");
                        var cpuPerGiB = (await CpuAsync("lan1-a") + await CpuAsync(peer) - cpuBefore) / ((double)Download / (1L << 30));
                        var mibs = r.GetProperty("mibPerSecond").GetDouble();
                        var key = $"{path} {(resumable ? "resumable" : "plain")}";
                        if (round > 0)
                        {
                            rates[key].Add(mibs);
                            cpu[key].Add(cpuPerGiB);
                        }
                        Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture, $"[resume] round {round} {key}: {mibs:0.0} MiB/s, agents' CPU {cpuPerGiB:0.00} s/GiB"));
                    }
                }
            }

            var md = new StringBuilder();
            md.AppendLine(CultureInfo.InvariantCulture, $"# Resumable tunnel ({DateTime.UtcNow:yyyy-MM-ddTHH:mmZ}, {Environment.ProcessorCount} cores, {trials} trials each)");
            md.AppendLine();
            md.AppendLine("Command: `bench/resume.sh`. NAT lab; lan1-a's proxy, `weft demo-call` as the application.");
            md.AppendLine();
            md.AppendLine("Stall: an interactive session (64 bytes echoed every 10 ms) to lan2-a across the symmetric NAT, relayed; the relay in use fails; stall = the longest echo the application waited for.");
            md.AppendLine();
            md.AppendLine("| failure | p50 ms | p90 ms | max ms | min ms | sessions broken |");
            md.AppendLine("|---|---:|---:|---:|---:|---:|");
            foreach (var (kind, v) in stalls)
            {
                var label = kind == "kill" ? "relay process killed (SIGKILL)" : "relay host vanishes (link down, no FIN/RST)";
                md.AppendLine(v.Count == 0 ? $"| {label} | - | - | - | - | {broken[kind]} |"
                    : string.Create(CultureInfo.InvariantCulture, $"| {label} | {Pct(v, 50):0} | {Pct(v, 90):0} | {v.Max():0} | {v.Min():0} | {broken[kind]} |"));
            }
            md.AppendLine();
            md.AppendLine(CultureInfo.InvariantCulture, $"Cost: 256 MiB downloads through the proxy, median of {rounds} rounds (modes alternating) after one warm-up round, MiB/s.");
            md.AppendLine();
            md.AppendLine("| path | plain tunnel | resumable | resumable / plain | agents' CPU s/GiB, plain | resumable | resumable / plain |");
            md.AppendLine("|---|---:|---:|---:|---:|---:|---:|");
            foreach (var path in (string[])["far", "near"])
            {
                var plain = Median(rates[$"{path} plain"]);
                var res = Median(rates[$"{path} resumable"]);
                var cpuPlain = Median(cpu[$"{path} plain"]);
                var cpuRes = Median(cpu[$"{path} resumable"]);
                var label = path == "far" ? "lan1-a → lan2-a, relayed" : "lan1-a → lan1-b, direct on the LAN";
                md.AppendLine(string.Create(CultureInfo.InvariantCulture, $"| {label} | {plain:0.0} | {res:0.0} | {res / plain:0.00} | {cpuPlain:0.00} | {cpuRes:0.00} | {cpuRes / cpuPlain:0.00} |"));
            }
            md.AppendLine();
            md.AppendLine("Agents' CPU: process_cpu_seconds_total of lan1-a's agent and the far end's agent (lan2-a or lan1-b), per GiB downloaded; the relay's CPU is not included.");
            Console.WriteLine(md.ToString());
            Console.WriteLine("RESULT " + JsonSerializer.Serialize(new { stalls, broken, rates, cpu }));
            if (outFile is not null) await File.WriteAllTextAsync(outFile, md.ToString());
            return 0;
        }
        finally
        {
            foreach (var a in apps) await a.DisposeAsync();
            Directory.Delete(dir, recursive: true);
        }
    }

    private static double Pct(List<double> v, double p)
    {
        var s = v.Order().ToList();
        return s[Math.Clamp((int)Math.Ceiling(p / 100 * s.Count) - 1, 0, s.Count - 1)];
    }

    private static double Median(List<double> v) => v.Count == 0 ? double.NaN : Pct(v, 50);
}
