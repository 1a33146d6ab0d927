using System.Globalization;
using System.Text.Json;

namespace Weft.Bench;

/// <summary>
/// weft-bench: micro and loopback benchmarks for bench/run.sh. Every mode prints exactly one
/// `RESULT {json}` line on stdout (diagnostics go to stderr) and exits 0, or prints
/// `ERROR message` on stderr and exits 1.
/// </summary>
public static class Program
{
    public const string Usage = """
        usage: weft-bench MODE [options]
          socket-pump --bytes N [--write-size B] [--read-size B]  plain loopback TCP, one direction, two sockets in one process
          alloc --bytes N [--direction up|down] [--alloc-trace on]  two Libp2pHosts in-process, one /perf/1.0.0 run; bytes allocated per MiB
          dial --count N --target MULTIADDR [--warmup W]   fresh host per iteration: dial, open ping stream, one ping
          ping --count N --target MULTIADDR [--warmup W]   ping RTT on one stream, in microseconds
          layers --bytes N [--layers a,b] [--alloc-trace on]  pump through each layer in-process (transport, +noise, +yamux)
        sizes accept K/M/G (x1000) and KiB/MiB/GiB (x1024) suffixes.
        """;

    public static async Task<int> Main(string[] args)
    {
        if (args.Length == 0 || args[0] is "-h" or "--help")
        {
            Console.Error.WriteLine(Usage);
            return args.Length == 0 ? 2 : 0;
        }
        using var cts = new CancellationTokenSource();
        Console.CancelKeyPress += (_, e) => { e.Cancel = true; cts.Cancel(); };
        try
        {
            var opts = Options.Parse(args.AsSpan(1));
            Dictionary<string, object?> result = args[0] switch
            {
                "socket-pump" => await SocketPump.RunAsync(opts, cts.Token).ConfigureAwait(false),
                "alloc" => await AllocBench.RunAsync(opts, cts.Token).ConfigureAwait(false),
                "dial" => await DialBench.RunAsync(opts, cts.Token).ConfigureAwait(false),
                "ping" => await PingBench.RunAsync(opts, cts.Token).ConfigureAwait(false),
                "layers" => await LayersBench.RunAsync(opts, cts.Token).ConfigureAwait(false),
                "dht-lookup" => await DhtLookupBench.RunAsync(opts, cts.Token).ConfigureAwait(false), "mdns-first" => await MdnsFirstBench.RunAsync(opts, cts.Token).ConfigureAwait(false),
                _ => throw new ArgumentException($"unknown mode '{args[0]}'\n{Usage}"),
            };
            var line = new Dictionary<string, object?> { ["mode"] = args[0] };
            foreach (var kv in result) line[kv.Key] = kv.Value;
            Console.WriteLine("RESULT " + JsonSerializer.Serialize(line));
            return 0;
        }
        catch (Exception ex) when (ex is ArgumentException or FormatException)
        {
            Console.Error.WriteLine("ERROR " + ex.Message);
            return 2;
        }
        catch (Exception ex)
        {
            Console.Error.WriteLine("ERROR " + ex);
            return 1;
        }
    }
}

/// <summary>`--name value` pairs.</summary>
public sealed class Options
{
    private readonly Dictionary<string, string> _values = new(StringComparer.Ordinal);

    public static Options Parse(ReadOnlySpan<string> args)
    {
        var o = new Options();
        for (var i = 0; i < args.Length; i++)
        {
            var a = args[i];
            if (!a.StartsWith("--", StringComparison.Ordinal) || i + 1 >= args.Length)
                throw new ArgumentException($"expected '--name value', got '{a}'\n{Program.Usage}");
            o._values[a] = args[++i];
        }
        return o;
    }

    public string? Get(string name) => _values.GetValueOrDefault(name);

    public string Require(string name) => Get(name) ?? throw new ArgumentException($"{name} is required\n{Program.Usage}");

    public int GetInt(string name, int fallback) =>
        Get(name) is { } s ? int.Parse(s, NumberStyles.None, CultureInfo.InvariantCulture) : fallback;

    public long GetBytes(string name, long fallback) => Get(name) is { } s ? ParseBytes(s) : fallback;

    public static long ParseBytes(string s)
    {
        (string Suffix, long Mul)[] units = [("KiB", 1L << 10), ("MiB", 1L << 20), ("GiB", 1L << 30), ("K", 1000), ("M", 1_000_000), ("G", 1_000_000_000), ("B", 1)];
        foreach (var (suffix, mul) in units)
        {
            if (s.EndsWith(suffix, StringComparison.Ordinal))
                return checked(long.Parse(s.AsSpan(0, s.Length - suffix.Length), NumberStyles.None, CultureInfo.InvariantCulture) * mul);
        }
        return long.Parse(s, NumberStyles.None, CultureInfo.InvariantCulture);
    }
}

/// <summary>Small numeric helpers shared by the modes.</summary>
public static class Stats
{
    public const double MiB = 1024 * 1024;

    /// <summary>Nearest-rank percentile of an already sorted list.</summary>
    public static double Percentile(IReadOnlyList<double> sorted, double p)
    {
        if (sorted.Count == 0) return double.NaN;
        var rank = (int)Math.Ceiling(p / 100.0 * sorted.Count);
        return sorted[Math.Clamp(rank - 1, 0, sorted.Count - 1)];
    }

    public static double Round(double v, int digits = 3) => Math.Round(v, digits, MidpointRounding.AwayFromZero);

    public static double MibPerSec(long bytes, double seconds) => seconds > 0 ? Round(bytes / MiB / seconds, 1) : 0;

    /// <summary>p50/p90/p99/min/max/mean of <paramref name="values"/> (sorted in place) under names with <paramref name="suffix"/>.</summary>
    public static void AddPercentiles(Dictionary<string, object?> into, List<double> values, string suffix, int digits = 3)
    {
        values.Sort();
        into["p50" + suffix] = Round(Percentile(values, 50), digits);
        into["p90" + suffix] = Round(Percentile(values, 90), digits);
        into["p99" + suffix] = Round(Percentile(values, 99), digits);
        into["min" + suffix] = Round(values.Count > 0 ? values[0] : double.NaN, digits);
        into["max" + suffix] = Round(values.Count > 0 ? values[^1] : double.NaN, digits);
        into["mean" + suffix] = Round(values.Count > 0 ? values.Average() : double.NaN, digits);
    }
}

/// <summary>Process CPU time and GC counters around a measured section.</summary>
public readonly struct ProcessSnapshot
{
    public TimeSpan Cpu { get; init; }
    public TimeSpan UserCpu { get; init; }
    public long Allocated { get; init; }
    public int Gen0 { get; init; }
    public int Gen1 { get; init; }
    public int Gen2 { get; init; }
    public long Timestamp { get; init; }

    public static ProcessSnapshot Take(bool preciseAlloc = false)
    {
        using var p = System.Diagnostics.Process.GetCurrentProcess();
        return new ProcessSnapshot
        {
            Cpu = p.TotalProcessorTime,
            UserCpu = p.UserProcessorTime,
            Allocated = GC.GetTotalAllocatedBytes(preciseAlloc),
            Gen0 = GC.CollectionCount(0),
            Gen1 = GC.CollectionCount(1),
            Gen2 = GC.CollectionCount(2),
            Timestamp = System.Diagnostics.Stopwatch.GetTimestamp(),
        };
    }

    /// <summary>Adds wall seconds, CPU seconds (total and user) and cores used (CPU / wall) since <paramref name="before"/>.</summary>
    public static void AddCpu(Dictionary<string, object?> into, ProcessSnapshot before, ProcessSnapshot after, string prefix = "")
    {
        var wall = System.Diagnostics.Stopwatch.GetElapsedTime(before.Timestamp, after.Timestamp).TotalSeconds;
        var cpu = (after.Cpu - before.Cpu).TotalSeconds;
        into[prefix + "wallSeconds"] = Stats.Round(wall, 4);
        into[prefix + "cpuSeconds"] = Stats.Round(cpu, 3);
        into[prefix + "userCpuSeconds"] = Stats.Round((after.UserCpu - before.UserCpu).TotalSeconds, 3);
        into[prefix + "coresUsed"] = wall > 0 ? Stats.Round(cpu / wall, 2) : 0;
    }
}
