using System.Diagnostics.Metrics;
using System.Globalization;
using System.Text;

namespace Weft.Wire.Metrics;

/// <summary>
/// Collects the measurements of every <see cref="Meter"/> whose name starts with one of the given prefixes and writes
/// them in the Prometheus text exposition format (version 0.0.4). Counters are summed per tag set (and get a
/// <c>_total</c> suffix), gauges and observable instruments keep their latest value, histograms are bucketed
/// (<see cref="Buckets"/>). Tag sets per instrument are capped at <see cref="MaxSeriesPerInstrument"/>; further ones
/// are dropped and counted in <c>weft_metrics_dropped_series_total</c>.
/// </summary>
public sealed class PrometheusExporter : IDisposable
{
    /// <summary>Distinct tag sets kept per instrument (a bound against unbounded label values).</summary>
    public const int MaxSeriesPerInstrument = 1000;

    /// <summary>Histogram bucket upper bounds (seconds-oriented: 100 µs to 60 s, plus sizes up to 16 MiB for byte histograms).</summary>
    public static readonly double[] Buckets =
        [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 1024, 65536, 1048576, 16777216];

    private readonly MeterListener _listener = new();
    private readonly string[] _prefixes;
    private readonly object _gate = new();
    private readonly Dictionary<string, Family> _families = new(StringComparer.Ordinal);
    private long _dropped;

    private enum Kind { Counter, Gauge, Histogram }

    private sealed class Family(string name, Kind kind, string? help)
    {
        public string Name { get; } = name;
        public Kind Kind { get; } = kind;
        public string? Help { get; } = help;
        public Dictionary<string, Series> Series { get; } = new(StringComparer.Ordinal);
    }

    private sealed class Series
    {
        public double Value;
        public double Sum;
        public long Count;
        public long[]? BucketCounts;
    }

    public PrometheusExporter(params string[] meterPrefixes)
        : this(null, meterPrefixes)
    {
    }

    /// <summary>
    /// As above, keeping only meters <paramref name="accept"/> takes: several agents in one process (tests) each export
    /// their own meters (told apart by <see cref="Meter.Scope"/>) and not each other's.
    /// </summary>
    public PrometheusExporter(Func<Meter, bool>? accept, params string[] meterPrefixes)
    {
        _prefixes = meterPrefixes.Length == 0 ? ["Weft"] : meterPrefixes;
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (_prefixes.Any(p => instrument.Meter.Name.StartsWith(p, StringComparison.Ordinal)) && (accept is null || accept(instrument.Meter)))
                listener.EnableMeasurementEvents(instrument);
        };
        _listener.SetMeasurementEventCallback<long>((i, v, tags, _) => Record(i, v, tags));
        _listener.SetMeasurementEventCallback<int>((i, v, tags, _) => Record(i, v, tags));
        _listener.SetMeasurementEventCallback<double>((i, v, tags, _) => Record(i, v, tags));
        _listener.SetMeasurementEventCallback<float>((i, v, tags, _) => Record(i, v, tags));
        _listener.Start();
    }

    private static Kind KindOf(Instrument i) => i switch
    {
        Histogram<double> or Histogram<long> or Histogram<int> or Histogram<float> => Kind.Histogram,
        Counter<long> or Counter<int> or Counter<double> or Counter<float> => Kind.Counter,
        ObservableCounter<long> or ObservableCounter<int> or ObservableCounter<double> or ObservableCounter<float> => Kind.Counter,
        _ => Kind.Gauge, // gauges, up-down counters, observable gauges and up-down counters
    };

    private static bool IsObservable(Instrument i) => i.IsObservable;

    private void Record(Instrument instrument, double value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        var kind = KindOf(instrument);
        var name = MetricName(instrument.Name, kind);
        var key = Labels(tags);
        lock (_gate)
        {
            if (!_families.TryGetValue(name, out var family))
                _families[name] = family = new Family(name, kind, instrument.Description);
            if (!family.Series.TryGetValue(key, out var s))
            {
                if (family.Series.Count >= MaxSeriesPerInstrument)
                {
                    _dropped++;
                    return;
                }
                family.Series[key] = s = new Series();
            }
            switch (kind)
            {
                case Kind.Counter when IsObservable(instrument):
                case Kind.Gauge when IsObservable(instrument) || instrument is Gauge<long> or Gauge<double> or Gauge<int> or Gauge<float>:
                    s.Value = value;
                    break;
                case Kind.Counter:
                case Kind.Gauge: // up-down counter: deltas
                    s.Value += value;
                    break;
                case Kind.Histogram:
                    s.BucketCounts ??= new long[Buckets.Length];
                    for (var b = 0; b < Buckets.Length; b++)
                        if (value <= Buckets[b]) s.BucketCounts[b]++;
                    s.Sum += value;
                    s.Count++;
                    break;
            }
        }
    }

    /// <summary>Polls the observable instruments and writes every family in the Prometheus text format.</summary>
    public string Scrape()
    {
        _listener.RecordObservableInstruments();
        var sb = new StringBuilder();
        lock (_gate)
        {
            foreach (var f in _families.Values.OrderBy(f => f.Name, StringComparer.Ordinal))
            {
                if (f.Help is { Length: > 0 }) sb.Append("# HELP ").Append(f.Name).Append(' ').Append(EscapeHelp(f.Help)).Append('\n');
                sb.Append("# TYPE ").Append(f.Name).Append(' ').Append(f.Kind switch { Kind.Counter => "counter", Kind.Histogram => "histogram", _ => "gauge" }).Append('\n');
                foreach (var (labels, s) in f.Series.OrderBy(kv => kv.Key, StringComparer.Ordinal))
                {
                    if (f.Kind != Kind.Histogram)
                    {
                        Line(sb, f.Name, labels, s.Value);
                        continue;
                    }
                    for (var b = 0; b < Buckets.Length; b++)
                        Line(sb, f.Name + "_bucket", Join(labels, "le=\"" + Num(Buckets[b]) + "\""), s.BucketCounts?[b] ?? 0);
                    Line(sb, f.Name + "_bucket", Join(labels, "le=\"+Inf\""), s.Count);
                    Line(sb, f.Name + "_sum", labels, s.Sum);
                    Line(sb, f.Name + "_count", labels, s.Count);
                }
            }
            sb.Append("# TYPE weft_metrics_dropped_series_total counter\n");
            Line(sb, "weft_metrics_dropped_series_total", "", _dropped);
        }
        return sb.ToString();
    }

    /// <summary>The current value of a counter or gauge series (tests and status pages); null if never recorded.</summary>
    public double? Value(string name, params (string Key, string Value)[] labels)
    {
        _listener.RecordObservableInstruments();
        var key = Labels(labels.Select(l => new KeyValuePair<string, object?>(l.Key, l.Value)).ToArray());
        lock (_gate)
        {
            foreach (var n in (string[])[name, name + "_total"])
                if (_families.TryGetValue(n, out var f) && f.Series.TryGetValue(key, out var s))
                    return f.Kind == Kind.Histogram ? s.Count : s.Value;
        }
        return null;
    }

    private static void Line(StringBuilder sb, string name, string labels, double value)
    {
        sb.Append(name);
        if (labels.Length > 0) sb.Append('{').Append(labels).Append('}');
        sb.Append(' ').Append(Num(value)).Append('\n');
    }

    private static string Join(string labels, string extra) => labels.Length == 0 ? extra : labels + "," + extra;

    private static string Num(double v) =>
        double.IsPositiveInfinity(v) ? "+Inf" : double.IsNegativeInfinity(v) ? "-Inf" : double.IsNaN(v) ? "NaN" : v.ToString("R", CultureInfo.InvariantCulture);

    /// <summary>Metric names: [a-zA-Z_:][a-zA-Z0-9_:]*, counters ending in _total.</summary>
    private static string MetricName(string name, Kind kind)
    {
        var sb = new StringBuilder(name.Length + 6);
        foreach (var c in name) sb.Append(char.IsAsciiLetterOrDigit(c) || c is '_' or ':' ? c : '_');
        if (sb.Length == 0 || char.IsAsciiDigit(sb[0])) sb.Insert(0, '_');
        var n = sb.ToString();
        return kind == Kind.Counter && !n.EndsWith("_total", StringComparison.Ordinal) ? n + "_total" : n;
    }

    private static string Labels(ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        if (tags.Length == 0) return "";
        var pairs = new List<(string, string)>(tags.Length);
        foreach (var t in tags)
        {
            var key = new StringBuilder();
            foreach (var c in t.Key) key.Append(char.IsAsciiLetterOrDigit(c) || c == '_' ? c : '_');
            pairs.Add((key.ToString(), Convert.ToString(t.Value, CultureInfo.InvariantCulture) ?? ""));
        }
        pairs.Sort((a, b) => string.CompareOrdinal(a.Item1, b.Item1));
        return string.Join(",", pairs.Select(p => p.Item1 + "=\"" + EscapeLabel(p.Item2) + "\""));
    }

    private static string EscapeLabel(string v) => v.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\"", "\\\"", StringComparison.Ordinal).Replace("\n", "\\n", StringComparison.Ordinal);

    private static string EscapeHelp(string v) => v.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\n", "\\n", StringComparison.Ordinal);

    public void Dispose() => _listener.Dispose();
}
