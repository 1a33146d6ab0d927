using System.Net.Sockets;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using Weft.Cli.Commands;
using Weft.Wire;

namespace Weft.Cli;

/// <summary>The `weft` command: dispatch, exit codes (0 ok, 1 operation failed, 2 usage or config).</summary>
public static class WeftCli
{
    public const int ExitOk = 0;
    public const int ExitFailed = 1;
    public const int ExitUsage = 2;

    public const string Usage = """
        usage: weft <command> [options]

          weft key generate [--out PATH] [--force]   write a new Ed25519 key (mode 0600), print its peer ID
          weft key show PATH                         print the peer ID of a key file
          weft key legacy-id NODE_NAME               print the EdgeMesh-derived peer ID of a node name
          weft p2p serve [--listen MULTIADDR]... [--key PATH] [--psk PATH]
                         [--relay-service [--relay-limits default|off]] [--reserve RELAY_MULTIADDR]...
                                                     a libp2p host serving identify, ping, perf, echo, DCUtR;
                                                     --relay-service relays for others (circuit relay v2),
                                                     --reserve keeps a reservation on a relay and prints
                                                     "listening RELAY/p2p-circuit/p2p/ID"
          weft p2p ping MULTIADDR [--count N] [--psk PATH] [--listen MULTIADDR]... [--wait-direct SECONDS]
                                                     MULTIADDR may be a /p2p-circuit one; --wait-direct waits
                                                     for a hole punch and prints "path direct|relayed ..."
          weft p2p perf MULTIADDR [--upload BYTES] [--download BYTES] [--psk PATH] [--json]
          weft p2p serve ... [--mdns] [--rendezvous NAME] [--dht client|server [--bootstrap MULTIADDR]...]
                                                     finds peers by mDNS and the DHT; prints "discovered PEERID MULTIADDR"
          weft p2p dht put KEY VALUE | get KEY | provide KEY | find-providers KEY | find-peer PEERID --bootstrap MULTIADDR...
          weft agent --config PATH                   the edge agent (an edgemesh-agent.yaml; see docs/agent-config.md)
          weft status [--json] [--admin URL | --config PATH]
                                                     the running agent's relays, peers and paths
          weft ping NODE_NAME [--count N] [--interval MS] [--timeout MS] [--json] [--admin URL | --config PATH]
                                                     tunnel round trips to a node, each on a new stream, with its path
          weft lab up [--nat | --loopback] | status [--json] | exec NODE -- CMD... | chaos ACTION TARGET | down
                                                     the local lab: 2 relays, 2 LANs of 2 nodes, the demo service,
                                                     2 cloud replicas behind a load balancer
          weft cloud --config PATH                   one cloud replica: edge hub (WebSocket) and REST router;
                                                     prints "ready NAME ..." once both listen
          weft cloud token --config PATH NODE_NAME   print the hub token of a node
          weft cloud status --router URL             a replica's sessions and the nodes it owns (JSON)

        common options: --log-level trace|debug|information|warning|error (default warning; env WEFT_LOG)
        exit codes: 0 success, 1 operation failed, 2 bad usage or config
        """;

    public static async Task<int> RunAsync(string[] args)
    {
        using var cts = new CancellationTokenSource();
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; cts.Cancel(); });
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; cts.Cancel(); });
        var (rest, level) = ExtractLogLevel(args);
        using var loggers = LoggerFactory.Create(b => b
            .AddSimpleConsole(o => { o.SingleLine = true; o.TimestampFormat = "HH:mm:ss.fff "; })
            .AddConsole(o => o.LogToStandardErrorThreshold = LogLevel.Trace)
            .SetMinimumLevel(level));
        try
        {
            return await DispatchAsync(rest, loggers, cts.Token).ConfigureAwait(false);
        }
        catch (UsageException ex)
        {
            await Console.Error.WriteLineAsync("weft: " + ex.Message).ConfigureAwait(false);
            return ExitUsage;
        }
        catch (Exception ex) when (ex is FormatException or InvalidDataException or FileNotFoundException or DirectoryNotFoundException or UnauthorizedAccessException or ArgumentException)
        {
            await Console.Error.WriteLineAsync("weft: " + ex.Message).ConfigureAwait(false);
            return ExitUsage;
        }
        catch (OperationCanceledException) when (cts.IsCancellationRequested)
        {
            return ExitOk;
        }
        catch (Exception ex) when (ex is IOException or SocketException or TimeoutException or ProtocolViolationException
                                       or P2P.Host.DialFailedException or P2P.Multistream.ProtocolNotSupportedException
                                       or OperationCanceledException or InvalidOperationException)
        {
            await Console.Error.WriteLineAsync("weft: " + ex.Message).ConfigureAwait(false);
            return ExitFailed;
        }
    }

    private static Task<int> DispatchAsync(string[] args, ILoggerFactory loggers, CancellationToken ct)
    {
        if (args.Length == 0 || args[0] is "-h" or "--help" or "help")
        {
            Console.WriteLine(Usage);
            return Task.FromResult(args.Length == 0 ? ExitUsage : ExitOk);
        }
        if (args[0] == "--version")
        {
            Console.WriteLine("weft " + typeof(WeftCli).Assembly.GetName().Version?.ToString(3));
            return Task.FromResult(ExitOk);
        }
        switch (args[0])
        {
            case "agent": return AgentCommands.AgentAsync(args[1..], loggers, ct);
            case "status": return AgentCommands.StatusAsync(args[1..], ct);
            case "ping": return AgentCommands.PingAsync(args[1..], ct);
            case "lab": return LabCommands.RunAsync(args[1..], ct);
            case "demo-app" or "demo-call": return DemoCommands.RunAsync(args, ct); // hidden: the lab's demo service and its client
        }
        var sub = args.Length > 1 ? args[1] : "";
        var rest = args.Skip(2).ToArray();
        return (args[0], sub) switch
        {
            ("key", "generate") => Task.FromResult(KeyCommands.Generate(rest)),
            ("key", "show") => Task.FromResult(KeyCommands.Show(rest)),
            ("key", "legacy-id") => Task.FromResult(KeyCommands.LegacyId(rest)),
            ("p2p", "serve") => P2PCommands.ServeAsync(rest, loggers, ct),
            ("p2p", "ping") => P2PCommands.PingAsync(rest, loggers, ct),
            ("p2p", "perf") => P2PCommands.PerfAsync(rest, loggers, ct),
            ("p2p", "dht") => DhtCommands.RunAsync(rest, loggers, ct),
            ("cloud", _) => CloudCommands.DispatchAsync(args[1..], loggers, ct),
            _ => throw new UsageException($"unknown command '{string.Join(' ', args.Take(2))}'\n{Usage}"),
        };
    }

    private static (string[] Remaining, LogLevel Level) ExtractLogLevel(string[] args)
    {
        var level = ParseLevel(Environment.GetEnvironmentVariable("WEFT_LOG")) ?? LogLevel.Warning;
        var rest = new List<string>();
        for (var i = 0; i < args.Length; i++)
        {
            if (args[i] == "--log-level" && i + 1 < args.Length)
            {
                level = ParseLevel(args[++i]) ?? throw new UsageException($"--log-level must be one of trace, debug, information, warning, error; got '{args[i]}'");
            }
            else rest.Add(args[i]);
        }
        return (rest.ToArray(), level);
    }

    private static LogLevel? ParseLevel(string? s) => s?.ToLowerInvariant() switch
    {
        "trace" => LogLevel.Trace,
        "debug" => LogLevel.Debug,
        "info" or "information" => LogLevel.Information,
        "warn" or "warning" => LogLevel.Warning,
        "error" => LogLevel.Error,
        _ => null,
    };
}
