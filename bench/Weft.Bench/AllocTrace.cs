using System.Collections.Concurrent;
using System.Diagnostics.Tracing;

namespace Weft.Bench;

/// <summary>
/// `--alloc-trace on`: samples allocations with the runtime's GC AllocationTick event (one event about every
/// 100 KB allocated) and sums the sampled bytes by type, size class of the sampled object and heap (SOH, LOH, POH = pinned). It tells which kind of
/// object the bytes-per-MiB figure is made of, without a profiler; it has no stacks.
/// </summary>
public sealed class AllocTrace : EventListener
{
    private const long GcKeyword = 0x1;
    private readonly ConcurrentDictionary<string, long> _bytes = new(StringComparer.Ordinal);
    private volatile bool _on;

    public void Start()
    {
        _bytes.Clear();
        _on = true;
    }

    public void Stop() => _on = false;

    protected override void OnEventSourceCreated(EventSource source)
    {
        if (source.Name == "Microsoft-Windows-DotNETRuntime")
            EnableEvents(source, EventLevel.Verbose, (EventKeywords)GcKeyword);
    }

    protected override void OnEventWritten(EventWrittenEventArgs e)
    {
        if (!_on || e.EventName is null || !e.EventName.StartsWith("GCAllocationTick", StringComparison.Ordinal) || e.Payload is null) return;
        string type = "?";
        long amount = 0;
        uint kind = 0;
        long size = -1;
        for (var i = 0; i < e.Payload.Count; i++)
        {
            switch (e.PayloadNames?[i])
            {
                case "TypeName": type = e.Payload[i] as string ?? "?"; break;
                case "AllocationAmount64": amount = Convert.ToInt64(e.Payload[i], System.Globalization.CultureInfo.InvariantCulture); break;
                case "ObjectSize": size = Convert.ToInt64(e.Payload[i], System.Globalization.CultureInfo.InvariantCulture); break;
                case "AllocationKind": kind = Convert.ToUInt32(e.Payload[i], System.Globalization.CultureInfo.InvariantCulture); break;
            }
        }
        var heap = kind switch { 0 => "SOH", 1 => "LOH", 2 => "POH", _ => "kind" + kind };
        var sizeClass = size < 0 ? "" : size <= 1024 ? " <=1K" : size <= 8192 ? " <=8K" : size <= 70000 ? " <=68K" : " >68K";
        _bytes.AddOrUpdate($"{type}{sizeClass} ({heap})", amount, (_, v) => v + amount);
    }

    /// <summary>The sampled bytes by "type (heap)", largest first, as MiB-rounded values per MiB moved.</summary>
    public Dictionary<string, object?> Report(long bytesMoved)
    {
        var r = new Dictionary<string, object?>();
        foreach (var kv in _bytes.OrderByDescending(k => k.Value).Take(8))
            r[kv.Key] = Stats.Round(kv.Value / (bytesMoved / Stats.MiB), 1);
        return r;
    }
}
