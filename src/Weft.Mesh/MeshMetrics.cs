using System.Diagnostics.Metrics;

namespace Weft.Mesh;

/// <summary>
/// The agent's instruments, on meter <see cref="MeterName"/>. Observable ones read the agent's state when scraped
/// through the callbacks the agent sets (<see cref="Observe"/>).
/// </summary>
public sealed class MeshMetrics : IDisposable
{
    public const string MeterName = "Weft.Mesh";

    private readonly Meter _meter;
    private Func<IEnumerable<Measurement<long>>> _peers = () => [];
    private Func<IEnumerable<Measurement<long>>> _paths = () => [];
    private Func<IEnumerable<Measurement<long>>> _reservations = () => [];
    private Func<IEnumerable<Measurement<double>>> _relayRtt = () => [];
    private Func<IEnumerable<Measurement<long>>> _relayUp = () => [];

    /// <param name="scope">The agent's scope token (<see cref="Meter.Scope"/>): its exporter takes only its own meters.</param>
    public MeshMetrics(object? scope = null)
    {
        _meter = new Meter(MeterName, null, null, scope);
        Failovers = _meter.CreateCounter<long>("weft_relay_failovers", description: "times the preferred relay died and traffic moved to another");
        ProbeRtt = _meter.CreateHistogram<double>("weft_relay_probe_rtt_seconds", "s", "round trip of each relay liveness ping");
        TunnelStreams = _meter.CreateCounter<long>("weft_tunnel_streams", description: "tunnel streams, by direction (in/out), protocol (tcp/udp) and result");
        TunnelBytes = _meter.CreateCounter<long>("weft_tunnel_bytes", "By", "bytes carried by tunnel streams, by path (direct/relay) and direction (tx/rx)");
        PathSwitches = _meter.CreateCounter<long>("weft_path_upgrades", description: "relayed paths that became direct (hole punch or LAN)");
        ConfigReloads = _meter.CreateCounter<long>("weft_config_reloads", description: "configuration reloads, by result");
        _meter.CreateObservableGauge("weft_peers", () => _peers(), description: "peers connected, by kind (relay, node)");
        _meter.CreateObservableGauge("weft_paths", () => _paths(), description: "peers by the path their traffic takes (direct, relay)");
        _meter.CreateObservableGauge("weft_reservations", () => _reservations(), description: "relay reservations held");
        _meter.CreateObservableGauge("weft_relay_rtt_seconds", () => _relayRtt(), "s", "smoothed RTT to each relay");
        _meter.CreateObservableGauge("weft_relay_up", () => _relayUp(), description: "1 when the relay is up, by relay and role (preferred)");
        // The process, under the names Prometheus client libraries use, so dashboards and alerts can be shared.
        _meter.CreateObservableCounter("process_cpu_seconds", () => ProcessCpuSeconds(), "s", "user and system CPU time of the agent process");
        _meter.CreateObservableGauge("process_resident_memory_bytes", () => Environment.WorkingSet, "By", "resident memory of the agent process");
        _meter.CreateObservableGauge("dotnet_gc_heap_bytes", () => GC.GetGCMemoryInfo().HeapSizeBytes, "By", "managed heap size after the last collection");
        _meter.CreateObservableCounter("dotnet_gc_collections", () => GcCollections(), description: "garbage collections, by generation");
    }

    private static double ProcessCpuSeconds()
    {
        using var p = System.Diagnostics.Process.GetCurrentProcess();
        return p.TotalProcessorTime.TotalSeconds;
    }

    private static IEnumerable<Measurement<long>> GcCollections()
    {
        for (var g = 0; g <= GC.MaxGeneration; g++)
            yield return new Measurement<long>(GC.CollectionCount(g), new KeyValuePair<string, object?>("generation", g.ToString(System.Globalization.CultureInfo.InvariantCulture)));
    }

    public Counter<long> Failovers { get; }
    public Histogram<double> ProbeRtt { get; }
    public Counter<long> TunnelStreams { get; }
    public Counter<long> TunnelBytes { get; }
    public Counter<long> PathSwitches { get; }
    public Counter<long> ConfigReloads { get; }

    public void RecordRelayRtt(string relay, double seconds) => ProbeRtt.Record(seconds, new KeyValuePair<string, object?>("relay", relay));

    /// <summary>Sets the state readers behind the observable gauges.</summary>
    public void Observe(
        Func<IEnumerable<Measurement<long>>> peers,
        Func<IEnumerable<Measurement<long>>> paths,
        Func<IEnumerable<Measurement<long>>> reservations,
        Func<IEnumerable<Measurement<double>>> relayRtt,
        Func<IEnumerable<Measurement<long>>> relayUp)
    {
        _peers = peers;
        _paths = paths;
        _reservations = reservations;
        _relayRtt = relayRtt;
        _relayUp = relayUp;
    }

    public void Dispose() => _meter.Dispose();
}
