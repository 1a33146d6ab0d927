using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using Weft.Lab;

namespace Weft.Lab.Tests;

/// <summary>One tunnel ping as `weft ping --json` prints it.</summary>
public sealed record LabPing(int Seq, bool Ok, double? RttMs, double? OpenMs, string? Path, string? Via, string? Error, DateTimeOffset Utc)
{
    /// <summary>When the ping's stream was opened (its completion minus the open and round-trip times).</summary>
    public DateTimeOffset Started => Utc - TimeSpan.FromMilliseconds((OpenMs ?? 0) + (RttMs ?? 0));
}

/// <summary>
/// `weft agent` processes in the lab's namespaces, each with its config in a ConfigMap-like folder (the file is a
/// symlink through ..data, swapped atomically on edit, as kubelet does), and the `weft status` / `weft ping` commands
/// run inside a node's namespace against its admin API.
/// </summary>
public sealed class LabAgents : IAsyncDisposable
{
    public static readonly TimeSpan Deadline = TimeSpan.FromSeconds(30);

    private readonly NatLab _lab;
    private readonly string _dir = Directory.CreateTempSubdirectory("weft-lab-agents-").FullName;
    private readonly Dictionary<string, LabWeft> _running = new(StringComparer.Ordinal);
    private readonly Dictionary<string, int> _versions = new(StringComparer.Ordinal);

    public LabAgents(NatLab lab)
    {
        _lab = lab;
        File.WriteAllText(Psk, "lab-psk-" + Guid.NewGuid().ToString("N"));
    }

    public string Psk => Path.Combine(_dir, "psk");

    public LabWeft this[string node] => _running[node];

    /// <summary>
    /// A node's YAML: the lab's relays (name → advertise address), the shared PSK, and an identity: EdgeMesh's
    /// name-derived one (legacy), or with <paramref name="persisted"/> a random key kept in the node's folder (then
    /// nodes learn each other's names by discovery).
    /// </summary>
    public string Yaml(string node, IEnumerable<(string Name, string Address)> relays, string extra = "", bool persisted = false)
    {
        var sb = new StringBuilder();
        sb.AppendLine("apiVersion: agent.edgemesh.config.kubeedge.io/v1alpha1");
        sb.AppendLine("kind: EdgeMeshAgent");
        sb.AppendLine("modules:");
        sb.AppendLine("  edgeTunnel:");
        sb.AppendLine(CultureInfo.InvariantCulture, $"    nodeName: {node}");
        sb.AppendLine("    listenPort: 20006");
        sb.AppendLine(CultureInfo.InvariantCulture, $"    psk: {{enable: true, path: {Psk}}}");
        if (persisted) sb.AppendLine(CultureInfo.InvariantCulture, $"    identity: {{mode: persisted, keyFile: {Path.Combine(_dir, node + ".key")}}}");
        else sb.AppendLine("    identity: {mode: legacy}");
        sb.AppendLine("    relayNodes:");
        foreach (var (name, address) in relays)
            sb.AppendLine(CultureInfo.InvariantCulture, $"    - {{nodeName: {name}, advertiseAddress: [{address}]}}");
        if (extra.Length > 0)
            foreach (var line in extra.Split('\n', StringSplitOptions.RemoveEmptyEntries)) sb.AppendLine("    " + line.TrimEnd());
        return sb.ToString();
    }

    [DllImport("libc", EntryPoint = "rename", SetLastError = true)]
    private static extern int Rename(string from, string to);

    /// <summary>Writes (or replaces, atomically through the ..data symlink) a node's config; returns the config path.</summary>
    public string WriteConfig(string node, string yaml)
    {
        var dir = Path.Combine(_dir, node);
        Directory.CreateDirectory(dir);
        var v = _versions[node] = _versions.GetValueOrDefault(node) + 1;
        var version = Path.Combine(dir, $"..v{v}");
        Directory.CreateDirectory(version);
        File.WriteAllText(Path.Combine(version, "agent.yaml"), yaml);
        var tmp = Path.Combine(dir, "..data_tmp");
        File.CreateSymbolicLink(tmp, $"..v{v}");
        if (Rename(tmp, Path.Combine(dir, "..data")) != 0) throw new IOException($"rename failed: errno {Marshal.GetLastPInvokeError()}");
        var config = Path.Combine(dir, "agent.yaml");
        if (!File.Exists(config)) File.CreateSymbolicLink(config, "..data/agent.yaml");
        return config;
    }

    /// <summary>Starts `weft agent` on <paramref name="node"/> and waits for its "ready" line.</summary>
    public async Task<LabWeft> StartAsync(string node, string yaml)
    {
        var config = WriteConfig(node, yaml);
        // WEFT_LAB_AGENT_LOG=debug shows the agents' connection-level logs (in failure messages and LabWeft.Stderr).
        var level = Environment.GetEnvironmentVariable("WEFT_LAB_AGENT_LOG") is { Length: > 0 } l ? l : "information";
        var p = LabWeft.Start(_lab, node, "agent", "--config", config, "--log-level", level);
        _running[node] = p;
        await p.WaitLine("ready");
        return p;
    }

    /// <summary>Kills a node's agent (SIGKILL: its sockets are closed by the kernel); returns when the signal was sent.</summary>
    public async Task<DateTimeOffset> KillAsync(string node)
    {
        if (!_running.Remove(node, out var p)) return DateTimeOffset.UtcNow;
        p.KillNow();
        var at = DateTimeOffset.UtcNow;
        await p.DisposeAsync();
        return at;
    }

    private static string[] Weft(params string[] args)
    {
        var dotnet = NatLab.FindExecutable("dotnet") ?? throw new InvalidOperationException("dotnet is not on PATH");
        return [dotnet, Path.Combine(AppContext.BaseDirectory, "weft.dll"), .. args];
    }

    /// <summary>`weft status --json` in the node's namespace.</summary>
    public async Task<JsonElement> StatusAsync(string node)
    {
        var (code, stdout, stderr) = await _lab.ExecAsync(node, Weft("status", "--json"), Deadline);
        if (code != 0) throw new InvalidOperationException($"{node}: weft status exited {code}: {stderr}");
        return JsonDocument.Parse(stdout).RootElement.Clone();
    }

    /// <summary>The node's Prometheus metrics (its admin API's /metrics, fetched in its namespace): series → value.</summary>
    public async Task<IReadOnlyDictionary<string, double>> MetricsAsync(string node)
    {
        var curl = NatLab.FindExecutable("curl") ?? throw new InvalidOperationException("curl is not installed");
        var (code, stdout, stderr) = await _lab.ExecAsync(node, [curl, "-sf", "--max-time", "10", "http://127.0.0.1:20016/metrics"], Deadline);
        if (code != 0) throw new InvalidOperationException($"{node}: GET /metrics failed ({code}): {stderr}");
        var series = new Dictionary<string, double>(StringComparer.Ordinal);
        foreach (var line in stdout.Split('\n'))
        {
            if (line.Length == 0 || line[0] == '#') continue;
            var space = line.LastIndexOf(' ');
            if (space > 0 && double.TryParse(line.AsSpan(space + 1), NumberStyles.Float, CultureInfo.InvariantCulture, out var v)) series[line[..space]] = v;
        }
        return series;
    }

    /// <summary>The sum of every series of <paramref name="name"/> whose labels contain <paramref name="label"/> (e.g. <c>cause="lost"</c>).</summary>
    public static double Sum(IReadOnlyDictionary<string, double> metrics, string name, string? label = null) =>
        metrics.Where(kv => (kv.Key == name || kv.Key.StartsWith(name + "{", StringComparison.Ordinal)) && (label is null || kv.Key.Contains(label, StringComparison.Ordinal))).Sum(kv => kv.Value);

    /// <summary>Checks the node's status until <paramref name="condition"/> holds (each check is a round trip to its admin API).</summary>
    public async Task<JsonElement> WaitStatusAsync(string node, Func<JsonElement, bool> condition, string what, TimeSpan? deadline = null)
    {
        var until = DateTime.UtcNow + (deadline ?? Deadline);
        JsonElement s;
        while (true)
        {
            s = await StatusAsync(node);
            if (condition(s)) return s;
            if (DateTime.UtcNow > until)
                throw new TimeoutException($"{node}: {what} did not happen within {(deadline ?? Deadline).TotalSeconds:0} s; status: {s}\nagents:\n{string.Join("\n", _running.Values.Select(p => p.Describe()))}");
        }
    }

    /// <summary>`weft ping TARGET --json` in the node's namespace; every reply.</summary>
    public async Task<IReadOnlyList<LabPing>> PingAsync(string node, string target, int count = 1, int intervalMs = 0, int timeoutMs = 5000)
    {
        var (_, stdout, stderr) = await _lab.ExecAsync(node, Weft("ping", target, "--json", "--count", count.ToString(CultureInfo.InvariantCulture),
            "--interval", intervalMs.ToString(CultureInfo.InvariantCulture), "--timeout", timeoutMs.ToString(CultureInfo.InvariantCulture)),
            Deadline + TimeSpan.FromMilliseconds((long)count * (intervalMs + timeoutMs)));
        var replies = Parse(stdout);
        if (replies.Count == 0) throw new InvalidOperationException($"{node}: weft ping {target} printed no reply: {stderr}");
        return replies;
    }

    /// <summary>Pings until one ping succeeds (the target may not be known by name yet); returns that reply.</summary>
    public async Task<LabPing> WaitPingAsync(string node, string target, TimeSpan? deadline = null)
    {
        var until = DateTime.UtcNow + (deadline ?? Deadline);
        string last = "";
        while (DateTime.UtcNow < until)
        {
            var (_, stdout, stderr) = await _lab.ExecAsync(node, Weft("ping", target, "--json", "--count", "1", "--timeout", "3000"), Deadline);
            var reply = Parse(stdout).FirstOrDefault();
            if (reply is { Ok: true }) return reply;
            last = reply?.Error ?? stderr.Trim();
        }
        throw new TimeoutException($"{node} could not reach {target} within {(deadline ?? Deadline).TotalSeconds:0} s; last: {last}");
    }

    /// <summary>Starts a long `weft ping --json` in the node's namespace; read its replies with <see cref="Parse"/>.</summary>
    public LabWeft StartPing(string node, string target, int count, int intervalMs, int timeoutMs) =>
        LabWeft.Start(_lab, node, "ping", target, "--json", "--count", count.ToString(CultureInfo.InvariantCulture),
            "--interval", intervalMs.ToString(CultureInfo.InvariantCulture), "--timeout", timeoutMs.ToString(CultureInfo.InvariantCulture));

    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    public static List<LabPing> Parse(string stdout) =>
        stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Where(l => l.StartsWith('{')).Select(l => JsonSerializer.Deserialize<LabPing>(l, Json)!).ToList();

    /// <summary>What one failover looked like from the pinging node.</summary>
    /// <param name="Gap">From the failure to the completion of the first successful new stream opened after it.</param>
    /// <param name="FirstOk">That stream's reply.</param>
    /// <param name="FailedAfter">New streams opened after the failure that failed.</param>
    /// <param name="After">Every reply to a stream opened after the failure.</param>
    public sealed record Failover(TimeSpan Gap, LabPing FirstOk, IReadOnlyList<LabPing> FailedAfter, IReadOnlyList<LabPing> After, string Output);

    /// <summary>
    /// Pings <paramref name="to"/> from <paramref name="from"/> on a new stream every <paramref name="intervalMs"/>, runs
    /// <paramref name="fail"/> once replies flow (it returns the instant of the failure: the kill signal sent, the link
    /// taken down), and measures the time to the first successful new stream opened after it.
    /// </summary>
    public async Task<Failover> MeasureFailoverAsync(string from, string to, Func<Task<DateTimeOffset>> fail, int count = 250, int intervalMs = 20)
    {
        await using var pinger = StartPing(from, to, count, intervalMs, timeoutMs: 3000);
        for (var seen = 0; seen < 5;)
            if ((await pinger.WaitLine("{")).Contains("\"ok\":true", StringComparison.Ordinal)) seen++;
        var at = await fail();
        if (await pinger.WaitExit(TimeSpan.FromSeconds(60)) != 0) throw new InvalidOperationException($"weft ping failed: {pinger.Stderr}");
        var after = Parse(pinger.Stdout).Where(r => r.Started >= at).ToList();
        var firstOk = after.FirstOrDefault(r => r.Ok) ?? throw new InvalidOperationException($"no new stream succeeded after the failure:\n{pinger.Stdout}");
        return new Failover(firstOk.Utc - at, firstOk, after.TakeWhile(r => !r.Ok).ToList(), after, pinger.Stdout);
    }

    public static bool RelayReserved(JsonElement status, string relay) =>
        status.GetProperty("relays").EnumerateArray().Any(r => r.GetProperty("name").GetString() == relay && r.GetProperty("reserved").GetBoolean());

    public static string? RelayState(JsonElement status, string relay) =>
        status.GetProperty("relays").EnumerateArray().FirstOrDefault(r => r.GetProperty("name").GetString() == relay) is { ValueKind: JsonValueKind.Object } r
            ? r.GetProperty("state").GetString() : null;

    public static string? Preferred(JsonElement status) =>
        status.GetProperty("preferredRelay").ValueKind == JsonValueKind.String ? status.GetProperty("preferredRelay").GetString() : null;

    public async ValueTask DisposeAsync()
    {
        foreach (var p in _running.Values) await p.DisposeAsync();
        _running.Clear();
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }
}
