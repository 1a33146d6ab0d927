using System.Globalization;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace Weft.Cloud.Config;

/// <summary>
/// A strict walk over a YAML mapping: every key read is declared, every unknown key and every bad value is
/// added to <see cref="Problems"/> as "line L: path: what is wrong; how to fix it", and reading goes on so that
/// one run lists every problem.
/// </summary>
public sealed class YamlTree
{
    private readonly List<string> _problems;
    private readonly YamlMappingNode? _map;
    private readonly string _path;
    private readonly HashSet<string> _read = new(StringComparer.Ordinal);

    private YamlTree(YamlMappingNode? map, string path, List<string> problems)
    {
        _map = map;
        _path = path;
        _problems = problems;
    }

    public IReadOnlyList<string> Problems => _problems;

    public bool Present => _map is not null;

    /// <summary>Parses a document whose root must be a mapping (an empty document is an empty mapping).</summary>
    public static YamlTree Parse(string text, List<string> problems)
    {
        var stream = new YamlStream();
        try
        {
            stream.Load(new StringReader(text));
        }
        catch (YamlException ex)
        {
            problems.Add($"line {ex.Start.Line}: not valid YAML: {ex.Message}");
            return new YamlTree(null, "", problems);
        }
        if (stream.Documents.Count == 0) return new YamlTree(new YamlMappingNode(), "", problems);
        if (stream.Documents[0].RootNode is YamlMappingNode m) return new YamlTree(m, "", problems);
        problems.Add("the file must hold a YAML mapping (key: value lines) at the top level");
        return new YamlTree(null, "", problems);
    }

    private string Path(string key) => _path.Length == 0 ? key : _path + "." + key;

    private YamlNode? Node(string key)
    {
        _read.Add(key);
        if (_map is null) return null;
        foreach (var (k, v) in _map.Children)
            if (k is YamlScalarNode s && s.Value == key) return v is YamlScalarNode { Value: null or "" or "~" } n && n.Style == ScalarStyle.Plain ? null : v;
        return null;
    }

    private void Problem(YamlNode node, string key, string message) =>
        _problems.Add($"line {node.Start.Line}: {Path(key)}: {message}");

    /// <summary>Records a problem about this mapping as a whole (or a key of it).</summary>
    public void Problem(string key, string message) =>
        _problems.Add(_map is null ? $"{Path(key)}: {message}" : $"line {_map.Start.Line}: {Path(key)}: {message}");

    public YamlTree Map(string key)
    {
        var n = Node(key);
        if (n is null) return new YamlTree(null, Path(key), _problems);
        if (n is YamlMappingNode m) return new YamlTree(m, Path(key), _problems);
        Problem(n, key, "must be a mapping of keys to values");
        return new YamlTree(null, Path(key), _problems);
    }

    public IReadOnlyList<YamlTree> List(string key)
    {
        var n = Node(key);
        if (n is null) return [];
        if (n is not YamlSequenceNode seq)
        {
            Problem(n, key, "must be a list (lines starting with '- ')");
            return [];
        }
        var list = new List<YamlTree>();
        for (var i = 0; i < seq.Children.Count; i++)
        {
            if (seq.Children[i] is YamlMappingNode m) list.Add(new YamlTree(m, $"{Path(key)}[{i}]", _problems));
            else _problems.Add($"line {seq.Children[i].Start.Line}: {Path(key)}[{i}]: must be a mapping");
        }
        return list;
    }

    public IReadOnlyList<string> Strings(string key)
    {
        var n = Node(key);
        if (n is null) return [];
        if (n is YamlScalarNode s) return [s.Value ?? ""];
        if (n is not YamlSequenceNode seq)
        {
            Problem(n, key, "must be a list of strings");
            return [];
        }
        var list = new List<string>();
        foreach (var c in seq.Children)
        {
            if (c is YamlScalarNode cs) list.Add(cs.Value ?? "");
            else _problems.Add($"line {c.Start.Line}: {Path(key)}: every item must be a string");
        }
        return list;
    }

    public Dictionary<string, string> StringMap(string key)
    {
        var d = new Dictionary<string, string>(StringComparer.Ordinal);
        var n = Node(key);
        if (n is null) return d;
        if (n is not YamlMappingNode m)
        {
            Problem(n, key, "must be a mapping of strings");
            return d;
        }
        foreach (var (k, v) in m.Children)
        {
            if (k is YamlScalarNode ks && v is YamlScalarNode vs) d[ks.Value ?? ""] = vs.Value ?? "";
            else _problems.Add($"line {k.Start.Line}: {Path(key)}: keys and values must be strings");
        }
        return d;
    }

    public string? String(string key) => Node(key) switch
    {
        null => null,
        YamlScalarNode s => s.Value,
        var n => Bad<string>(n, key, "must be a string"),
    };

    public string String(string key, string fallback) => String(key) ?? fallback;

    public bool Bool(string key, bool fallback) => Node(key) switch
    {
        null => fallback,
        YamlScalarNode { Value: "true" or "True" or "yes" } => true,
        YamlScalarNode { Value: "false" or "False" or "no" } => false,
        var n => Bad<bool>(n, key, "must be true or false"),
    };

    public int Int(string key, int fallback, int min, int max)
    {
        var n = Node(key);
        if (n is null) return fallback;
        if (n is YamlScalarNode s && int.TryParse(s.Value, NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) && v >= min && v <= max) return v;
        return Bad(n, key, $"must be a whole number from {min} to {max}", fallback);
    }

    /// <summary>A duration such as 500ms, 5s, 2m or 1h (a bare number is seconds, as KubeEdge's config).</summary>
    public TimeSpan Duration(string key, TimeSpan fallback, TimeSpan min, TimeSpan max)
    {
        var n = Node(key);
        if (n is null) return fallback;
        if (n is YamlScalarNode s && ParseDuration(s.Value) is { } d && d >= min && d <= max) return d;
        return Bad(n, key, $"must be a duration from {Show(min)} to {Show(max)} such as 500ms, 5s or 2m", fallback);
    }

    /// <summary>A byte count such as 1048576, 64KiB, 12MiB.</summary>
    public long Bytes(string key, long fallback, long min, long max)
    {
        var n = Node(key);
        if (n is null) return fallback;
        if (n is YamlScalarNode s && ParseBytes(s.Value) is { } b && b >= min && b <= max) return b;
        return Bad(n, key, $"must be a byte count from {min} to {max} such as 65536, 64KiB or 12MiB", fallback);
    }

    /// <summary>Reports every key of this mapping that was never read.</summary>
    public void RejectUnknown()
    {
        if (_map is null) return;
        foreach (var (k, _) in _map.Children)
        {
            var name = (k as YamlScalarNode)?.Value ?? "?";
            if (!_read.Contains(name))
                _problems.Add($"line {k.Start.Line}: {Path(name)}: unknown key; known keys here: {string.Join(", ", _read.Order(StringComparer.Ordinal))}");
        }
    }

    private T Bad<T>(YamlNode n, string key, string message, T fallback = default!)
    {
        Problem(n, key, message + (n is YamlScalarNode s ? $", got '{s.Value}'" : ""));
        return fallback;
    }

    public static string Show(TimeSpan t) =>
        t.TotalMilliseconds < 1000 ? $"{t.TotalMilliseconds:0}ms" : t.TotalSeconds < 120 ? $"{t.TotalSeconds:0.###}s" : $"{t.TotalMinutes:0.##}m";

    public static TimeSpan? ParseDuration(string? s)
    {
        if (string.IsNullOrWhiteSpace(s)) return null;
        s = s.Trim();
        (string Suffix, double Ms)[] units = [("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000), ("", 1000)];
        foreach (var (suffix, ms) in units)
        {
            if (!s.EndsWith(suffix, StringComparison.Ordinal)) continue;
            if (double.TryParse(s[..^suffix.Length], NumberStyles.Float, CultureInfo.InvariantCulture, out var v) && v >= 0 && v < 1e9)
                return TimeSpan.FromMilliseconds(v * ms);
            if (suffix.Length > 0 && suffix != "s" && suffix != "m") continue;
        }
        return null;
    }

    public static long? ParseBytes(string? s)
    {
        if (string.IsNullOrWhiteSpace(s)) return null;
        (string Suffix, long Factor)[] units = [("KiB", 1L << 10), ("MiB", 1L << 20), ("GiB", 1L << 30), ("KB", 1000), ("MB", 1_000_000), ("B", 1), ("", 1)];
        foreach (var (suffix, factor) in units)
        {
            if (!s.EndsWith(suffix, StringComparison.OrdinalIgnoreCase)) continue;
            if (long.TryParse(s[..^suffix.Length], NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n <= long.MaxValue / factor) return n * factor;
        }
        return null;
    }
}
