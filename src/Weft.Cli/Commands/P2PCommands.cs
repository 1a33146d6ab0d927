using System.Globalization;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Weft.P2P.Echo;
using Weft.P2P.Host;
using Weft.P2P.Perf;
using Weft.P2P.Ping;
using Weft.Wire.Identity;
using Weft.Wire.Multiformats;
using Weft.Wire.Pnet;

namespace Weft.Cli.Commands;

public static class P2PCommands
{
    /// <summary>Where `weft p2p serve` listens without --listen: loopback only, a free port.</summary>
    public const string DefaultListen = "/ip4/127.0.0.1/tcp/0";

    /// <summary>Largest PSK file we read.</summary>
    public const int MaxPskFileBytes = 64 * 1024;

    public static async Task<int> ServeAsync(string[] argv, ILoggerFactory loggers, CancellationToken ct)
    {
        const string usage = "weft p2p serve [--listen MULTIADDR]... [--key PATH] [--psk PATH]";
        var a = Args.Parse(argv, usage, ["--listen", "--key", "--psk"]);
        if (a.Positionals.Count > 0) throw new UsageException($"unexpected argument '{a.Positionals[0]}'\nusage: {usage}");
        var listen = (a.GetAll("--listen").Count > 0 ? a.GetAll("--listen") : [DefaultListen]).Select(s => ParseAddr(s, "--listen")).ToList();
        foreach (var l in listen)
            if (!l.TryGetTcpEndPoint(out _)) throw new UsageException($"--listen {l}: only /ip4/ADDR/tcp/PORT and /ip6/ADDR/tcp/PORT can be listened on");
        Ed25519PrivateKey key;
        if (a.Get("--key") is { } keyPath)
        {
            (key, var created) = KeyFiles.LoadOrCreate(keyPath);
            if (created) await Console.Error.WriteLineAsync($"weft: created a new identity key at {keyPath}").ConfigureAwait(false);
        }
        else
        {
            key = Ed25519PrivateKey.Generate();
        }
        var host = new Libp2pHost(new HostOptions { Key = key, ListenAddresses = listen, PrivateNetworkKey = LoadPsk(a.Get("--psk")) }, loggers);
        await using (host.ConfigureAwait(false))
        {
            PingService.Register(host);
            EchoService.Register(host);
            PerfService.Register(host);
            await host.StartAsync(ct).ConfigureAwait(false);
            foreach (var addr in host.ListenAddresses) Console.WriteLine($"listening {addr}/p2p/{host.PeerId}");
            await Console.Out.FlushAsync(ct).ConfigureAwait(false);
            try
            {
                await Task.Delay(Timeout.Infinite, ct).ConfigureAwait(false);
            }
            catch (OperationCanceledException) { }
        }
        return WeftCli.ExitOk;
    }

    public static async Task<int> PingAsync(string[] argv, ILoggerFactory loggers, CancellationToken ct)
    {
        const string usage = "weft p2p ping MULTIADDR [--count N] [--psk PATH]";
        var a = Args.Parse(argv, usage, ["--count", "--psk"]);
        if (a.Positionals.Count != 1) throw new UsageException($"expected one address\nusage: {usage}");
        var target = ParseAddr(a.Positionals[0], "address");
        var count = a.GetInt("--count", 4, 1, 1_000_000);
        var host = DialOnlyHost(a, loggers);
        await using (host.ConfigureAwait(false))
        {
            var started = host.Time.GetTimestamp();
            var conn = await host.DialAsync(target, ct).ConfigureAwait(false);
            Console.WriteLine($"connected to {conn.RemotePeer} at {conn.RemoteAddress} in {Ms(host.Time.GetElapsedTime(started))} ms");
            var stream = await PingService.OpenAsync(conn, ct).ConfigureAwait(false);
            await using (stream.ConfigureAwait(false))
            {
                var rtts = new List<double>();
                for (var i = 1; i <= count; i++)
                {
                    var rtt = await PingService.PingAsync(stream, host.Time, ct).ConfigureAwait(false);
                    rtts.Add(rtt.TotalMilliseconds);
                    Console.WriteLine($"pong from {conn.RemotePeer}: seq={i} time={Ms(rtt)} ms");
                }
                rtts.Sort();
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{count} pings, rtt min/median/max = {rtts[0]:0.000}/{rtts[rtts.Count / 2]:0.000}/{rtts[^1]:0.000} ms"));
            }
        }
        return WeftCli.ExitOk;
    }

    public static async Task<int> PerfAsync(string[] argv, ILoggerFactory loggers, CancellationToken ct)
    {
        const string usage = "weft p2p perf MULTIADDR [--upload BYTES] [--download BYTES] [--psk PATH] [--json]";
        var a = Args.Parse(argv, usage, ["--upload", "--download", "--psk"], ["--json"]);
        if (a.Positionals.Count != 1) throw new UsageException($"expected one address\nusage: {usage}");
        var target = ParseAddr(a.Positionals[0], "address");
        var up = a.GetBytes("--upload", 64L << 20);
        var down = a.GetBytes("--download", 64L << 20);
        if (down > PerfService.MaxDownloadBytes) throw new UsageException($"--download is limited to {PerfService.MaxDownloadBytes} bytes");
        var host = DialOnlyHost(a, loggers);
        await using (host.ConfigureAwait(false))
        {
            var conn = await host.DialAsync(target, ct).ConfigureAwait(false);
            var r = await PerfService.RunAsync(conn, up, down, host.Time, ct).ConfigureAwait(false);
            if (a.Has("--json"))
            {
                Console.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object>
                {
                    ["uploadBytes"] = r.UploadBytes, ["uploadSeconds"] = r.UploadSeconds,
                    ["downloadBytes"] = r.DownloadBytes, ["downloadSeconds"] = r.DownloadSeconds,
                }));
            }
            else
            {
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"upload   {r.UploadBytes} bytes in {r.UploadSeconds:0.000} s = {Rate(r.UploadBytes, r.UploadSeconds)}"));
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"download {r.DownloadBytes} bytes in {r.DownloadSeconds:0.000} s = {Rate(r.DownloadBytes, r.DownloadSeconds)}"));
            }
        }
        return WeftCli.ExitOk;
    }

    /// <summary>A host for one-shot client commands: a fresh identity, listening nowhere.</summary>
    private static Libp2pHost DialOnlyHost(Args a, ILoggerFactory loggers) =>
        new(new HostOptions { Key = Ed25519PrivateKey.Generate(), PrivateNetworkKey = LoadPsk(a.Get("--psk")) }, loggers);

    internal static Multiaddr ParseAddr(string s, string what)
    {
        try
        {
            return Multiaddr.Parse(s);
        }
        catch (FormatException ex)
        {
            throw new UsageException($"{what} '{s}' is not a valid multiaddr: {ex.Message}");
        }
    }

    internal static byte[]? LoadPsk(string? path)
    {
        if (path is null) return null;
        var info = new FileInfo(path);
        if (!info.Exists) throw new UsageException($"--psk {path}: file does not exist");
        if (info.Length > MaxPskFileBytes) throw new UsageException($"--psk {path}: {info.Length} bytes is too large for a PSK file (limit {MaxPskFileBytes})");
        try
        {
            return PskFile.ParseKey(File.ReadAllBytes(path));
        }
        catch (FormatException ex)
        {
            throw new UsageException($"--psk {path}: {ex.Message}");
        }
    }

    private static string Ms(TimeSpan t) => t.TotalMilliseconds.ToString("0.000", CultureInfo.InvariantCulture);

    private static string Rate(long bytes, double seconds) =>
        seconds <= 0 ? "n/a" : string.Create(CultureInfo.InvariantCulture, $"{bytes / seconds / (1 << 20):0.0} MiB/s");
}
