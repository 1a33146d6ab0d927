using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Weft.Cli.Tests.Load;
using Weft.Wire.Multiformats;
using Xunit.Abstractions;

namespace Weft.Cli.Tests;

/// <summary>Load tests take the machine for themselves: they run after the other tests, alone.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class RelayLoadCollection
{
    public const string Name = "RelayLoad";
}

/// <summary>
/// A `weft p2p serve --relay-service` process holding 1,000 reservations and 1,000 live circuits at once, its
/// memory, threads and descriptors read from /proc before and under load, its growth held to a bound.
/// </summary>
[Collection(RelayLoadCollection.Name)]
public sealed class RelayLoadTests(ITestOutputHelper output)
{
    /// <summary>Peers that reserve on the relay; each is also the target of exactly one circuit.</summary>
    public const int Peers = 1000;

    /// <summary>Circuits held open at once: one to every peer.</summary>
    public const int Circuits = Peers;

    /// <summary>
    /// Peers that also dial circuits: each dials ~16 (and is the target of one), under the relay's 32 per peer.
    /// The sources are among the 1,000 reserving peers, so the relay holds exactly one TCP connection per peer
    /// (asserted below) and the memory per reservation is not mixed with connections that hold none.
    /// </summary>
    public const int Sources = 63;

    /// <summary>Setup operations (reservations, circuit dials) in flight at once; the CI machine has 2 cores.</summary>
    public const int SetupParallelism = 64;

    /// <summary>
    /// Bound on the relay's RSS growth from idle (after start-up and a warm-up) to 1,000 reservations plus
    /// 1,000 open circuits. Measured on the 2-core CI machine (.NET 10, workstation GC), 8 runs: 52.2 to 58.1 MiB
    /// (53,416 to 59,468 KiB): ~47 KiB per reservation (each a TCP connection with Noise and yamux), ~7 KiB per
    /// circuit (two yamux streams and a bridge). The bound is about twice the largest, rounded up: 120 MiB.
    /// </summary>
    public const long MaxRssGrowthKiB = 120 * 1024;

    /// <summary>After the load the relay must serve again: more reservations than its spare capacity (1,100 − 1,000).</summary>
    public const int FreshPeers = 200;

    /// <summary>Circuits opened after the load: more than the relay's spare circuit capacity (1,100 − 1,000).</summary>
    public const int FreshSources = 8, FreshCircuitsPerSource = 16;

    /// <summary>The relay's caps: room for the load plus 10%, so a leak of the load's state shows as refusals afterwards.</summary>
    public const int RelayCap = 1100;

    private static readonly TimeSpan StartDeadline = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan PhaseDeadline = TimeSpan.FromSeconds(60);
    private static readonly TimeSpan SmallPhaseDeadline = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan ProcPollInterval = TimeSpan.FromMilliseconds(50);

    [Fact]
    public async Task Relay_holds_1000_reservations_and_1000_live_circuits_within_a_memory_bound()
    {
        var total = Stopwatch.StartNew();
        var seconds = new Dictionary<string, double>();
        var phase = Stopwatch.StartNew();
        void Lap(string name)
        {
            seconds[name] = Math.Round(phase.Elapsed.TotalSeconds, 2);
            phase.Restart();
        }

        await using var relay = MeasuredWeftProcess.Start(
            "p2p", "serve", "--listen", "/ip4/127.0.0.1/tcp/0", "--relay-service", "--relay-limits", "off",
            "--max-connections", "1200", "--relay-max-reservations", Cap, "--relay-max-reservations-per-ip", Cap,
            "--relay-max-circuits", Cap, "--relay-max-circuits-per-peer", "32");
        var relayAddr = Multiaddr.Parse((await relay.WaitLineAsync("listening ", StartDeadline))["listening ".Length..]);
        Assert.StartsWith($"relay service on, limits off, reservations {RelayCap}", await relay.WaitLineAsync("relay service ", StartDeadline));
        var started = relay.Sample();
        Lap("start");

        // Warm-up: every code path once (JIT, pools, first allocations), then back to no peers.
        await using (var warm = new RelayLoadPeers(relayAddr))
        {
            await warm.AddHostsAsync(16);
            Require("warm-up reservations", await warm.ReserveAsync(0, 16, SetupParallelism, SmallPhaseDeadline));
            Require("warm-up circuits", await warm.OpenCircuitsAsync([.. Enumerable.Range(0, 8).Select(i => (i, i + 8))], SetupParallelism, SmallPhaseDeadline));
            Require("warm-up close", await warm.CloseAllAsync(SetupParallelism, SmallPhaseDeadline));
        }
        await relay.WaitUntilAsync(s => s.TcpConnections == 0, SmallPhaseDeadline, ProcPollInterval, "the relay closing the warm-up connections");
        var before = relay.Sample();
        Lap("warmup");

        await using var peers = new RelayLoadPeers(relayAddr);
        await peers.AddHostsAsync(Peers);
        var reserved = await peers.ReserveAsync(0, Peers, SetupParallelism, PhaseDeadline);
        Assert.True(reserved.Ok == Peers, "reservations: " + reserved.Describe());
        var withReservations = relay.Sample();
        Lap("reserve");

        var circuits = await peers.OpenCircuitsAsync(CircuitPairs(), SetupParallelism, PhaseDeadline);
        Assert.True(circuits.Ok == Circuits, "circuits: " + circuits.Describe());
        var opened = relay.Sample();
        Lap("circuits");

        // A second echo through every circuit proves all 1,000 were live at once; measured again with them all still open.
        var again = await peers.EchoAllAsync(1, SetupParallelism, SmallPhaseDeadline);
        Assert.True(again.Ok == Circuits, "second echo: " + again.Describe());
        var echoed = relay.Sample();
        var loaded = echoed.RssKiB >= opened.RssKiB ? echoed : opened;
        var generatorRssKiB = Environment.WorkingSet / 1024;
        Lap("echo");

        Require("closing the load", await peers.CloseAllAsync(SetupParallelism, SmallPhaseDeadline));
        var after = await relay.WaitUntilAsync(s => s.TcpConnections == 0, SmallPhaseDeadline, ProcPollInterval, "the relay closing the load's connections");
        Lap("teardown");

        // The relay forgot the load: more fresh reservations and circuits than it had room for beside the old ones.
        await using (var fresh = new RelayLoadPeers(relayAddr))
        {
            await fresh.AddHostsAsync(FreshPeers);
            var r = await fresh.ReserveAsync(0, FreshPeers, SetupParallelism, SmallPhaseDeadline);
            Assert.True(r.Ok == FreshPeers, "fresh reservations after the load: " + r.Describe());
            var pairs = new List<(int, int)>();
            for (var k = 0; k < FreshSources * FreshCircuitsPerSource; k++) pairs.Add((k % FreshSources, FreshSources + k));
            var c = await fresh.OpenCircuitsAsync(pairs, SetupParallelism, SmallPhaseDeadline);
            Assert.True(c.Ok == pairs.Count, "fresh circuits after the load: " + c.Describe());
            Require("closing the fresh peers", await fresh.CloseAllAsync(SetupParallelism, SmallPhaseDeadline));
        }
        Assert.False(relay.HasExited, "the relay exited; stderr: " + relay.Stderr);
        var final = relay.Sample();
        Lap("fresh");
        seconds["total"] = Math.Round(total.Elapsed.TotalSeconds, 2);

        var growth = loaded.RssKiB - before.RssKiB;
        var perReservation = (withReservations.RssKiB - before.RssKiB) / (double)Peers;
        var perCircuit = (loaded.RssKiB - withReservations.RssKiB) / (double)Circuits;
        Report(started, before, withReservations, opened, echoed, after, final, growth, perReservation, perCircuit, generatorRssKiB, seconds, relay.Stderr);

        Assert.Equal(Peers, withReservations.TcpConnections); // one connection per peer, circuits ride on them
        Assert.Equal(Peers, echoed.TcpConnections);
        Assert.True(growth < MaxRssGrowthKiB,
            $"relay RSS grew {growth} KiB ({before.RssKiB} → {loaded.RssKiB}) under {Peers} reservations and {Circuits} circuits; bound {MaxRssGrowthKiB} KiB");
    }

    private static string Cap => RelayCap.ToString(CultureInfo.InvariantCulture);

    /// <summary>
    /// (source, target) per circuit: every peer is the target of one circuit; sources are peers 0..62, none dials
    /// itself, and no two peers get circuits both ways (one connection per pair of peers).
    /// </summary>
    public static List<(int Source, int Target)> CircuitPairs()
    {
        var pairs = new List<(int, int)>(Circuits);
        for (var t = 0; t < Circuits; t++) pairs.Add((t >= Sources ? t % Sources : (t + 1) % Sources, t));
        return pairs;
    }

    [Fact]
    public void Circuit_plan_targets_every_peer_once_within_the_per_peer_cap()
    {
        var pairs = CircuitPairs();
        Assert.Equal(Circuits, pairs.Count);
        Assert.Equal(Enumerable.Range(0, Peers), pairs.Select(p => p.Target).Order());
        Assert.All(pairs, p => Assert.NotEqual(p.Source, p.Target));
        var set = pairs.ToHashSet();
        Assert.All(pairs, p => Assert.DoesNotContain((p.Target, p.Source), set));
        // The relay counts circuits per peer in both roles: out as a source plus in as a target.
        var perPeer = new int[Peers];
        foreach (var (s, t) in pairs) { perPeer[s]++; perPeer[t]++; }
        Assert.InRange(perPeer.Max(), 1, 32);
        Assert.Equal(Sources, pairs.Select(p => p.Source).Distinct().Count());
    }

    private static void Require(string what, BatchResult r)
    {
        if (r.Ok != r.Count) throw new Xunit.Sdk.XunitException($"{what}: {r.Describe()}");
    }

    private void Report(ProcStats started, ProcStats before, ProcStats reserved, ProcStats opened, ProcStats echoed, ProcStats after, ProcStats final,
        long growth, double perReservation, double perCircuit, long generatorRssKiB, Dictionary<string, double> seconds, string relayStderr)
    {
        var table = new StringBuilder();
        table.AppendLine(CultureInfo.InvariantCulture, $"relay process under load ({Peers} reservations, {Circuits} circuits from {Sources} sources, {RelayLoadPeers.PayloadBytes} B echoed twice per circuit)");
        table.AppendLine("stage                          RSS MiB   peak MiB  threads    fds    tcp");
        void Row(string name, ProcStats s) =>
            table.AppendLine(CultureInfo.InvariantCulture, $"{name,-30} {s.RssMiB,7:0.0} {s.HwmMiB,10:0.0} {s.Threads,8} {s.Fds,6} {s.TcpConnections,6}");
        Row("started", started);
        Row("idle after warm-up (before)", before);
        Row($"{Peers} reservations", reserved);
        Row($"+ {Circuits} circuits opened", opened);
        Row("  all echoed again, still open", echoed);
        Row("load closed", after);
        Row("after fresh peers", final);
        table.AppendLine(CultureInfo.InvariantCulture, $"RSS growth under full load (larger of the two loaded rows): {growth} KiB ({growth / 1024.0:0.0} MiB), bound {MaxRssGrowthKiB} KiB");
        table.AppendLine(CultureInfo.InvariantCulture, $"per reservation: {perReservation:0.0} KiB; per circuit: {perCircuit:0.0} KiB");
        table.AppendLine(CultureInfo.InvariantCulture, $"load generator RSS: {generatorRssKiB / 1024.0:0.0} MiB");
        table.AppendLine("seconds: " + string.Join(", ", seconds.Select(kv => string.Create(CultureInfo.InvariantCulture, $"{kv.Key} {kv.Value:0.00}"))));
        var warnings = relayStderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        table.AppendLine(CultureInfo.InvariantCulture, $"relay stderr: {warnings.Length} lines{(warnings.Length == 0 ? "" : "; first: " + warnings[0])}");
        output.WriteLine(table.ToString());

        static Dictionary<string, long> Stage(ProcStats s) => new()
        {
            ["rssKiB"] = s.RssKiB, ["hwmKiB"] = s.HwmKiB, ["threads"] = s.Threads, ["fds"] = s.Fds, ["tcpConnections"] = s.TcpConnections,
        };
        var json = JsonSerializer.Serialize(new Dictionary<string, object>
        {
            ["test"] = "relay-load",
            ["utc"] = DateTimeOffset.UtcNow.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture),
            ["reservations"] = Peers,
            ["circuits"] = Circuits,
            ["sources"] = Sources,
            ["payloadBytes"] = RelayLoadPeers.PayloadBytes,
            ["started"] = Stage(started),
            ["before"] = Stage(before),
            ["reserved"] = Stage(reserved),
            ["circuitsOpened"] = Stage(opened),
            ["circuitsEchoed"] = Stage(echoed),
            ["closed"] = Stage(after),
            ["final"] = Stage(final),
            ["rssGrowthKiB"] = growth,
            ["rssGrowthBoundKiB"] = MaxRssGrowthKiB,
            ["perReservationKiB"] = Math.Round(perReservation, 2),
            ["perCircuitKiB"] = Math.Round(perCircuit, 2),
            ["loadGeneratorRssKiB"] = generatorRssKiB,
            ["seconds"] = seconds,
        });
        var dir = Path.Combine(RepoRoot().FullName, "artifacts");
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "relay-load.json"), json + "\n");
        output.WriteLine(json);
    }

    /// <summary>The repository root (where Weft.slnx is): above the test binaries, or above this source file when the build output lives elsewhere.</summary>
    private static DirectoryInfo RepoRoot() =>
        FindRoot(AppContext.BaseDirectory) ?? FindRoot(Path.GetDirectoryName(SourceFile())!)
        ?? throw new InvalidOperationException("cannot find the repository root (Weft.slnx) above " + AppContext.BaseDirectory);

    private static DirectoryInfo? FindRoot(string start)
    {
        var dir = new DirectoryInfo(start);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Weft.slnx"))) dir = dir.Parent;
        return dir;
    }

    private static string SourceFile([System.Runtime.CompilerServices.CallerFilePath] string path = "") => path;
}
