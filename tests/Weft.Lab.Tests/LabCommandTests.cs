using System.Diagnostics;
using System.Text.Json;
using Weft.Lab;
using Xunit.Abstractions;

namespace Weft.Lab.Tests;

/// <summary>
/// `weft lab` as a user runs it: up (leaving processes running), status --json, exec, chaos, down (leaving nothing).
/// Each test has its own state folder and namespace prefix, so a developer's own lab is never touched.
/// </summary>
[Collection(LabCollection.Name)]
public sealed class LabCommandTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "weft-labcmd-" + Guid.NewGuid().ToString("N")[..8]);
    private readonly string _prefix = "wlc" + Guid.NewGuid().ToString("N")[..4];

    public void Dispose()
    {
        // Whatever a failed test left: the lab's own down, then a sweep by prefix.
        Weft(TimeSpan.FromSeconds(60), "lab", "down");
        if (NatLab.CanRun(out _)) NatLab.RemoveStale(_prefix);
    }

    private (int Code, string Out, string Err) Weft(TimeSpan timeout, params string[] args)
    {
        var psi = new ProcessStartInfo(NatLab.FindExecutable("dotnet")!) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "weft.dll"));
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["WEFT_LAB_DIR"] = _dir;
        psi.Environment["WEFT_LAB_PREFIX"] = _prefix;
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(timeout))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"weft {string.Join(' ', args)} did not finish within {timeout.TotalSeconds:0} s; stderr: {stderr.Result}");
        }
        return (p.ExitCode, stdout.Result, stderr.Result);
    }

    private (int Code, string Out, string Err) Ok(TimeSpan timeout, params string[] args)
    {
        var r = Weft(timeout, args);
        Assert.True(r.Code == 0, $"weft {string.Join(' ', args)} exited {r.Code}:\n{r.Out}\n{r.Err}");
        return r;
    }

    private JsonElement Status() => JsonDocument.Parse(Ok(TimeSpan.FromSeconds(90), "lab", "status", "--json").Out).RootElement.Clone();

    private string Exec(string node, params string[] cmd) => Ok(TimeSpan.FromSeconds(60), ["lab", "exec", node, "--", .. cmd]).Out;

    private static string Curl => NatLab.FindExecutable("curl") ?? throw new InvalidOperationException("curl is not installed");

    private string WeftDll => Path.Combine(AppContext.BaseDirectory, "weft.dll");

    private static void NothingLeft(string dir, string prefix, IEnumerable<int> pids)
    {
        Assert.False(Directory.Exists(dir), $"{dir} is still there");
        if (NatLab.CanRun(out _)) Assert.DoesNotContain(NatLab.ListNamespaces(), n => n.StartsWith(prefix, StringComparison.Ordinal));
        foreach (var pid in pids)
        {
            try
            {
                using var p = Process.GetProcessById(pid);
                Assert.True(p.HasExited, $"process {pid} ({p.ProcessName}) still runs");
            }
            catch (ArgumentException) { /* gone */ }
        }
    }

    private List<int> Pids() => JsonDocument.Parse(File.ReadAllText(Path.Combine(_dir, "state.json"))).RootElement
        .GetProperty("processes").EnumerateArray().Select(p => p.GetProperty("pid").GetInt32()).ToList();

    [RootFact]
    public void The_namespace_lab_comes_up_serves_demo_and_the_cloud_survives_a_relay_kill_and_goes_down_clean()
    {
        var sw = Stopwatch.StartNew();
        var up = Ok(TimeSpan.FromMinutes(3), "lab", "up", "--nat");
        output.WriteLine($"weft lab up: {sw.Elapsed.TotalSeconds:0.0} s\n{up.Out}");
        var pids = Pids();

        var s = Status();
        Assert.Equal("netns", s.GetProperty("mode").GetString());
        var nodes = s.GetProperty("nodes").EnumerateArray().ToList();
        Assert.Equal(["relay1", "relay2", "lan1-a", "lan1-b", "lan2-a", "lan2-b"], nodes.Select(n => n.GetProperty("name").GetString()));
        Assert.All(nodes, n => Assert.True(n.GetProperty("ready").GetBoolean(), n.ToString()));
        Assert.True(nodes.Single(n => n.GetProperty("name").GetString() == "relay1").GetProperty("relay").GetBoolean());
        var demo = Assert.Single(s.GetProperty("services").EnumerateArray());
        Assert.Equal("demo", demo.GetProperty("name").GetString());
        var url = demo.GetProperty("url").GetString()!;
        var replicas = s.GetProperty("cloud").GetProperty("replicas").EnumerateArray().ToList();
        Assert.Equal(["cloud-a", "cloud-b"], replicas.Select(r => r.GetProperty("name").GetString()));
        Assert.Equal(6, replicas.Sum(r => r.GetProperty("owns").GetArrayLength())); // every node holds one session
        var lb = s.GetProperty("cloud").GetProperty("lb").GetString()!;

        // The demo service, from LAN 1 through lan1-a's proxy: both LAN 2 nodes answer.
        var answers = Enumerable.Range(0, 6).Select(_ => Exec("lan1-a", Curl, "-s", "--max-time", "10", url)).ToHashSet();
        Assert.Equal(["lan2-a", "lan2-b"], answers.Order());
        // lan1-a's edge DNS names the demo service, and the name's address is the way in.
        Assert.Equal("127.0.0.1:53", s.GetProperty("dns").GetString());
        Assert.Equal("demo.default.svc.cluster.local", demo.GetProperty("dnsName").GetString());
        var resolved = Exec("lan1-a", NatLab.FindExecutable("dig") ?? throw new InvalidOperationException("dig is not installed (apt-get install bind9-dnsutils)"),
            "+short", "+tries=2", "+time=3", "@127.0.0.1", "demo.default.svc.cluster.local").Trim();
        Assert.Equal(demo.GetProperty("address").GetString(), resolved);
        Assert.Contains(Exec("lan1-a", Curl, "-s", "--max-time", "10", $"http://{resolved}:{new Uri(url).Port}/"), new[] { "lan2-a", "lan2-b" });
        // A cloud app's request through lb reaches lan2-a's demo through whichever replica owns its session.
        Assert.Equal("lan2-a", Exec("relay1", Curl, "-s", "--max-time", "10", lb + "/lan2-a/default/demo"));

        // relay1 dies: the mesh carries on.
        Ok(TimeSpan.FromSeconds(30), "lab", "chaos", "kill-relay", "relay1");
        var ping = Exec("lan1-a", "dotnet", WeftDll, "ping", "lan2-a", "--count", "3", "--interval", "100");
        Assert.Contains("3 sent, 3 answered", ping);
        Assert.Contains(Exec("lan1-a", Curl, "-s", "--max-time", "10", url), new[] { "lan2-a", "lan2-b" });
        Ok(TimeSpan.FromSeconds(90), "lab", "chaos", "restore-relay", "relay1");
        output.WriteLine(ping);

        var down = Ok(TimeSpan.FromMinutes(1), "lab", "down");
        output.WriteLine(down.Err);
        NothingLeft(_dir, _prefix, pids);
        output.WriteLine($"whole run {sw.Elapsed.TotalSeconds:0.0} s");
    }

    [Fact]
    public void The_loopback_lab_comes_up_serves_demo_and_goes_down_clean()
    {
        var up = Ok(TimeSpan.FromMinutes(3), "lab", "up", "--loopback");
        output.WriteLine(up.Out);
        var pids = Pids();
        var s = Status();
        Assert.Equal("loopback", s.GetProperty("mode").GetString());
        var url = s.GetProperty("services")[0].GetProperty("url").GetString()!;
        // A new connection per request, as curl makes: the proxy balances connections, not requests on one.
        var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
        http.DefaultRequestHeaders.ConnectionClose = true;
        // In a loopback lab everything shares 127.0.0.1: the test reaches lan1-a's proxy itself.
        var answers = Enumerable.Range(0, 6).Select(_ => http.GetStringAsync(url).GetAwaiter().GetResult()).ToHashSet();
        Assert.Equal(["lan2-a", "lan2-b"], answers.Order());
        if (s.GetProperty("cloud").ValueKind == JsonValueKind.Object)
            Assert.Equal("lan2-a", http.GetStringAsync(s.GetProperty("cloud").GetProperty("lb").GetString() + "/lan2-a/default/demo").GetAwaiter().GetResult());
        // lan1-a's edge DNS (on its own port here) names the demo service.
        var dnsAt = System.Net.IPEndPoint.Parse(s.GetProperty("dns").GetString()!);
        var query = new global::Weft.Wire.Dns.DnsMessage { Id = 77, Questions = [new(global::Weft.Wire.Dns.DnsName.Parse("demo.default.svc.cluster.local"), global::Weft.Wire.Dns.DnsType.A)] };
        using (var udp = new System.Net.Sockets.UdpClient())
        {
            udp.Connect(dnsAt);
            udp.Send(query.ToArray());
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            var reply = global::Weft.Wire.Dns.DnsMessage.Parse(udp.ReceiveAsync(cts.Token).AsTask().GetAwaiter().GetResult().Buffer);
            var a = Assert.IsType<global::Weft.Wire.Dns.ARecord>(Assert.Single(reply.Answers));
            Assert.Equal(s.GetProperty("services")[0].GetProperty("address").GetString(), a.Address.ToString());
        }
        var status = Exec("lan1-a", "dotnet", WeftDll, "status");
        Assert.Contains("node lan1-a", status); // exec points weft status at lan1-a's own admin API
        Assert.Contains($"edge DNS at {dnsAt}", status);
        Ok(TimeSpan.FromMinutes(1), "lab", "down");
        NothingLeft(_dir, _prefix, pids);
    }
}
