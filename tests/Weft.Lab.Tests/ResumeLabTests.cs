using System.Diagnostics;
using System.Text.Json;
using Weft.Lab;
using Xunit.Abstractions;

namespace Weft.Lab.Tests;

/// <summary>
/// Live proxied connections across the NATs and the relays under them (issue 8): real `weft agent` processes, the demo
/// app on lan2-a, and `weft demo-call` in lan1-a as the application — a 512 MiB download checked byte by byte, and an
/// interactive session (a 64-byte message echoed every 20 ms, each echo checked and timed).
/// </summary>
[Collection(LabCollection.Name)]
public sealed class ResumeLabTests(ITestOutputHelper output)
{
    private const long Bulk = 512L << 20;

    /// <summary>The demo service with lan2-a as its only endpoint, so every connection crosses the same path.</summary>
    private const string Services = """
        services:
        - name: demo
          ports:
          - {name: http, port: 80, targetPort: 8080}
          - {name: echo, port: 7, targetPort: 7007}
          endpoints:
          - {nodeName: lan2-a, ip: 192.168.2.21}
        """;

    private sealed class Scene : IAsyncDisposable
    {
        private readonly string _dir = Directory.CreateTempSubdirectory("weft-resume-lab-").FullName;
        private readonly List<LabWeft> _apps = [];

        public required NatLab Lab { get; init; }
        public required LabAgents Agents { get; init; }
        public required IReadOnlyList<(string, string)> Relays { get; init; }
        public string Url { get; private set; } = "";
        public string Echo { get; private set; } = "";

        public static async Task<Scene> StartAsync(LabOptions options, IReadOnlyList<(string, string)> relays, string extra = "")
        {
            var lab = await NatLab.CreateAsync(options);
            var scene = new Scene { Lab = lab, Agents = new LabAgents(lab), Relays = relays };
            try
            {
                var services = Path.Combine(scene._dir, "services.yaml");
                await File.WriteAllTextAsync(services, Services);
                var demo = LabWeft.Start(lab, "lan2-a", "demo-app", "--name", "lan2-a", "--listen", "192.168.2.21:8080", "--tcp-echo", "192.168.2.21:7007");
                scene._apps.Add(demo);
                await demo.WaitLine("ready");
                var nodes = relays.Select(r => r.Item1).Concat(["lan1-a", "lan2-a"]).ToList();
                await Task.WhenAll(nodes.Select(n => scene.Agents.StartAsync(n, scene.Yaml(n, extra, n == "lan1-a" ? services : null))));
                foreach (var n in (string[])["lan1-a", "lan2-a"])
                    await scene.Agents.WaitStatusAsync(n, s => relays.All(r => LabAgents.RelayReserved(s, r.Item1)), "reservations on every relay", TimeSpan.FromSeconds(60));
                var status = await scene.Agents.StatusAsync("lan1-a");
                var view = status.GetProperty("services").EnumerateArray().Single();
                scene.Url = view.GetProperty("url").GetString()!;
                scene.Echo = view.GetProperty("address").GetString()! + ":7";
                return scene;
            }
            catch
            {
                await scene.DisposeAsync();
                throw;
            }
        }

        public string Yaml(string node, string extra, string? services)
        {
            var more = extra;
            var yaml = Agents.Yaml(node, Relays, more);
            return services is null ? yaml : yaml + $"  edgeProxy:\n    enable: true\n    servicesFile: {services}\n";
        }

        /// <summary>`weft demo-call ARGS` started in lan1-a; its JSON is its last output line.</summary>
        public LabWeft Call(params string[] args)
        {
            var p = LabWeft.Start(Lab, "lan1-a", ["demo-call", .. args]);
            _apps.Add(p);
            return p;
        }

        public static async Task<JsonElement> ResultAsync(LabWeft call, TimeSpan deadline)
        {
            await call.WaitExit(deadline);
            var last = call.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).LastOrDefault()
                ?? throw new InvalidOperationException($"demo-call printed nothing; stderr: {call.Stderr}");
            return JsonDocument.Parse(last).RootElement.Clone();
        }

        public async ValueTask DisposeAsync()
        {
            foreach (var a in _apps) await a.DisposeAsync();
            await Agents.DisposeAsync();
            await Lab.DisposeAsync();
            Directory.Delete(_dir, recursive: true);
        }
    }

    private static long PeerBytes(JsonElement status, string node, string kind) =>
        status.GetProperty("peers").EnumerateArray().Where(p => p.GetProperty("name").GetString() == node).Sum(p => p.GetProperty(kind).GetInt64());

    [RootFact]
    public async Task A_download_and_a_session_survive_the_death_of_their_relay_and_a_peer_restart_ends_in_a_clean_reset()
    {
        // Symmetric NAT before LAN 2 and no hole punching: everything stays on a relay.
        await using var scene = await Scene.StartAsync(new LabOptions { ExtraPublicNodes = ["relay2"], Lan2Nat = NatMode.Symmetric },
            [("relay1", "10.250.0.1"), ("relay2", "10.250.0.2")], "holePunching: false");
        var agents = scene.Agents;
        var ping = Assert.Single(await agents.PingAsync("lan1-a", "lan2-a", timeoutMs: 10_000));
        Assert.True(ping.Ok, ping.Error);
        var relay = ping.Via ?? throw new InvalidOperationException("lan1-a reaches lan2-a without a relay");

        var session = scene.Call("session", scene.Echo, "--seconds", "30", "--interval", "20", "--size", "64");
        var download = scene.Call("bytes", scene.Url, "--size", Bulk.ToString(System.Globalization.CultureInfo.InvariantCulture));
        // Kill the relay once an eighth of the download went through it.
        await agents.WaitStatusAsync("lan1-a", s => PeerBytes(s, "lan2-a", "relayedBytes") >= Bulk / 8, "64 MiB through the relay", TimeSpan.FromSeconds(60));
        var killedAt = Stopwatch.StartNew();
        await agents.KillAsync(relay);

        var bulk = await Scene.ResultAsync(download, TimeSpan.FromMinutes(4));
        var interactive = await Scene.ResultAsync(session, TimeSpan.FromMinutes(2));
        output.WriteLine($"{relay} killed; download: {bulk}");
        output.WriteLine($"session: {interactive}");
        Assert.True(bulk.GetProperty("ok").GetInt32() == 1, $"the download broke: {bulk}");          // every byte checked against the pattern
        Assert.True(interactive.GetProperty("ok").GetBoolean(), $"the session broke: {interactive}"); // every echo checked, none late by 30 s
        Assert.Equal(0, interactive.GetProperty("corrupt").GetInt32());
        Assert.True(interactive.GetProperty("exchanges").GetInt32() > 100, interactive.ToString());

        var caller = await agents.MetricsAsync("lan1-a");
        var callee = await agents.MetricsAsync("lan2-a");
        output.WriteLine(string.Join('\n', caller.Concat(callee).Where(kv => kv.Key.StartsWith("weft_resume", StringComparison.Ordinal)).Select(kv => $"{kv.Key} {kv.Value}")));
        Assert.Equal(0, LabAgents.Sum(caller, "weft_resume_resets_total"));
        Assert.Equal(0, LabAgents.Sum(callee, "weft_resume_resets_total"));
        Assert.True(LabAgents.Sum(caller, "weft_resume_path_losses_total") >= 2, "both connections should have lost their stream on the dead relay");
        Assert.True(LabAgents.Sum(callee, "weft_resume_moves_total", "cause=\"resumed\"") >= 2, "both connections should have been resumed at lan2-a");
        output.WriteLine($"application stalls when {relay} died: session's longest echo {interactive.GetProperty("maxMs").GetDouble():0} ms, download's longest gap {bulk.GetProperty("maxGapMs").GetDouble():0} ms");

        // lan2-a restarts mid-session: it has lost the connection's state, so lan1-a's attempt to resume is refused and
        // the application sees a reset, soon, not a hang.
        var doomed = scene.Call("session", scene.Echo, "--seconds", "60", "--interval", "20", "--size", "64");
        await agents.WaitStatusAsync("lan1-a", s => s.GetProperty("services")[0].GetProperty("ports").EnumerateArray().Sum(p => p.GetProperty("activeConnections").GetInt32()) >= 1,
            "the session's connection to be open");
        await agents.KillAsync("lan2-a");
        var restarted = Stopwatch.StartNew();
        await agents.StartAsync("lan2-a", scene.Yaml("lan2-a", "holePunching: false", null));
        var ended = await Scene.ResultAsync(doomed, TimeSpan.FromSeconds(45));
        output.WriteLine($"after lan2-a restarted: {ended} ({restarted.Elapsed.TotalSeconds:0.0} s after its restart began)");
        foreach (var line in (agents["lan1-a"].Stdout + agents["lan1-a"].Stderr).Split('\n').Where(l => l.Contains("Weft.Mesh.Resume", StringComparison.Ordinal)))
            output.WriteLine("lan1-a: " + line);
        Assert.False(ended.GetProperty("ok").GetBoolean());
        Assert.Equal(0, ended.GetProperty("corrupt").GetInt32());
        Assert.True(ended.GetProperty("exchanges").GetInt32() > 0);
        Assert.Contains("reset", ended.GetProperty("error").GetString()!, StringComparison.OrdinalIgnoreCase);
        Assert.True(LabAgents.Sum(await agents.MetricsAsync("lan1-a"), "weft_resume_resets_total") >= 1);
    }

    [RootFact]
    public async Task A_download_that_starts_on_the_relay_moves_to_the_punched_direct_path_intact()
    {
        // Cone NATs: the first contact goes through relay1, then DCUtR punches a direct path and the download moves.
        // No DHT: its rendezvous would introduce the nodes (and punch) before the download.
        await using var scene = await Scene.StartAsync(new LabOptions(), [("relay1", "10.250.0.1")], "dht: false");
        var download = scene.Call("bytes", scene.Url, "--size", (256L << 20).ToString(System.Globalization.CultureInfo.InvariantCulture));
        var bulk = await Scene.ResultAsync(download, TimeSpan.FromMinutes(3));
        output.WriteLine($"download: {bulk}");
        Assert.True(bulk.GetProperty("ok").GetInt32() == 1, $"the download broke: {bulk}");

        var status = await scene.Agents.StatusAsync("lan1-a");
        var peer = status.GetProperty("peers").EnumerateArray().Single(p => p.GetProperty("name").GetString() == "lan2-a");
        output.WriteLine($"lan1-a -> lan2-a: {peer}");
        foreach (var line in (scene.Agents["lan1-a"].Stdout + scene.Agents["lan1-a"].Stderr).Split('\n').Where(l => l.Contains("Weft.Mesh.Resume", StringComparison.Ordinal)))
            output.WriteLine("lan1-a: " + line);
        Assert.Equal("direct", peer.GetProperty("kind").GetString());
        Assert.True(peer.GetProperty("relayedBytes").GetInt64() > 0, "the download never used the relay: nothing to move");
        Assert.True(peer.GetProperty("directBytes").GetInt64() > 0);
        var metrics = await scene.Agents.MetricsAsync("lan1-a");
        Assert.True(LabAgents.Sum(metrics, "weft_resume_moves_total", "cause=\"better\"") >= 1, "the connection did not move to the direct path");
        Assert.Equal(0, LabAgents.Sum(metrics, "weft_resume_resets_total"));
    }
}
