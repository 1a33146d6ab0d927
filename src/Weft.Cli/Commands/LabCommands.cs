using System.Text.Json;
using System.Text.Json.Nodes;
using Weft.Lab;

namespace Weft.Cli.Commands;

/// <summary>`weft lab up | status | exec | chaos | down` (DESIGN.md §6).</summary>
public static class LabCommands
{
    public const string Usage = """
        weft lab up [--nat | --loopback]       build the lab (namespaces with NAT when root, else loopback) and leave it running
        weft lab status [--json]               nodes, their paths, services
        weft lab exec NODE -- CMD...           run a command in a node's network
        weft lab chaos ACTION TARGET           kill-relay|restore-relay relay1|relay2, kill-cloud|restore-cloud cloud-a|cloud-b,
                                               partition|heal lan1|lan2
        weft lab down                          remove everything the lab made
        """;

    /// <summary>How to run this very `weft` again (the apphost, or dotnet and weft.dll).</summary>
    private static IReadOnlyList<string> Self()
    {
        var path = Environment.ProcessPath ?? throw new InvalidOperationException("cannot tell where this weft is");
        return Path.GetFileNameWithoutExtension(path) == "dotnet" ? [path, typeof(LabCommands).Assembly.Location] : [path];
    }

    public static async Task<int> RunAsync(string[] argv, CancellationToken ct)
    {
        if (argv.Length == 0) throw new UsageException("expected a lab command\nusage:\n" + Usage);
        var runner = new LabRunner(Self(), Console.Error);
        var rest = argv[1..];
        switch (argv[0])
        {
            case "up":
            {
                var a = Args.Parse(rest, "weft lab up [--nat | --loopback]", [], ["--nat", "--loopback"]);
                if (a.Positionals.Count > 0) throw new UsageException($"unexpected argument '{a.Positionals[0]}'\nusage:\n{Usage}");
                if (a.Has("--nat") && a.Has("--loopback")) throw new UsageException("--nat and --loopback exclude each other");
                var state = await runner.UpAsync(a.Has("--nat"), ct, a.Has("--loopback")).ConfigureAwait(false);
                Console.WriteLine($"lab up ({state.Mode}); state and logs in {state.Dir}");
                var status = await runner.StatusAsync(ct).ConfigureAwait(false);
                var demo = status["services"]?.AsArray().FirstOrDefault()?["url"]?.GetValue<string>();
                var lb = status["cloud"]?["lb"]?.GetValue<string>();
                Console.WriteLine("try:");
                Console.WriteLine("  weft lab status");
                Console.WriteLine("  weft lab exec lan1-a -- weft ping lan2-a --count 3      (each ping a new tunnel stream, with its path)");
                Console.WriteLine("  weft lab exec lan1-a -- weft status");
                if (demo is not null) Console.WriteLine($"  weft lab exec lan1-a -- curl -s {demo}      (the demo service on the LAN 2 nodes, through lan1-a's proxy)");
                if (status["dns"]?.GetValue<string>() is { } dns && System.Net.IPEndPoint.TryParse(dns, out var dnsAt))
                    Console.WriteLine($"  weft lab exec lan1-a -- dig +short @{dnsAt.Address} -p {dnsAt.Port} demo.default.svc.cluster.local      (lan1-a's edge DNS: the demo service's address)");
                if (lb is not null) Console.WriteLine($"  weft lab exec relay1 -- curl -s {lb}/lan2-a/default/demo      (a cloud app's request: lb, any replica, the one that owns lan2-a)");
                Console.WriteLine("  weft lab chaos kill-relay relay1     (then ping again; restore-relay relay1 brings it back)");
                Console.WriteLine("  weft lab down");
                return WeftCli.ExitOk;
            }
            case "status":
            {
                var a = Args.Parse(rest, "weft lab status [--json]", [], ["--json"]);
                var status = await runner.StatusAsync(ct).ConfigureAwait(false);
                if (a.Has("--json"))
                {
                    Console.WriteLine(status.ToJsonString(new JsonSerializerOptions { WriteIndented = false }));
                    return WeftCli.ExitOk;
                }
                Console.WriteLine($"lab ({status["mode"]}), state in {status["dir"]}");
                foreach (var n in status["nodes"]!.AsArray())
                {
                    var paths = string.Join(", ", n!["paths"]!.AsObject().Select(kv =>
                        $"{kv.Key} {kv.Value?["kind"]}{(kv.Value?["via"] is JsonNode v ? " via " + v : "")}{(kv.Value?["rttMs"] is JsonNode r ? $" {r} ms" : "")}"));
                    Console.WriteLine($"  {n["name"],-8} {n["lan"],-5} {(n["relay"]!.GetValue<bool>() ? "relay" : "node"),-6} {(n["error"] is JsonNode e ? "error: " + e : paths)}");
                }
                foreach (var s in status["services"]!.AsArray()) Console.WriteLine($"  service {s!["name"]} {s["url"]} ({s["dnsName"]})");
                if (status["dns"] is JsonNode dnsNode) Console.WriteLine($"  edge DNS of lan1-a at {dnsNode}");
                if (status["cloud"] is JsonObject cloud)
                {
                    Console.WriteLine($"  cloud via lb {cloud["lb"]}");
                    foreach (var r in cloud["replicas"]!.AsArray())
                        Console.WriteLine($"    {r!["name"],-8} {r["router"]} {(r["error"] is JsonNode e ? "error: " + e : "owns " + r["owns"]?.ToJsonString())}");
                }
                return WeftCli.ExitOk;
            }
            case "exec":
            {
                var dash = Array.IndexOf(rest, "--");
                if (rest.Length < 3 || dash != 1) throw new UsageException("usage: weft lab exec NODE -- CMD...");
                return await LabRunner.ExecAsync(rest[0], rest[2..], ct).ConfigureAwait(false);
            }
            case "chaos":
            {
                if (rest.Length != 2) throw new UsageException("usage: weft lab chaos kill-relay|restore-relay relay1|relay2, kill-cloud|restore-cloud cloud-a|cloud-b, or partition|heal lan1|lan2");
                await runner.ChaosAsync(rest[0], rest[1], ct).ConfigureAwait(false);
                return WeftCli.ExitOk;
            }
            case "down":
            {
                if (rest.Length > 0) throw new UsageException("usage: weft lab down");
                await runner.DownAsync(ct).ConfigureAwait(false);
                return WeftCli.ExitOk;
            }
            default:
                throw new UsageException($"unknown lab command '{argv[0]}'\nusage:\n{Usage}");
        }
    }
}
