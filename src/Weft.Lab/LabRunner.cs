using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Weft.Lab;

/// <summary>How <c>weft lab up</c> builds the lab.</summary>
public enum LabMode
{
    /// <summary>Network namespaces with NAT routers (needs root): what the tests use.</summary>
    Namespaces,

    /// <summary>Processes on 127.0.0.1 (no root): same nodes and services, no NAT and no real LANs.</summary>
    Loopback,
}

/// <summary>One process of a running lab.</summary>
public sealed record LabProcess(string Name, string Role, string Lan, int Pid, string? Namespace, string Log, string? Config, string? Admin);

/// <summary>What <c>weft lab up</c> leaves behind for the other lab commands (in <see cref="LabRunner.StateFile"/>).</summary>
public sealed record LabState(string Mode, string Prefix, string Dir, string Created, IReadOnlyList<LabProcess> Processes, IReadOnlyList<string> WeftCommand);

/// <summary>
/// <c>weft lab</c>: builds the fixed lab of DESIGN.md §6 on this machine and drives it. Node names: relays relay1,
/// relay2; nodes lan1-a, lan1-b (LAN 1), lan2-a, lan2-b (LAN 2); the demo service on the LAN 2 nodes. With root the
/// nodes live in network namespaces behind NAT routers (<see cref="NatLab"/>); without it they are processes on
/// 127.0.0.1. Everything it makes is under <see cref="StateDirectory"/> and in namespaces named with
/// <see cref="Prefix"/>, so <see cref="DownAsync"/> can always remove it.
/// </summary>
public sealed class LabRunner
{
    /// <summary>Namespace and link prefix of <c>weft lab</c> (tests use another, through WEFT_LAB_PREFIX).</summary>
    public const string DefaultPrefix = "weftlab";

    /// <summary>The relays and nodes of the lab, with their LAN.</summary>
    public static readonly IReadOnlyList<(string Name, string Lan)> Agents =
        [("relay1", "wan"), ("relay2", "wan"), ("lan1-a", "lan1"), ("lan1-b", "lan1"), ("lan2-a", "lan2"), ("lan2-b", "lan2")];

    /// <summary>Nodes that serve the demo app.</summary>
    public static readonly IReadOnlyList<string> DemoNodes = ["lan2-a", "lan2-b"];

    /// <summary>The demo app's HTTP port on its node (loopback lab: lan2-b uses the next one).</summary>
    public const int DemoPort = 8080;

    /// <summary>The demo app's TCP and UDP echo port on its node (loopback lab: lan2-b uses the next one).</summary>
    public const int DemoEchoPort = 7007;

    /// <summary>
    /// The lab's services file: <c>demo</c> (HTTP on port 80, TCP and UDP echo on port 7) with an endpoint on each
    /// LAN 2 node. In a loopback lab the ports are the demo's own (no root for ports under 1024) and the two endpoints
    /// differ by port, since every node shares 127.0.0.1.
    /// </summary>
    public static string DemoServices(LabMode mode) => mode == LabMode.Namespaces
        ? """
          services:
          - name: demo
            ports:
            - {name: http, port: 80, targetPort: 8080}
            - {name: echo, port: 7, targetPort: 7007}
            - {name: echo-udp, port: 7, protocol: UDP, targetPort: 7007}
            endpoints:
            - {nodeName: lan2-a, ip: 192.168.2.21}
            - {nodeName: lan2-b, ip: 192.168.2.22}
          """
        : """
          services:
          - name: demo
            ports:
            - {name: http, port: 8080}
            - {name: echo, port: 7007}
            - {name: echo-udp, port: 7007, protocol: UDP}
            endpoints:
            - {nodeName: lan2-a, ip: 127.0.0.1}
            - {nodeName: lan2-b, ip: 127.0.0.1, ports: [{name: http, port: 8081}, {name: echo, port: 7008}, {name: echo-udp, port: 7008}]}
          """;

    /// <summary>Longest wait for the whole lab to be ready.</summary>
    public static readonly TimeSpan ReadyTimeout = TimeSpan.FromSeconds(90);

    private readonly IReadOnlyList<string> _weft;
    private readonly TextWriter _progress;

    /// <param name="weftCommand">How to run this `weft` (its path, or dotnet and weft.dll).</param>
    /// <param name="progress">Where to say what is going on (stderr for the CLI).</param>
    public LabRunner(IReadOnlyList<string> weftCommand, TextWriter progress)
    {
        _weft = weftCommand;
        _progress = progress;
    }

    public static string Prefix => Environment.GetEnvironmentVariable("WEFT_LAB_PREFIX") is { Length: > 0 } p ? p : DefaultPrefix;

    /// <summary>Where the lab keeps its state, configs, keys and logs (WEFT_LAB_DIR overrides).</summary>
    public static string StateDirectory =>
        Environment.GetEnvironmentVariable("WEFT_LAB_DIR") is { Length: > 0 } d ? d
        : Environment.IsPrivilegedProcess ? "/run/weft-lab"
        : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".weft", "lab");

    public static string StateFile => Path.Combine(StateDirectory, "state.json");

    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web) { WriteIndented = true };

    public static LabState? LoadState()
    {
        if (!File.Exists(StateFile)) return null;
        try
        {
            return JsonSerializer.Deserialize<LabState>(File.ReadAllText(StateFile), Json);
        }
        catch (JsonException ex)
        {
            throw new InvalidDataException($"{StateFile} is damaged ({ex.Message}); run `weft lab down` to clean up");
        }
    }

    /// <summary>The mode <c>up</c> would choose: namespaces when root and they work, else loopback (with why).</summary>
    public static (LabMode Mode, string Why) ChooseMode(bool requireNat, bool forceLoopback = false)
    {
        if (requireNat && forceLoopback) throw new ArgumentException("--nat and --loopback exclude each other");
        if (forceLoopback) return (LabMode.Loopback, "--loopback: processes on 127.0.0.1, without NAT; the relays are still used, but every node can also reach every other directly");
        if (NatLab.CanRun(out var why)) return (LabMode.Namespaces, "root: network namespaces with NAT routers");
        if (requireNat) throw new InvalidOperationException($"--nat needs network namespaces, which cannot be made here: {why}");
        return (LabMode.Loopback, $"no network namespaces ({why}): processes on 127.0.0.1, without NAT; the relays are still used, but every node can also reach every other directly");
    }

    // ------------------------------------------------------------------ up

    /// <summary>Builds the lab, starts every process, waits until it is ready, and leaves it running.</summary>
    public async Task<LabState> UpAsync(bool requireNat, CancellationToken ct, bool forceLoopback = false)
    {
        if (LoadState() is not null) throw new InvalidOperationException($"a lab is already up ({StateFile}); run `weft lab down` first");
        var (mode, why) = ChooseMode(requireNat, forceLoopback);
        _progress.WriteLine($"lab: {why}");
        var dir = StateDirectory;
        Directory.CreateDirectory(dir);
        var processes = new List<LabProcess>();
        var state = new LabState(mode == LabMode.Namespaces ? "netns" : "loopback", Prefix, dir,
            DateTimeOffset.UtcNow.ToString("O", CultureInfo.InvariantCulture), processes, _weft);
        NatLab? lab = null;
        try
        {
            if (mode == LabMode.Namespaces)
            {
                NatLab.RemoveStale(Prefix);
                _progress.WriteLine($"lab: network namespaces {Prefix}* (public segment 10.250.0.0/24, LAN 1 192.168.1.0/24, LAN 2 192.168.2.0/24, port-restricted NAT)");
                lab = await NatLab.CreateAsync(new LabOptions { Prefix = Prefix, ExtraPublicNodes = ["relay2", "lb", "cloud-a", "cloud-b"] }, ct).ConfigureAwait(false);
                lab.Detach();
            }
            if (mode == LabMode.Loopback)
            {
                var busy = Agents.SelectMany(a => new[] { AgentPort(a.Name, mode), AdminPort(a.Name, mode) })
                    .Concat(DemoNodes.SelectMany((_, i) => new[] { DemoPort + i, DemoEchoPort + i })).Where(port => !PortFree(port)).ToList();
                if (busy.Count > 0) throw new InvalidOperationException($"the loopback lab needs 127.0.0.1 ports that are in use: {string.Join(", ", busy)}");
            }
            await File.WriteAllTextAsync(Path.Combine(dir, "psk"), "weft-lab-" + Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(16)) + "\n", ct).ConfigureAwait(false);
            SaveState(state);

            // The cloud: two replicas sharing an embedded ownership folder, haproxy in front of them as lb.
            var cloud = NatLab.FindExecutable("haproxy") is not null;
            if (cloud)
            {
                await StartCloudAsync(state, lab, processes, mode, ct).ConfigureAwait(false);
            }
            else
            {
                _progress.WriteLine("lab: haproxy is not installed (apt-get install haproxy): the cloud replicas and their load balancer are left out");
            }

            await File.WriteAllTextAsync(Path.Combine(dir, "services.yaml"), DemoServices(mode), ct).ConfigureAwait(false);
            foreach (var (name, lan) in Agents)
            {
                var config = WriteAgentConfig(dir, name, mode, cloud ? Path.Combine(dir, "tokens", name) : null);
                var log = Path.Combine(dir, name + ".log");
                var admin = AdminUrl(name, mode);
                var pid = Spawn(lab?.Namespace(name), [.. _weft, "agent", "--config", config, "--log-level", "information"], log);
                processes.Add(new LabProcess(name, name.StartsWith("relay", StringComparison.Ordinal) ? "relay" : "node", lan, pid, lab?.Namespace(name), log, config, admin));
                SaveState(state);
            }
            foreach (var node in DemoNodes)
            {
                var log = Path.Combine(dir, $"demo-{node}.log");
                var shift = mode == LabMode.Loopback ? DemoNodes.ToList().IndexOf(node) : 0;
                var listen = $"{AgentAddress(node, mode)}:{DemoPort + shift}";
                var echo = $"{AgentAddress(node, mode)}:{DemoEchoPort + shift}";
                var pid = Spawn(lab?.Namespace(node), [.. _weft, "demo-app", "--name", node, "--listen", listen, "--tcp-echo", echo, "--udp-echo", echo], log);
                processes.Add(new LabProcess("demo@" + node, "demo", LanOf(node), pid, lab?.Namespace(node), log, null, "http://" + listen));
                SaveState(state);
            }

            using var ready = CancellationTokenSource.CreateLinkedTokenSource(ct);
            ready.CancelAfter(ReadyTimeout);
            foreach (var p in processes.Where(p => p.Role != "lb"))
                await WaitLogLineAsync(p, p.Role == "demo" ? "listening" : "ready", ready.Token).ConfigureAwait(false);
            _progress.WriteLine("lab: every process is up; waiting for relay reservations");
            foreach (var (name, _) in Agents.Where(a => a.Lan != "wan"))
                await WaitAsync(() => AgentStatusAsync(state, name, ready.Token), s => Reserved(s) >= 2, $"{name} to hold reservations on both relays", ready.Token).ConfigureAwait(false);
            _progress.WriteLine("lab: waiting for lan1-a's proxy to serve demo");
            await WaitAsync(() => AgentStatusAsync(state, "lan1-a", ready.Token),
                s => s?["services"]?.AsArray().Any(v => v?["name"]?.GetValue<string>() == "demo" && v["url"] is not null) == true, "lan1-a's proxy to list demo", ready.Token).ConfigureAwait(false);
            if (cloud)
            {
                _progress.WriteLine("lab: waiting for every node's cloud session (through lb)");
                foreach (var (name, _) in Agents)
                    await WaitAsync(() => AgentStatusAsync(state, name, ready.Token), s => s?["cloud"]?["connected"]?.GetValue<bool>() == true, $"{name}'s cloud session", ready.Token).ConfigureAwait(false);
            }
            return state;
        }
        catch
        {
            _progress.WriteLine($"lab: up failed; logs are in {dir}; cleaning up");
            await DownAsync(CancellationToken.None).ConfigureAwait(false);
            throw;
        }
        finally
        {
            if (lab is not null) await lab.DisposeAsync().ConfigureAwait(false);
        }
    }

    private static string LanOf(string node) => Agents.First(a => a.Name == node).Lan;

    private static int AgentPort(string node, LabMode mode) => mode == LabMode.Namespaces ? 20006 : 21006 + 100 * Agents.ToList().FindIndex(a => a.Name == node);

    private static int AdminPort(string node, LabMode mode) => mode == LabMode.Namespaces ? 20016 : AgentPort(node, mode) + 10;

    /// <summary>Edge DNS: port 53 in a node's own namespace; on loopback, where the agents share 127.0.0.1, one port each.</summary>
    private static int DnsPort(string node, LabMode mode) => mode == LabMode.Namespaces ? 53 : AgentPort(node, mode) + 20;

    private static string AgentAddress(string node, LabMode mode) => mode == LabMode.Loopback ? "127.0.0.1" : node switch
    {
        "relay1" => "10.250.0.1",
        "relay2" => "10.250.0.2",
        "lan1-a" => "192.168.1.11",
        "lan1-b" => "192.168.1.12",
        "lan2-a" => "192.168.2.21",
        "lan2-b" => "192.168.2.22",
        _ => throw new ArgumentException($"unknown lab node {node}", nameof(node)),
    };

    private static string AdminUrl(string node, LabMode mode) => $"http://127.0.0.1:{AdminPort(node, mode)}";

    /// <summary>The two cloud replicas (the load balancer lb sits in front of them).</summary>
    public static readonly IReadOnlyList<string> CloudReplicas = ["cloud-a", "cloud-b"];

    private const int HubPort = 10000, RouterPort = 9443;

    private static string CloudAddress(string node, LabMode mode) => mode == LabMode.Loopback ? "127.0.0.1" : node switch
    {
        "lb" => "10.250.0.30",
        "cloud-a" => "10.250.0.31",
        "cloud-b" => "10.250.0.32",
        _ => throw new ArgumentException($"unknown cloud node {node}", nameof(node)),
    };

    private static int CloudPort(string node, int port, LabMode mode) =>
        mode == LabMode.Namespaces ? port : 21900 + (node == "lb" ? 0 : node == "cloud-a" ? 10 : 20) + (port == HubPort ? 1 : 2);

    /// <summary>The load balancer's hub and router URLs.</summary>
    private static (string Hub, string Router) LbUrls(LabMode mode) =>
        ($"ws://{CloudAddress("lb", mode)}:{CloudPort("lb", HubPort, mode)}", $"http://{CloudAddress("lb", mode)}:{CloudPort("lb", RouterPort, mode)}");

    private async Task StartCloudAsync(LabState state, NatLab? lab, List<LabProcess> processes, LabMode mode, CancellationToken ct)
    {
        var dir = state.Dir;
        var secret = Path.Combine(dir, "cloud-secret");
        await File.WriteAllBytesAsync(secret, System.Security.Cryptography.RandomNumberGenerator.GetBytes(32), ct).ConfigureAwait(false);
        var owners = Path.Combine(dir, "cloud-owners");
        Directory.CreateDirectory(owners);
        foreach (var r in CloudReplicas)
        {
            var address = CloudAddress(r, mode);
            var yaml = string.Create(CultureInfo.InvariantCulture, $$"""
                # written by `weft lab up`
                replica:
                  name: {{r}}
                  advertiseAddress: http://{{address}}:{{CloudPort(r, RouterPort, mode)}}
                hub:
                  listen: {{address}}:{{CloudPort(r, HubPort, mode)}}
                  allowPlaintext: true        # the lab only: real deployments use TLS
                  tokenSecretFile: {{secret}}
                router:
                  listen: {{address}}:{{CloudPort(r, RouterPort, mode)}}
                directory:
                  backend: embedded
                  embeddedPath: {{owners}}
                ruleEndpoints:
                  - {name: rest, ruleEndpointType: rest}
                  - {name: demo, ruleEndpointType: servicebus, properties: {service_port: "{{DemoPort}}" } }
                rules:
                  - {name: demo, source: rest, sourceResource: {path: /demo}, target: demo, targetResource: {path: /} }

                """);
            var config = Path.Combine(dir, r + ".yaml");
            await File.WriteAllTextAsync(config, yaml, ct).ConfigureAwait(false);
            var log = Path.Combine(dir, r + ".log");
            var pid = Spawn(lab?.Namespace(r), [.. _weft, "cloud", "--config", config, "--log-level", "information"], log);
            processes.Add(new LabProcess(r, "cloud", "cloud", pid, lab?.Namespace(r), log, config, $"http://{address}:{CloudPort(r, RouterPort, mode)}"));
            SaveState(state);
        }

        var lbAddress = IPAddress.Parse(CloudAddress("lb", mode));
        IReadOnlyList<IPEndPoint> Backends(int port) =>
            CloudReplicas.Select(r => new IPEndPoint(IPAddress.Parse(CloudAddress(r, mode)), CloudPort(r, port, mode))).ToList();
        var cfg = Services.HaproxyService.Render(
            [new Services.HaproxyFrontend("hub", Backends(HubPort)), new Services.HaproxyFrontend("router", Backends(RouterPort))],
            lbAddress, new Dictionary<string, int> { ["hub"] = CloudPort("lb", HubPort, mode), ["router"] = CloudPort("lb", RouterPort, mode) });
        var cfgPath = Path.Combine(dir, "haproxy.cfg");
        await File.WriteAllTextAsync(cfgPath, cfg, ct).ConfigureAwait(false);
        var lbLog = Path.Combine(dir, "lb.log");
        var lbPid = Spawn(lab?.Namespace("lb"), [NatLab.FindExecutable("haproxy")!, "-db", "-f", cfgPath], lbLog);
        processes.Add(new LabProcess("lb", "lb", "cloud", lbPid, lab?.Namespace("lb"), lbLog, cfgPath, LbUrls(mode).Router));
        SaveState(state);

        // Every node's hub token, as the cloud computes it.
        Directory.CreateDirectory(Path.Combine(dir, "tokens"));
        var weft = Shell.Find(_weft[0]) ?? _weft[0];
        foreach (var (name, _) in Agents)
        {
            var (code, stdout, stderr) = await Shell.RunAsync(weft, [.. _weft.Skip(1), "cloud", "token", "--config", Path.Combine(dir, "cloud-a.yaml"), name], TimeSpan.FromSeconds(30), ct).ConfigureAwait(false);
            if (code != 0) throw new InvalidOperationException($"weft cloud token {name} failed: {stderr.Trim()}");
            await File.WriteAllTextAsync(Path.Combine(dir, "tokens", name), stdout.Trim() + "\n", ct).ConfigureAwait(false);
        }
    }


    private static string WriteAgentConfig(string dir, string node, LabMode mode, string? tokenFile)
    {
        var sb = new StringBuilder();
        sb.AppendLine("# written by `weft lab up`");
        sb.AppendLine("apiVersion: agent.edgemesh.config.kubeedge.io/v1alpha1");
        sb.AppendLine("kind: EdgeMeshAgent");
        sb.AppendLine("modules:");
        sb.AppendLine("  admin:");
        sb.AppendLine(CultureInfo.InvariantCulture, $"    listen: 127.0.0.1:{AdminPort(node, mode)}");
        sb.AppendLine("  edgeTunnel:");
        sb.AppendLine(CultureInfo.InvariantCulture, $"    nodeName: {node}");
        sb.AppendLine(CultureInfo.InvariantCulture, $"    listenPort: {AgentPort(node, mode)}");
        if (mode == LabMode.Loopback)
        {
            sb.AppendLine("    listenInterfaces: lo");
            sb.AppendLine("    deniedTargets: []   # the demo app runs on 127.0.0.1 here");
            sb.AppendLine("    mdns: false         # on loopback, multicast would leave on the machine's own network");
        }
        sb.AppendLine(CultureInfo.InvariantCulture, $"    psk: {{enable: true, path: {Path.Combine(dir, "psk")}}}");
        sb.AppendLine(CultureInfo.InvariantCulture, $"    identity: {{mode: persisted, keyFile: {Path.Combine(dir, "keys", node + ".key")}}}");
        sb.AppendLine("    relayNodes:");
        foreach (var r in (string[])["relay1", "relay2"])
            sb.AppendLine(CultureInfo.InvariantCulture, $"    - {{nodeName: {r}, advertiseAddress: [\"{AgentAddress(r, mode)}:{AgentPort(r, mode)}\"]}}");
        sb.AppendLine("  edgeProxy:");
        sb.AppendLine("    enable: true");
        sb.AppendLine(CultureInfo.InvariantCulture, $"    servicesFile: {Path.Combine(dir, "services.yaml")}");
        if (mode == LabMode.Loopback)
            sb.AppendLine(CultureInfo.InvariantCulture, $"    serviceCIDR: 127.{11 + Agents.ToList().FindIndex(a => a.Name == node)}.0.0/16   # one range per agent: they share 127.0.0.1");
        sb.AppendLine("  edgeDNS:");
        sb.AppendLine("    enable: true");
        sb.AppendLine(CultureInfo.InvariantCulture, $"    listenAddress: 127.0.0.1");
        sb.AppendLine(CultureInfo.InvariantCulture, $"    listenPort: {DnsPort(node, mode)}   # demo.default.svc.cluster.local: the demo service's address on this node");
        if (tokenFile is not null)
        {
            sb.AppendLine("  cloudLink:");
            sb.AppendLine(CultureInfo.InvariantCulture, $"    urls: [\"{LbUrls(mode).Hub}\"]");
            sb.AppendLine(CultureInfo.InvariantCulture, $"    tokenFile: {tokenFile}");
            sb.AppendLine(CultureInfo.InvariantCulture, $"    appAddress: {AgentAddress(node, mode)}   # the demo app listens there");
            sb.AppendLine("    mqttBroker: none            # the lab runs no MQTT broker");
        }
        var path = Path.Combine(dir, node + ".yaml");
        File.WriteAllText(path, sb.ToString());
        return path;
    }

    /// <summary>
    /// Starts a process detached from us (its own session; stdin closed; output appended to its log), inside network
    /// namespace <paramref name="ns"/> when given. Returns its pid (setsid, ip netns exec and sh all exec, so it stays).
    /// </summary>
    private static int Spawn(string? ns, IReadOnlyList<string> argv, string log)
    {
        var setsid = NatLab.FindExecutable("setsid") ?? throw new InvalidOperationException("'setsid' (util-linux) is not installed");
        var sh = NatLab.FindExecutable("sh") ?? throw new InvalidOperationException("'sh' is not installed");
        IReadOnlyList<string> inner = [sh, "-c", "exec \"$0\" \"$@\" </dev/null >>\"$WEFT_LAB_LOG\" 2>&1", .. argv];
        if (ns is not null)
            inner = [NatLab.FindExecutable("ip") ?? throw new InvalidOperationException("'ip' (iproute2) is not installed"), "netns", "exec", ns, .. inner];
        var psi = new ProcessStartInfo(setsid) { UseShellExecute = false };
        foreach (var a in inner) psi.ArgumentList.Add(a);
        psi.Environment["WEFT_LAB_LOG"] = log;
        using var p = Process.Start(psi) ?? throw new InvalidOperationException($"cannot start {string.Join(' ', argv)}");
        return p.Id;
    }

    private static async Task WaitLogLineAsync(LabProcess p, string line, CancellationToken ct)
    {
        while (true)
        {
            if (File.Exists(p.Log))
            {
                string text;
                using (var f = new FileStream(p.Log, FileMode.Open, FileAccess.Read, FileShare.ReadWrite))
                using (var r = new StreamReader(f))
                    text = await r.ReadToEndAsync(ct).ConfigureAwait(false);
                if (text.Split('\n').Any(l => l.StartsWith(line, StringComparison.Ordinal))) return;
            }
            if (!Alive(p.Pid)) throw new InvalidOperationException($"{p.Name} exited before it was ready; its log ({p.Log}) ends:\n{Tail(p.Log)}");
            try { await Task.Delay(100, ct).ConfigureAwait(false); }
            catch (OperationCanceledException) { throw new TimeoutException($"{p.Name} did not say '{line}' within {ReadyTimeout.TotalSeconds:0} s; its log ({p.Log}) ends:\n{Tail(p.Log)}"); }
        }
    }

    private static string Tail(string path)
    {
        try { return string.Join('\n', File.ReadAllLines(path).TakeLast(15)); }
        catch (IOException) { return "(no log)"; }
    }

    private static bool Alive(int pid)
    {
        try
        {
            using var p = Process.GetProcessById(pid);
            return !p.HasExited;
        }
        catch (ArgumentException)
        {
            return false;
        }
    }

    private static async Task<T> WaitAsync<T>(Func<Task<T>> get, Func<T, bool> ok, string what, CancellationToken ct)
    {
        T last = default!;
        while (true)
        {
            try
            {
                last = await get().ConfigureAwait(false);
                if (ok(last)) return last;
            }
            catch (Exception ex) when (ex is InvalidOperationException or JsonException or LabCommandException && !ct.IsCancellationRequested) { /* not up yet */ }
            try { await Task.Delay(200, ct).ConfigureAwait(false); }
            catch (OperationCanceledException) { throw new TimeoutException($"lab: gave up waiting for {what}; last status: {last}"); }
        }
    }

    private static int Reserved(JsonNode? status) =>
        status?["relays"]?.AsArray().Count(r => r?["reserved"]?.GetValue<bool>() == true) ?? 0;

    private static void SaveState(LabState state)
    {
        var tmp = StateFile + ".tmp";
        File.WriteAllText(tmp, JsonSerializer.Serialize(state, Json));
        File.Move(tmp, StateFile, overwrite: true);
    }

    // ------------------------------------------------------------------ status, exec

    /// <summary>Runs `weft ARGS` as a node would: inside its namespace, or against its admin URL on loopback.</summary>
    private async Task<(int Code, string Out, string Err)> WeftOnAsync(LabState state, string node, IReadOnlyList<string> args, CancellationToken ct)
    {
        var p = state.Processes.FirstOrDefault(x => x.Name == node && x.Admin is not null && x.Role is "relay" or "node")
            ?? throw new ArgumentException($"no lab node '{node}'; nodes: {string.Join(", ", Agents.Select(a => a.Name))}", nameof(node));
        IReadOnlyList<string> argv = [.. state.WeftCommand, .. args, "--admin", p.Admin!];
        if (p.Namespace is not null) argv = ["ip", "netns", "exec", p.Namespace, .. argv];
        return await Shell.RunAsync(Shell.Find(argv[0]) ?? argv[0], argv.Skip(1).ToList(), TimeSpan.FromSeconds(30), ct).ConfigureAwait(false);
    }

    private async Task<JsonNode?> AgentStatusAsync(LabState state, string node, CancellationToken ct)
    {
        var (code, stdout, stderr) = await WeftOnAsync(state, node, ["status", "--json"], ct).ConfigureAwait(false);
        if (code != 0) throw new InvalidOperationException($"{node}: weft status exited {code}: {stderr.Trim()}");
        return JsonNode.Parse(stdout);
    }

    /// <summary>The lab's status as DESIGN.md §6 shapes it: nodes (with paths), services, cloud.</summary>
    public async Task<JsonObject> StatusAsync(CancellationToken ct)
    {
        var state = LoadState() ?? throw new InvalidOperationException("no lab is up; start one with `weft lab up`");
        var nodes = new JsonArray();
        JsonNode? anyStatus = null;
        foreach (var (name, lan) in Agents)
        {
            var p = state.Processes.First(x => x.Name == name);
            var node = new JsonObject
            {
                ["name"] = name,
                ["lan"] = lan,
                ["relay"] = p.Role == "relay",
                ["admin"] = p.Admin + (p.Namespace is null ? "" : $" (inside {name}'s namespace: weft lab exec {name} -- weft status)"),
                ["up"] = Alive(p.Pid),
            };
            var paths = new JsonObject();
            try
            {
                var s = await AgentStatusAsync(state, name, ct).ConfigureAwait(false);
                anyStatus ??= lan == "lan1" ? s : null;
                foreach (var peer in s?["peers"]?.AsArray() ?? [])
                {
                    var peerName = peer?["name"]?.GetValue<string>() ?? peer?["peerId"]?.GetValue<string>();
                    if (peerName is null) continue;
                    paths[peerName] = new JsonObject { ["kind"] = peer!["kind"]?.GetValue<string>(), ["via"] = peer["via"]?.DeepClone(), ["rttMs"] = peer["rttMs"]?.DeepClone() };
                }
                foreach (var relay in s?["relays"]?.AsArray() ?? [])
                {
                    var rn = relay?["name"]?.GetValue<string>();
                    if (rn is null || paths.ContainsKey(rn)) continue;
                    paths[rn] = new JsonObject { ["kind"] = relay!["state"]?.GetValue<string>() == "up" ? "direct" : "down", ["via"] = null, ["rttMs"] = relay["rttMs"]?.DeepClone() };
                }
                node["ready"] = s?["ready"]?.DeepClone();
            }
            catch (Exception ex) when (ex is InvalidOperationException or JsonException or LabCommandException)
            {
                node["error"] = ex.Message;
            }
            node["paths"] = paths;
            nodes.Add(node);
        }
        var services = new JsonArray();
        foreach (var svc in anyStatus?["services"]?.AsArray() ?? [])
            services.Add(new JsonObject
            {
                ["name"] = svc?["name"]?.DeepClone(),
                ["url"] = svc?["url"]?.DeepClone(),
                ["dnsName"] = $"{svc?["name"]}.{svc?["namespace"]}.svc.cluster.local",
                ["address"] = svc?["address"]?.DeepClone(),
            });
        JsonObject? cloud = null;
        if (state.Processes.FirstOrDefault(p => p.Role == "lb") is { } lb)
        {
            var replicas = new JsonArray();
            foreach (var r in state.Processes.Where(p => p.Role == "cloud"))
            {
                var replica = new JsonObject { ["name"] = r.Name, ["router"] = r.Admin, ["up"] = Alive(r.Pid) };
                try
                {
                    IReadOnlyList<string> argv = [.. state.WeftCommand, "cloud", "status", "--router", r.Admin!];
                    if (r.Namespace is not null) argv = ["ip", "netns", "exec", r.Namespace, .. argv];
                    var (code, stdout, stderr) = await Shell.RunAsync(Shell.Find(argv[0]) ?? argv[0], argv.Skip(1).ToList(), TimeSpan.FromSeconds(30), ct).ConfigureAwait(false);
                    if (code != 0) throw new InvalidOperationException(stderr.Trim());
                    replica["owns"] = JsonNode.Parse(stdout)?["owns"]?.DeepClone() ?? new JsonArray();
                }
                catch (Exception ex) when (ex is InvalidOperationException or JsonException or LabCommandException)
                {
                    replica["error"] = ex.Message;
                }
                replicas.Add(replica);
            }
            cloud = new JsonObject { ["lb"] = lb.Admin, ["replicas"] = replicas };
        }
        return new JsonObject
        {
            ["mode"] = state.Mode,
            ["dir"] = state.Dir,
            ["nodes"] = nodes,
            ["services"] = services,
            ["dns"] = anyStatus?["dns"]?["listen"]?.DeepClone(),
            ["cloud"] = cloud,
        };
    }

    /// <summary>Runs a command in a node's network (its namespace), with its output passed through; returns its exit code.</summary>
    public static async Task<int> ExecAsync(string node, IReadOnlyList<string> argv, CancellationToken ct)
    {
        var state = LoadState() ?? throw new InvalidOperationException("no lab is up; start one with `weft lab up`");
        if (!Agents.Any(a => a.Name == node)) throw new ArgumentException($"no lab node '{node}'; nodes: {string.Join(", ", Agents.Select(a => a.Name))}", nameof(node));
        var p = state.Processes.First(x => x.Name == node);
        IReadOnlyList<string> full = p.Namespace is null ? argv : ["ip", "netns", "exec", p.Namespace, .. argv];
        var psi = new ProcessStartInfo(Shell.Find(full[0]) ?? full[0]) { UseShellExecute = false };
        foreach (var a in full.Skip(1)) psi.ArgumentList.Add(a);
        if (p.Namespace is null)
        {
            // Loopback: every node shares 127.0.0.1, so `weft status` / `weft ping` must be told whose admin API to use.
            psi.Environment["WEFT_LAB_NODE"] = node;
            psi.Environment["WEFT_ADMIN"] = p.Admin;
        }
        using var proc = Process.Start(psi) ?? throw new InvalidOperationException($"cannot run {full[0]}");
        await proc.WaitForExitAsync(ct).ConfigureAwait(false);
        return proc.ExitCode;
    }

    // ------------------------------------------------------------------ chaos

    /// <summary>kill-relay|restore-relay NAME, partition|heal lan1|lan2.</summary>
    public async Task ChaosAsync(string action, string target, CancellationToken ct)
    {
        var state = LoadState() ?? throw new InvalidOperationException("no lab is up; start one with `weft lab up`");
        switch (action)
        {
            case "kill-relay":
            {
                var p = RelayProcess(state, target);
                if (!Alive(p.Pid)) throw new InvalidOperationException($"{target} is not running");
                Kill(p.Pid);
                _progress.WriteLine($"lab: killed {target} (pid {p.Pid})");
                break;
            }
            case "kill-cloud":
            {
                var p = CloudProcess(state, target);
                if (!Alive(p.Pid)) throw new InvalidOperationException($"{target} is not running");
                Kill(p.Pid);
                _progress.WriteLine($"lab: killed {target} (pid {p.Pid}); its edge sessions move to the other replica through lb");
                break;
            }
            case "restore-cloud":
            {
                var p = CloudProcess(state, target);
                if (Alive(p.Pid)) throw new InvalidOperationException($"{target} is running already");
                var pid = Spawn(p.Namespace, [.. state.WeftCommand, "cloud", "--config", p.Config!, "--log-level", "information"], p.Log);
                var restored = p with { Pid = pid };
                SaveState(state with { Processes = state.Processes.Select(x => x.Name == target ? restored : x).ToList() });
                using var ready = CancellationTokenSource.CreateLinkedTokenSource(ct);
                ready.CancelAfter(ReadyTimeout);
                await WaitLogLineAsync(restored, "ready", ready.Token).ConfigureAwait(false);
                _progress.WriteLine($"lab: {target} restarted (pid {pid})");
                break;
            }
            case "restore-relay":
            {
                var p = RelayProcess(state, target);
                if (Alive(p.Pid)) throw new InvalidOperationException($"{target} is running already");
                var mode = state.Mode == "netns" ? LabMode.Namespaces : LabMode.Loopback;
                IReadOnlyList<string> argv = [.. state.WeftCommand, "agent", "--config", p.Config!, "--log-level", "information"];
                var pid = Spawn(p.Namespace, argv, p.Log);
                var restored = p with { Pid = pid };
                SaveState(state with { Processes = state.Processes.Select(x => x.Name == target ? restored : x).ToList() });
                using var ready = CancellationTokenSource.CreateLinkedTokenSource(ct);
                ready.CancelAfter(ReadyTimeout);
                await WaitLogLineAsync(restored, "ready", ready.Token).ConfigureAwait(false);
                _progress.WriteLine($"lab: {target} restarted (pid {pid}, {mode})");
                break;
            }
            case "partition" or "heal":
            {
                if (state.Mode != "netns") throw new InvalidOperationException("partition and heal need the namespace lab (root): a loopback lab has no LANs to cut");
                var lan = target switch { "lan1" => 1, "lan2" => 2, _ => throw new ArgumentException($"expected lan1 or lan2, got '{target}'", nameof(target)) };
                var ipPath = Shell.Find("ip") ?? throw new InvalidOperationException("'ip' is not installed");
                await Shell.CheckAsync(ipPath, ["-n", state.Prefix + "r" + lan.ToString(CultureInfo.InvariantCulture), "link", "set", state.Prefix + "w", action == "partition" ? "down" : "up"],
                    TimeSpan.FromSeconds(10), ct).ConfigureAwait(false);
                _progress.WriteLine($"lab: {target} {(action == "partition" ? "cut off from the public segment" : "connected again")}");
                break;
            }
            default:
                throw new ArgumentException($"unknown chaos action '{action}'; use kill-relay|restore-relay NAME, kill-cloud|restore-cloud NAME, partition|heal lan1|lan2", nameof(action));
        }
    }

    private static LabProcess CloudProcess(LabState state, string name) =>
        state.Processes.FirstOrDefault(p => p.Name == name && p.Role == "cloud")
        ?? throw new ArgumentException($"no cloud replica '{name}'; replicas: {string.Join(", ", CloudReplicas)}", nameof(name));

    private static LabProcess RelayProcess(LabState state, string name) =>
        state.Processes.FirstOrDefault(p => p.Name == name && p.Role == "relay")
        ?? throw new ArgumentException($"no relay '{name}'; relays: relay1, relay2", nameof(name));

    private static void Kill(int pid)
    {
        try
        {
            using var p = Process.GetProcessById(pid);
            p.Kill(entireProcessTree: true);
            p.WaitForExit(5000);
        }
        catch (ArgumentException) { /* gone */ }
        catch (InvalidOperationException) { /* gone */ }
    }

    // ------------------------------------------------------------------ down

    /// <summary>Kills every process of the lab, deletes its namespaces and its state directory. Safe to run twice.</summary>
    public async Task DownAsync(CancellationToken ct)
    {
        var state = LoadState();
        foreach (var p in state?.Processes ?? []) Kill(p.Pid);
        var prefix = state?.Prefix ?? Prefix;
        if (NatLab.CanRun(out _))
        {
            var removed = NatLab.RemoveStale(prefix);
            if (removed.Count > 0) _progress.WriteLine($"lab: removed {removed.Count} network namespaces ({prefix}*)");
        }
        var dir = state?.Dir ?? StateDirectory;
        if (Directory.Exists(dir))
        {
            foreach (var f in Directory.EnumerateFiles(dir)) File.Delete(f);
            foreach (var d in Directory.EnumerateDirectories(dir)) Directory.Delete(d, recursive: true);
            Directory.Delete(dir);
        }
        await Task.CompletedTask.ConfigureAwait(false);
        _progress.WriteLine(state is null ? "lab: nothing was up" : "lab: down; nothing left behind");
    }

    /// <summary>True if a TCP port on 127.0.0.1 can be bound now (loopback mode checks its ports before starting).</summary>
    public static bool PortFree(int port)
    {
        try
        {
            using var l = new TcpListener(IPAddress.Loopback, port);
            l.Start();
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }
}
