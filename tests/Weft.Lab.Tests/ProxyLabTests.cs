using System.Globalization;
using System.Text.Json;
using Weft.Lab;
using Xunit.Abstractions;

namespace Weft.Lab.Tests;

/// <summary>
/// The service proxy in the NAT lab: real `weft agent` processes, the `demo` service (`weft demo-app`) on the LAN 2
/// nodes, called from LAN 1 through lan1-a's proxy across both NATs (through relay1, or direct after a hole punch).
/// </summary>
public sealed class ProxyLabTests(ITestOutputHelper output)
{
    private static readonly (string, string)[] Relay1 = [("relay1", "10.250.0.1")];

    /// <summary>The demo service of the lab (the same file `weft lab up` writes): HTTP 80, TCP and UDP echo 7 on each LAN 2 node.</summary>
    public static readonly string DemoServices = LabRunner.DemoServices(LabMode.Namespaces);

    private static string[] Weft(params string[] args)
    {
        var dotnet = NatLab.FindExecutable("dotnet") ?? throw new InvalidOperationException("dotnet is not on PATH");
        return [dotnet, Path.Combine(AppContext.BaseDirectory, "weft.dll"), .. args];
    }

    /// <summary>`weft demo-call ...` inside lan1-a; its JSON answer (exit code 0 required).</summary>
    private async Task<JsonElement> CallAsync(NatLab lab, params string[] args)
    {
        var (code, stdout, stderr) = await lab.ExecAsync("lan1-a", Weft(["demo-call", .. args]), TimeSpan.FromSeconds(90));
        output.WriteLine($"demo-call {string.Join(' ', args)}: {stdout.Trim()}");
        Assert.True(code == 0, $"weft demo-call {string.Join(' ', args)} exited {code}: {stdout}\n{stderr}");
        return JsonDocument.Parse(stdout).RootElement.Clone();
    }

    [RootFact]
    public Task Lan1_calls_demo_on_the_lan2_nodes_through_the_proxy_over_punched_direct_paths() => CallDemoAcrossAsync(NatMode.PortRestrictedCone, "direct");

    [RootFact]
    public Task Lan1_calls_demo_on_the_lan2_nodes_through_the_proxy_over_the_relay_when_lan2_is_behind_a_symmetric_nat() => CallDemoAcrossAsync(NatMode.Symmetric, "relay");

    private async Task CallDemoAcrossAsync(NatMode lan2, string path)
    {
        await using var lab = await NatLab.CreateAsync(new LabOptions { Lan2Nat = lan2 });
        await using var agents = new LabAgents(lab);
        var services = Path.Combine(Directory.CreateTempSubdirectory("weft-lab-services-").FullName, "services.yaml");
        await File.WriteAllTextAsync(services, DemoServices);
        var demos = new List<LabWeft>();
        try
        {
            foreach (var (node, ip) in new[] { ("lan2-a", "192.168.2.21"), ("lan2-b", "192.168.2.22") })
            {
                var demo = LabWeft.Start(lab, node, "demo-app", "--name", node, "--listen", ip + ":8080", "--tcp-echo", ip + ":7007", "--udp-echo", ip + ":7007");
                demos.Add(demo);
                await demo.WaitLine("ready");
            }
            var proxy = $"  edgeProxy:\n    enable: true\n    servicesFile: {services}\n";
            await Task.WhenAll(((string[])["relay1", "lan1-a", "lan2-a", "lan2-b"]).Select(n =>
                agents.StartAsync(n, agents.Yaml(n, Relay1) + (n == "lan1-a" ? proxy : ""))));
            foreach (var n in (string[])["lan1-a", "lan2-a", "lan2-b"])
                await agents.WaitStatusAsync(n, s => LabAgents.RelayReserved(s, "relay1"), "a reservation on relay1");

            // The tunnel paths first (each `weft ping` opens a new stream on the best path), so that the calls below
            // measure the proxy, not the first dial to each node.
            foreach (var node in (string[])["lan2-a", "lan2-b"])
            {
                var until = DateTime.UtcNow + LabAgents.Deadline;
                while (true)
                {
                    var ping = Assert.Single(await agents.PingAsync("lan1-a", node, count: 1, timeoutMs: 10_000));
                    output.WriteLine($"first tunnel stream lan1-a -> {node}: {(ping.Ok ? "ok" : ping.Error)}, opened in {ping.OpenMs:0.0} ms, {ping.Path} {ping.Via}");
                    if (ping.Ok) break;
                    Assert.True(DateTime.UtcNow < until, $"no tunnel stream from lan1-a to {node} within {LabAgents.Deadline.TotalSeconds:0} s");
                }
            }

            // The service as `weft status --json` shows it on lan1-a: a URL on lan1-a's own service address.
            var status = await agents.StatusAsync("lan1-a");
            var demoView = status.GetProperty("services").EnumerateArray().Single(s => s.GetProperty("name").GetString() == "demo");
            var url = demoView.GetProperty("url").GetString()!;
            var address = demoView.GetProperty("address").GetString()!;
            Assert.StartsWith("http://127.10.", url, StringComparison.Ordinal);
            Assert.All(demoView.GetProperty("ports").EnumerateArray(), p => Assert.True(p.GetProperty("listening").GetBoolean(), p.ToString()));

            // HTTP: every request answered, spread over both LAN 2 nodes (round robin).
            var get = await CallAsync(lab, "get", url, "--count", "20", "--new-connection");
            Assert.Equal(20, get.GetProperty("ok").GetInt32());
            var answers = get.GetProperty("answers");
            Assert.Equal(10, answers.GetProperty("lan2-a").GetInt32());
            Assert.Equal(10, answers.GetProperty("lan2-b").GetInt32());
            var bytes = await CallAsync(lab, "bytes", url, "--size", "4MiB", "--count", "2");
            Assert.Equal(2, bytes.GetProperty("ok").GetInt32());
            var echo = await CallAsync(lab, "echo", url, "--size", "1MiB");
            Assert.True(echo.GetProperty("ok").GetBoolean());

            // TCP echo (with half-close) and UDP echo: single-datagram queries and a 10,000-datagram stream.
            var tcp = await CallAsync(lab, "tcp-echo", address + ":7", "--size", "8MiB", "--count", "2");
            Assert.Equal(2, tcp.GetProperty("ok").GetInt32());
            var udp = await CallAsync(lab, "udp-echo", address + ":7", "--queries", "20", "--stream", "10000", "--window", "64");
            Assert.Equal(20, udp.GetProperty("answered").GetInt32());
            Assert.Equal(0, udp.GetProperty("corrupt").GetInt32());
            Assert.Equal(0, udp.GetProperty("duplicates").GetInt32());
            var lost = udp.GetProperty("lost").GetInt32();
            output.WriteLine($"UDP stream across the NATs: {udp.GetProperty("received").GetInt32()} of 10000 echoed, {lost} lost");
            Assert.True(lost <= 10, $"{lost} of 10000 datagrams lost");

            var after = await agents.StatusAsync("lan1-a");
            var view = after.GetProperty("services").EnumerateArray().Single(s => s.GetProperty("name").GetString() == "demo");
            Assert.All(view.GetProperty("ports").EnumerateArray(), p => Assert.Equal(0, p.GetProperty("udpDropped").GetInt64()));
            Assert.Equal(0, view.GetProperty("ports").EnumerateArray().Sum(p => p.GetProperty("failures").GetInt64()));
            foreach (var peer in after.GetProperty("peers").EnumerateArray())
                output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"lan1-a -> {peer.GetProperty("name")}: {peer.GetProperty("kind")} {peer.GetProperty("via")}"));
            foreach (var node in (string[])["lan2-a", "lan2-b"])
                Assert.Equal(path, after.GetProperty("peers").EnumerateArray().Single(p => p.GetProperty("name").GetString() == node).GetProperty("kind").GetString());
        }
        catch
        {
            // The caller's agent log says which endpoint failed and why.
            try { output.WriteLine("lan1-a agent log:\n" + agents["lan1-a"].Stdout + agents["lan1-a"].Stderr); }
            catch (KeyNotFoundException) { /* it did not start */ }
            throw;
        }
        finally
        {
            foreach (var d in demos) await d.DisposeAsync();
            Directory.Delete(Path.GetDirectoryName(services)!, recursive: true);
        }
    }
}
