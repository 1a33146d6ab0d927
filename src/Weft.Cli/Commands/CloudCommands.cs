using Microsoft.Extensions.Logging;
using Weft.Cloud;
using Weft.Cloud.Config;
using Weft.Cloud.Hub;

namespace Weft.Cli.Commands;

/// <summary>`weft cloud --config PATH` (one replica) and `weft cloud token --config PATH NODE` (a node's hub token).</summary>
public static class CloudCommands
{
    public const string Usage = "weft cloud --config PATH | weft cloud token --config PATH NODE_NAME | weft cloud status --router URL";

    public static Task<int> DispatchAsync(string[] argv, ILoggerFactory loggers, CancellationToken ct) =>
        argv.Length > 0 && argv[0] == "token" ? Task.FromResult(Token(argv[1..]))
        : argv.Length > 0 && argv[0] == "status" ? StatusAsync(argv[1..], ct)
        : RunAsync(argv, loggers, ct);

    /// <summary>A replica's /_weft/status as one JSON line (sessions, the nodes it owns, its directory's health).</summary>
    public static async Task<int> StatusAsync(string[] argv, CancellationToken ct)
    {
        var a = Args.Parse(argv, Usage, ["--router"]);
        var url = a.Get("--router") ?? throw new UsageException($"--router URL is required (a replica's router, e.g. http://127.0.0.1:9443)\nusage: {Usage}");
        if (!Uri.TryCreate(url, UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https")) throw new UsageException($"--router {url}: not an http URL");
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
        try
        {
            Console.WriteLine((await http.GetStringAsync(new Uri(uri, "/_weft/status"), ct).ConfigureAwait(false)).Trim());
            return WeftCli.ExitOk;
        }
        catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException)
        {
            throw new IOException($"no replica answers at {uri} ({ex.Message})");
        }
    }

    public static async Task<int> RunAsync(string[] argv, ILoggerFactory loggers, CancellationToken ct)
    {
        var a = Args.Parse(argv, Usage, ["--config"]);
        if (a.Positionals.Count > 0) throw new UsageException($"unexpected argument '{a.Positionals[0]}'\nusage: {Usage}");
        var options = Load(a);
        var service = new CloudService(options, loggers);
        await using (service.ConfigureAwait(false))
        {
            await service.StartAsync(ct).ConfigureAwait(false);
            var o = service.Options;
            var scheme = o.Hub.TlsCertFile is null ? "ws" : "wss";
            Console.WriteLine($"hub {scheme}://{o.Hub.Listen}");
            Console.WriteLine($"router http://{o.Router.Listen}");
            Console.WriteLine($"ready {o.Replica.Name} advertise {o.Replica.AdvertiseAddress} directory {service.Directory.Backend}{(service.Directory.Health.Healthy ? "" : " (degraded: " + service.Directory.Health.Reason + ")")}");
            Console.Out.Flush();
            try
            {
                await Task.Delay(Timeout.Infinite, ct).ConfigureAwait(false);
            }
            catch (OperationCanceledException) { }
        }
        return WeftCli.ExitOk;
    }

    public static int Token(string[] argv)
    {
        var a = Args.Parse(argv, Usage, ["--config"]);
        if (a.Positionals.Count != 1) throw new UsageException($"expected one node name\nusage: {Usage}");
        var node = a.Positionals[0];
        if (!NodeTokens.IsValidNodeName(node)) throw new UsageException($"'{node}' is not a node name (lower-case letters, digits, '-', '.')");
        var options = Load(a);
        Console.WriteLine(NodeTokens.FromFile(options.Hub.TokenSecretFile).TokenFor(node));
        return WeftCli.ExitOk;
    }

    private static CloudOptions Load(Args a)
    {
        var path = a.Get("--config") ?? throw new UsageException($"--config PATH is required\nusage: {Usage}");
        try
        {
            return CloudConfigLoader.LoadFile(path);
        }
        catch (CloudConfigException ex)
        {
            throw new UsageException($"{path}: {ex.Problems.Count} problem(s):\n  " + string.Join("\n  ", ex.Problems));
        }
    }
}
