using System.Globalization;
using System.Text;
using System.Text.Json;
using Weft.Lab;
using Weft.Lab.Tests;

// weft-labbench failover [--trials N] [--out FILE]
// One NAT lab (symmetric NAT in front of LAN 2, hole punching off, so traffic stays relayed): relays relay1 and relay2,
// lan1-a pinging lan2-a on a new stream every 20 ms. Each trial fails the relay in use — by SIGKILL of its process
// (the kernel closes its sockets) and, in a second series, by taking its link down (it vanishes without a packet) —
// and measures the time to the first successful new stream through the other relay; the relay is then restored and
// both nodes hold reservations on both relays again before the next trial.

// weft-labbench resume [--trials N] [--rounds N] [--out FILE]: see ResumeBench.cs (--trials 0: the cost part only).

if (args.Length == 0 || args[0] is not ("failover" or "resume"))
{
    Console.Error.WriteLine("usage: weft-labbench failover|resume [--trials N] [--rounds N] [--out FILE]");
    return 2;
}
var trials = 20;
var rounds = 3;
string? outFile = null;
for (var i = 1; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--trials" when i + 1 < args.Length && int.TryParse(args[i + 1], CultureInfo.InvariantCulture, out var t) && t is >= 0 and <= 200 && (t > 0 || args[0] == "resume"):
            trials = t;
            i++;
            break;
        case "--rounds" when args[0] == "resume" && i + 1 < args.Length && int.TryParse(args[i + 1], CultureInfo.InvariantCulture, out var r) && r is > 0 and <= 50:
            rounds = r;
            i++;
            break;
        case "--out" when i + 1 < args.Length:
            outFile = args[++i];
            break;
        default:
            Console.Error.WriteLine($"bad argument {args[i]}; usage: weft-labbench failover [--trials N (1..200)] | resume [--trials N (0..200)] [--rounds N (1..50)] [--out FILE]");
            return 2;
    }
}
if (!NatLab.CanRun(out var why))
{
    Console.Error.WriteLine($"the {args[0]} bench needs the NAT lab: {why}");
    return 1;
}
if (args[0] == "resume") return await Weft.LabBench.ResumeBench.RunAsync(trials, rounds, outFile);

(string, string)[] relays = [("relay1", "10.250.0.1"), ("relay2", "10.250.0.2")];
const string Extra = "holePunching: false";
await using var lab = await NatLab.CreateAsync(new LabOptions { ExtraPublicNodes = ["relay2"], Lan2Nat = NatMode.Symmetric });
await using var agents = new LabAgents(lab);
await Task.WhenAll(((string[])["relay1", "relay2", "lan1-a", "lan2-a"]).Select(n => agents.StartAsync(n, agents.Yaml(n, relays, Extra))));

async Task AllReservedAsync()
{
    foreach (var n in (string[])["lan1-a", "lan2-a"])
        await agents.WaitStatusAsync(n, s => LabAgents.RelayReserved(s, "relay1") && LabAgents.RelayReserved(s, "relay2"), "reservations on both relays", TimeSpan.FromSeconds(60));
}

async Task<string> RelayInUseAsync()
{
    var p = (await agents.PingAsync("lan1-a", "lan2-a")).Single();
    if (!p.Ok || p.Via is null) throw new InvalidOperationException($"lan1-a cannot reach lan2-a through a relay: {p.Error}");
    return p.Via;
}

var results = new Dictionary<string, List<double>> { ["kill"] = [], ["silent"] = [] };
var failedStreams = new Dictionary<string, int> { ["kill"] = 0, ["silent"] = 0 };
foreach (var kind in (string[])["kill", "silent"])
{
    for (var trial = 1; trial <= trials; trial++)
    {
        await AllReservedAsync();
        var relay = await RelayInUseAsync();
        var f = await agents.MeasureFailoverAsync("lan1-a", "lan2-a", kind == "kill"
            ? () => agents.KillAsync(relay)
            : async () =>
            {
                await lab.SetLinkAsync(relay, up: false);
                return DateTimeOffset.UtcNow;
            });
        results[kind].Add(f.Gap.TotalMilliseconds);
        if (Environment.GetEnvironmentVariable("BENCH_VERBOSE") == "1")
        {
            var all = LabAgents.Parse(f.Output);
            var firstAfter = all.IndexOf(f.After[0]);
            foreach (var r in all.Skip(Math.Max(0, firstAfter - 3)).Take(3 + f.After.ToList().IndexOf(f.FirstOk) + 1))
                Console.Error.WriteLine($"    {r.Seq} ok={r.Ok} started={r.Started:HH:mm:ss.fff} done={r.Utc:HH:mm:ss.fff} open={r.OpenMs:0.0} via={r.Via} {r.Error}");
            var from = f.FirstOk.Started.AddMilliseconds(-50);
            foreach (var line in agents["lan1-a"].Stderr.Split('\n'))
                if (line.Length > 12 && TimeSpan.TryParse(line[..12], CultureInfo.InvariantCulture, out var t) && t >= from.TimeOfDay && t <= f.FirstOk.Utc.TimeOfDay)
                    Console.Error.WriteLine("      lan1-a: " + line);
        }
        failedStreams[kind] += f.FailedAfter.Count;
        Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"[failover] {kind} {relay} trial {trial}/{trials}: {f.Gap.TotalMilliseconds:0} ms to the first new stream via {f.FirstOk.Via}; {f.FailedAfter.Count} failed before it"));
        if (kind == "kill") await agents.StartAsync(relay, agents.Yaml(relay, relays, Extra));
        else await lab.SetLinkAsync(relay, up: true);
    }
}

static double Pct(List<double> v, double p)
{
    var s = v.Order().ToList();
    return s[Math.Clamp((int)Math.Ceiling(p / 100 * s.Count) - 1, 0, s.Count - 1)];
}

var md = new StringBuilder();
md.AppendLine(CultureInfo.InvariantCulture, $"# Relay failover ({DateTime.UtcNow:yyyy-MM-ddTHH:mmZ}, {Environment.ProcessorCount} cores, {trials} trials each)");
md.AppendLine();
md.AppendLine("Command: `bench/failover.sh`. NAT lab, lan1-a → lan2-a relayed (symmetric NAT on LAN 2, hole punching off), a new stream every 20 ms.");
md.AppendLine("Gap = the relay in use fails → the first successful new stream opened after that (through the other relay).");
md.AppendLine();
md.AppendLine("| failure | p50 ms | p90 ms | max ms | min ms | new streams failed in all trials |");
md.AppendLine("|---|---:|---:|---:|---:|---:|");
foreach (var (kind, v) in results)
{
    var label = kind == "kill" ? "relay process killed (SIGKILL)" : "relay host vanishes (link down, no FIN/RST)";
    md.AppendLine(CultureInfo.InvariantCulture, $"| {label} | {Pct(v, 50):0} | {Pct(v, 90):0} | {v.Max():0} | {v.Min():0} | {failedStreams[kind]} |");
}
md.AppendLine();
md.AppendLine(CultureInfo.InvariantCulture, $"Goal: p50 ≤ 1000 ms. Kill: {(Pct(results["kill"], 50) <= 1000 ? "met" : "NOT met")}; silent: {(Pct(results["silent"], 50) <= 1000 ? "met" : "NOT met")}.");
Console.WriteLine(md.ToString());
Console.WriteLine("RESULT " + JsonSerializer.Serialize(results.ToDictionary(kv => kv.Key, kv => new
{
    p50 = Pct(kv.Value, 50), p90 = Pct(kv.Value, 90), max = kv.Value.Max(), min = kv.Value.Min(), samples = kv.Value, failedStreams = failedStreams[kv.Key],
})));
if (outFile is not null) await File.WriteAllTextAsync(outFile, md.ToString());
return 0;
