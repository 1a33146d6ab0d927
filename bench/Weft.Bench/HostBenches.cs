using System.Diagnostics;
using Weft.P2P.Host;
using Weft.P2P.Perf;
using Weft.P2P.Ping;
using Weft.Wire.Identity;
using Weft.Wire.Multiformats;

namespace Weft.Bench;

/// <summary>
/// Two Libp2pHosts in this process on 127.0.0.1, one /perf/1.0.0 run of --bytes (after a warm-up run).
/// Reports throughput, CPU time, and GC.GetTotalAllocatedBytes(precise: true) growth per MiB moved.
/// The allocation counter is process-wide, so the number covers BOTH sides (sender and receiver)
/// together, plus anything the runtime allocates meanwhile. `--alloc-trace on` adds a by-type breakdown (AllocTrace).
/// </summary>
public static class AllocBench
{
    public const long WarmupBytes = 64L * 1024 * 1024;

    public static async Task<Dictionary<string, object?>> RunAsync(Options o, CancellationToken ct)
    {
        var bytes = o.GetBytes("--bytes", 1L << 30);
        var direction = o.Get("--direction") ?? "up";
        if (direction is not ("up" or "down")) throw new ArgumentException("--direction must be up or down");
        if (bytes <= 0) throw new ArgumentException("--bytes must be positive");
        using var trace = o.Get("--alloc-trace") == "on" ? new AllocTrace() : null;

        await using var server = new Libp2pHost(new HostOptions { Key = Ed25519PrivateKey.Generate(), ListenAddresses = [Multiaddr.Parse("/ip4/127.0.0.1/tcp/0")] });
        PerfService.Register(server);
        await server.StartAsync(ct).ConfigureAwait(false);
        await using var client = new Libp2pHost(new HostOptions { Key = Ed25519PrivateKey.Generate() });
        var target = server.ListenAddresses[0].Encapsulate("/p2p/" + server.PeerId);
        var conn = await client.DialAsync(target, ct).ConfigureAwait(false);
        var up = direction == "up";

        // warm-up: JIT tiering, pools, yamux window growth
        await PerfService.RunAsync(conn, up ? WarmupBytes : 0, up ? 0 : WarmupBytes, client.Time, ct).ConfigureAwait(false);
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();

        trace?.Start();
        var before = ProcessSnapshot.Take(preciseAlloc: true);
        var r = await PerfService.RunAsync(conn, up ? bytes : 0, up ? 0 : bytes, client.Time, ct).ConfigureAwait(false);
        var after = ProcessSnapshot.Take(preciseAlloc: true);
        trace?.Stop();

        // up: from the first byte until the server's EOF (it drained everything); down: until the last byte.
        var seconds = r.UploadSeconds + r.DownloadSeconds;
        var alloc = after.Allocated - before.Allocated;
        var res = new Dictionary<string, object?>
        {
            ["direction"] = direction,
            ["bytes"] = bytes,
            ["seconds"] = Stats.Round(seconds, 4),
            ["mibPerSec"] = Stats.MibPerSec(bytes, seconds),
            ["allocatedBytes"] = alloc,
            ["allocBytesPerMiB"] = Stats.Round(alloc / (bytes / Stats.MiB), 1),
            ["allocScope"] = "whole process: both hosts (sender + receiver) together",
            ["gen0"] = after.Gen0 - before.Gen0,
            ["gen1"] = after.Gen1 - before.Gen1,
            ["gen2"] = after.Gen2 - before.Gen2,
        };
        ProcessSnapshot.AddCpu(res, before, after);
        if (trace is not null) res["sampledAllocBytesPerMiBByType"] = trace.Report(bytes);
        res["cpuSecondsPerGiB"] = Stats.Round((after.Cpu - before.Cpu).TotalSeconds / (bytes / (1024.0 * Stats.MiB)), 3);
        return res;
    }
}

/// <summary>
/// Dial-to-first-stream: each iteration makes a fresh host (new key, generated before the clock
/// starts), dials the target, opens a /ipfs/ping/1.0.0 stream (multistream-select done) and does
/// one ping. The first --warmup iterations (default 5) are run but excluded from the percentiles. A failed
/// iteration is counted ("failures", "firstError") and left out; more than 1 in 20 failing fails the run.
/// </summary>
public static class DialBench
{
    public const int DefaultWarmup = 5;

    /// <summary>More than one failed dial in this many fails the whole run.</summary>
    public const int MaxFailureFraction = 20;

    public static async Task<Dictionary<string, object?>> RunAsync(Options o, CancellationToken ct)
    {
        var count = o.GetInt("--count", 100);
        var warmup = o.GetInt("--warmup", DefaultWarmup);
        var target = Multiaddr.Parse(o.Require("--target"));
        if (count <= 0) throw new ArgumentException("--count must be positive");

        var connectMs = new List<double>(count);
        var streamMs = new List<double>(count);
        var pingMs = new List<double>(count);
        var failures = 0;
        string? firstError = null;
        for (var i = 0; i < warmup + count; i++)
        {
            var key = Ed25519PrivateKey.Generate();
            var host = new Libp2pHost(new HostOptions { Key = key });
            await using (host.ConfigureAwait(false))
            {
                try
                {
                    var start = Stopwatch.GetTimestamp();
                    var conn = await host.DialAsync(target, ct).ConfigureAwait(false);
                    var connected = Stopwatch.GetElapsedTime(start);
                    var stream = await PingService.OpenAsync(conn, ct).ConfigureAwait(false);
                    var negotiated = Stopwatch.GetElapsedTime(start);
                    await using (stream.ConfigureAwait(false))
                    {
                        var rtt = await PingService.PingAsync(stream, host.Time, ct).ConfigureAwait(false);
                        if (i >= warmup)
                        {
                            connectMs.Add(connected.TotalMilliseconds);
                            streamMs.Add(negotiated.TotalMilliseconds);
                            pingMs.Add(rtt.TotalMilliseconds);
                        }
                    }
                }
                catch (Exception ex) when (!ct.IsCancellationRequested)
                {
                    // a failed dial is counted and reported, not timed; too many of them fail the run
                    failures++;
                    firstError ??= $"iteration {i}: {ex.GetType().Name}: {ex.Message}";
                    Console.Error.WriteLine($"dial iteration {i} failed: {ex}");
                    if (failures > Math.Max(1, (warmup + count) / MaxFailureFraction))
                        throw new InvalidOperationException($"{failures} of {i + 1} dials failed; first: {firstError}", ex);
                }
            }
        }
        var r = new Dictionary<string, object?>
        {
            ["count"] = streamMs.Count, ["warmupExcluded"] = warmup, ["failures"] = failures, ["firstError"] = firstError,
            ["target"] = target.ToString(),
        };
        Stats.AddPercentiles(r, streamMs, "FirstStreamMs");
        Stats.AddPercentiles(r, connectMs, "ConnectMs");
        Stats.AddPercentiles(r, pingMs, "FirstPingMs");
        return r;
    }
}

/// <summary>
/// RTT of /ipfs/ping/1.0.0 on one stream of one connection: --warmup pings (default 200) are
/// excluded, then --count pings are timed one after another.
/// </summary>
public static class PingBench
{
    public const int DefaultWarmup = 200;

    public static async Task<Dictionary<string, object?>> RunAsync(Options o, CancellationToken ct)
    {
        var count = o.GetInt("--count", 1000);
        var warmup = o.GetInt("--warmup", DefaultWarmup);
        var target = Multiaddr.Parse(o.Require("--target"));
        if (count <= 0) throw new ArgumentException("--count must be positive");

        await using var host = new Libp2pHost(new HostOptions { Key = Ed25519PrivateKey.Generate() });
        var conn = await host.DialAsync(target, ct).ConfigureAwait(false);
        var stream = await PingService.OpenAsync(conn, ct).ConfigureAwait(false);
        var us = new List<double>(count);
        await using (stream.ConfigureAwait(false))
        {
            for (var i = 0; i < warmup; i++) await PingService.PingAsync(stream, host.Time, ct).ConfigureAwait(false);
            for (var i = 0; i < count; i++)
            {
                var rtt = await PingService.PingAsync(stream, host.Time, ct).ConfigureAwait(false);
                us.Add(rtt.TotalMicroseconds);
            }
        }
        var r = new Dictionary<string, object?> { ["count"] = count, ["warmupExcluded"] = warmup, ["target"] = target.ToString() };
        Stats.AddPercentiles(r, us, "Us", 1);
        return r;
    }
}
