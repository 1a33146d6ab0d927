using System.Globalization;
using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Weft.Mesh.Admin;
using Weft.Mesh.Agent;
using Weft.Mesh.Config;

namespace Weft.Cli.Commands;

/// <summary>`weft agent`, and the commands that talk to a running agent's admin API: `weft status`, `weft ping`.</summary>
public static class AgentCommands
{
    public const string AgentUsage = "weft agent --config PATH";
    public const string StatusUsage = "weft status [--json] [--admin URL | --config PATH]   (default: $WEFT_ADMIN, else http://127.0.0.1:20016)";
    public const string PingUsage = "weft ping NODE_NAME [--count N] [--interval MS] [--timeout MS] [--json] [--admin URL | --config PATH]";

    /// <summary>Longest wait for the admin API to answer a status request.</summary>
    public static readonly TimeSpan AdminTimeout = TimeSpan.FromSeconds(10);

    public static async Task<int> AgentAsync(string[] argv, ILoggerFactory loggers, CancellationToken ct)
    {
        var a = Args.Parse(argv, AgentUsage, ["--config"]);
        if (a.Positionals.Count > 0) throw new UsageException($"unexpected argument '{a.Positionals[0]}'\nusage: {AgentUsage}");
        var path = a.Get("--config") ?? throw new UsageException($"--config is required\nusage: {AgentUsage}");
        AgentConfig config;
        try
        {
            config = AgentConfigLoader.Load(path);
        }
        catch (ConfigException ex)
        {
            throw new UsageException($"{path}: {ex.Problems.Count} problem(s):\n  " + string.Join("\n  ", ex.Problems));
        }

        MeshAgent agent;
        try
        {
            agent = await MeshAgent.StartAsync(config, loggers, ct).ConfigureAwait(false);
        }
        catch (ConfigException ex)
        {
            throw new UsageException($"{path}: " + string.Join("\n  ", ex.Problems));
        }
        await using (agent.ConfigureAwait(false))
        {
            var log = loggers.CreateLogger("Weft.Cli.Agent");
            var output = new LineWriter();
            output.Write($"agent {config.NodeName} {agent.Host.PeerId}");
            foreach (var l in agent.Host.ListenAddresses) output.Write($"listening {l}/p2p/{agent.Host.PeerId}");
            AdminServer? admin = null;
            if (config.Admin.Enable)
            {
                try
                {
                    var metricsOnly = config.Metrics.Enable ? new IPEndPoint(IPAddress.Any, config.Metrics.Port) : null;
                    admin = await AdminServer.StartAsync(agent, config.Admin.Listen, metricsOnly, ct).ConfigureAwait(false);
                }
                catch (IOException ex)
                {
                    throw new UsageException($"modules.admin.listen {config.Admin.Listen}: cannot listen ({ex.Message}); choose a free port");
                }
                foreach (var u in admin.Urls) output.Write($"admin {u.ToString().TrimEnd('/')}");
            }
            var cloud = StartCloudLink(config, loggers);
            if (cloud is not null) agent.CloudStatus = () => cloud.Status;
            try
            {
                agent.Punched += r => output.Write(r.Succeeded
                    ? string.Create(CultureInfo.InvariantCulture, $"direct {r.Peer} {r.Direct!.RemoteAddress} after {r.Elapsed.TotalMilliseconds:0.0} ms")
                    : $"relayed {r.Peer}: no direct connection after {r.Attempts} attempt(s)");
                var watcher = config.ConfigPath is null ? null : new ConfigWatcher(config.ConfigPath, agent.ApplyConfigAsync, agent.ReportConfigError, log);
                try
                {
                    output.Write("ready");
                    await Task.Delay(Timeout.Infinite, ct).ConfigureAwait(false);
                }
                catch (OperationCanceledException) { }
                finally
                {
                    if (watcher is not null) await watcher.DisposeAsync().ConfigureAwait(false);
                }
            }
            finally
            {
                if (cloud is not null) await cloud.DisposeAsync().ConfigureAwait(false);
                if (admin is not null) await admin.DisposeAsync().ConfigureAwait(false);
            }
        }
        return WeftCli.ExitOk;
    }

    /// <summary>The cloud link (KubeEdge's edgehub: hub session, servicebus, eventbus) when modules.cloudLink asks for it.</summary>
    private static Weft.Edge.CloudLink? StartCloudLink(AgentConfig config, ILoggerFactory loggers)
    {
        var c = config.CloudLink;
        if (!c.Enable) return null;
        var options = new Weft.Edge.EdgeOptions
        {
            NodeName = config.NodeName,
            CloudUrls = c.Urls,
            Token = File.ReadAllText(c.TokenFile!).Trim(),
            TrustedCaFile = c.TrustedCaFile,
            AppAddress = c.AppAddress,
            MqttBroker = c.MqttBroker,
        };
        var problems = options.Validate();
        if (problems.Count > 0) throw new UsageException("modules.cloudLink: " + string.Join("\n  ", problems));
        var link = new Weft.Edge.CloudLink(options, loggers);
        link.Start();
        return link;
    }

    private static Uri AdminUrl(Args a)
    {
        if (a.Get("--admin") is { } u)
        {
            if (!Uri.TryCreate(u, UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https"))
                throw new UsageException($"--admin {u}: expected a URL such as http://127.0.0.1:{AdminConfig.DefaultPort}");
            return uri;
        }
        if (a.Get("--config") is { } path)
        {
            try
            {
                var c = AgentConfigLoader.Load(path);
                var ep = c.Admin.Listen;
                var host = ep.Address.Equals(IPAddress.Any) ? "127.0.0.1" : ep.Address.ToString();
                return new Uri($"http://{(ep.Address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6 ? $"[{host}]" : host)}:{ep.Port}");
            }
            catch (ConfigException ex)
            {
                throw new UsageException($"{path}: " + string.Join("\n  ", ex.Problems));
            }
        }
        if (Environment.GetEnvironmentVariable("WEFT_ADMIN") is { Length: > 0 } env && Uri.TryCreate(env, UriKind.Absolute, out var fromEnv)) return fromEnv;
        return new Uri($"http://127.0.0.1:{AdminConfig.DefaultPort}");
    }

    private static HttpClient Client(Uri baseUrl) => new() { BaseAddress = baseUrl, Timeout = Timeout.InfiniteTimeSpan };

    public static async Task<int> StatusAsync(string[] argv, CancellationToken ct)
    {
        var a = Args.Parse(argv, StatusUsage, ["--admin", "--config"], ["--json"]);
        if (a.Positionals.Count > 0) throw new UsageException($"unexpected argument '{a.Positionals[0]}'\nusage: {StatusUsage}");
        var url = AdminUrl(a);
        using var http = Client(url);
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        cts.CancelAfter(AdminTimeout);
        string body;
        try
        {
            body = await http.GetStringAsync(new Uri("/status", UriKind.Relative), cts.Token).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException)
        {
            throw new IOException($"no agent answers at {url} ({ex.Message}); is `weft agent` running, and is its admin address this one?");
        }
        if (a.Has("--json"))
        {
            Console.WriteLine(body);
            return WeftCli.ExitOk;
        }
        var s = JsonSerializer.Deserialize<AgentStatus>(body, AdminServer.Json) ?? throw new InvalidDataException("empty status");
        Console.Write(Describe(s));
        return WeftCli.ExitOk;
    }

    internal static string Describe(AgentStatus s)
    {
        var sb = new StringBuilder();
        var inv = CultureInfo.InvariantCulture;
        sb.AppendLine(string.Create(inv, $"node {s.Node} ({s.PeerId}), {(s.Ready ? "ready" : "NOT READY: " + string.Join("; ", s.NotReadyBecause))}, reachability {s.Reachability}"));
        if (s.RelayRole.Configured)
        {
            var reach = string.Join(", ", s.RelayRole.Reachability.Select(kv => kv.Key + " " + kv.Value));
            sb.AppendLine(string.Create(inv, $"relay service {(s.RelayRole.Serving ? "on" : "off")}: {s.RelayRole.Reservations} reservation(s), {s.RelayRole.Circuits} circuit(s); {reach}"));
        }
        sb.AppendLine(string.Create(inv, $"relays (preferred: {s.PreferredRelay ?? "none"}, failovers: {s.Failovers}):"));
        foreach (var r in s.Relays)
            sb.AppendLine(string.Create(inv, $"  {r.Name,-16} {r.State,-10} {(r.Reserved ? "reserved" : "-"),-9} rtt {(r.RttMs is { } t ? t.ToString("0.000", inv) + " ms" : "?"),-12} {(r.Preferred ? "preferred" : "")}{(r.LastError is null ? "" : " last error: " + r.LastError)}"));
        sb.AppendLine("peers:");
        foreach (var p in s.Peers)
            sb.AppendLine(string.Create(inv, $"  {p.Name ?? p.PeerId,-16} {p.Kind,-7} {(p.Via is null ? "" : "via " + p.Via),-14} rtt {(p.RttMs is { } t ? t.ToString("0.000", inv) + " ms" : "?"),-12} bytes direct {p.DirectBytes} relayed {p.RelayedBytes}"));
        if (s.Services.Count > 0) sb.AppendLine("services:");
        foreach (var v in s.Services)
            sb.AppendLine(string.Create(inv, $"  {v.Namespace + "/" + v.Name,-24} {v.Url ?? v.Address ?? "-",-32} {v.Endpoints.Count} endpoint(s){(v.Error is null ? "" : " error: " + v.Error)}"));
        if (s.Dns is { } d)
            sb.AppendLine(string.Create(inv, $"edge DNS {(d.Listening ? "at " + d.Listen : "NOT listening at " + d.Listen)} for *.svc.{d.Domain}, upstreams {(d.Upstreams.Count == 0 ? "none" : string.Join(", ", d.Upstreams))}: {d.Queries} queries, {d.Answered} answered, {d.Forwarded} forwarded, {d.Failed} failed"));
        foreach (var w in s.Warnings) sb.AppendLine("warning: " + w);
        return sb.ToString();
    }

    public static async Task<int> PingAsync(string[] argv, CancellationToken ct)
    {
        var a = Args.Parse(argv, PingUsage, ["--admin", "--config", "--count", "--interval", "--timeout"], ["--json"]);
        var json = a.Has("--json");
        if (a.Positionals.Count != 1) throw new UsageException($"expected one node name\nusage: {PingUsage}");
        var node = a.Positionals[0];
        var count = a.GetInt("--count", 4, 1, AdminServer.MaxPingCount);
        var interval = a.GetInt("--interval", 1000, 0, 3_600_000);
        var timeout = a.GetInt("--timeout", 5000, 1, AdminServer.MaxPingTimeoutMs);
        var url = AdminUrl(a);
        using var http = Client(url);
        var query = $"/ping?node={Uri.EscapeDataString(node)}&count={count}&intervalMs={interval}&timeoutMs={timeout}";
        HttpResponseMessage response;
        try
        {
            // Replies stream in as they happen: read them as they come, not when the whole answer is in.
            using var request = new HttpRequestMessage(HttpMethod.Post, new Uri(query, UriKind.Relative));
            response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, ct).ConfigureAwait(false);
        }
        catch (HttpRequestException ex)
        {
            throw new IOException($"no agent answers at {url} ({ex.Message}); is `weft agent` running?");
        }
        using (response)
        {
            if (!response.IsSuccessStatusCode)
            {
                var err = await response.Content.ReadFromJsonAsync<JsonElement>(AdminServer.Json, ct).ConfigureAwait(false);
                await Console.Error.WriteLineAsync("weft: " + (err.TryGetProperty("error", out var e) ? e.GetString() : response.StatusCode.ToString())).ConfigureAwait(false);
                return response.StatusCode == HttpStatusCode.NotFound ? WeftCli.ExitFailed : WeftCli.ExitUsage;
            }
            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(ct).ConfigureAwait(false));
            int ok = 0, failed = 0;
            var rtts = new List<double>();
            while (await reader.ReadLineAsync(ct).ConfigureAwait(false) is { } line)
            {
                var r = JsonSerializer.Deserialize<PingReply>(line, AdminServer.Json)!;
                if (json) Console.WriteLine(line);
                if (r.Ok)
                {
                    ok++;
                    rtts.Add(r.RttMs!.Value);
                    if (!json) Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"pong from {node}: seq={r.Seq} time={r.RttMs:0.000} ms open={r.OpenMs:0.000} ms path {r.Path}{(r.Via is null ? "" : " via " + r.Via)}"));
                }
                else
                {
                    failed++;
                    if (!json) Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"no pong from {node}: seq={r.Seq} after {r.OpenMs:0.0} ms: {r.Error}"));
                }
            }
            rtts.Sort();
            if (!json) Console.WriteLine(rtts.Count == 0
                ? $"{ok + failed} sent, 0 answered"
                : string.Create(CultureInfo.InvariantCulture, $"{ok + failed} sent, {ok} answered, rtt min/median/max {rtts[0]:0.000}/{rtts[rtts.Count / 2]:0.000}/{rtts[^1]:0.000} ms"));
            return ok > 0 ? WeftCli.ExitOk : WeftCli.ExitFailed;
        }
    }
}
