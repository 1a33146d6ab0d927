using System.Globalization;
using YamlDotNet.RepresentationModel;

namespace Weft.Mesh.Config;

/// <summary>Problems found while reading a configuration: each names where it is and how to fix it.</summary>
public sealed class ConfigProblems
{
    private readonly List<string> _items = [];

    public IReadOnlyList<string> Items => _items;

    public bool Any => _items.Count > 0;

    public void Add(string path, YamlNode? at, string message) =>
        _items.Add(at is null ? $"{path}: {message}" : $"{path} (line {at.Start.Line}): {message}");

    public void Add(string message) => _items.Add(message);

    public override string ToString() => string.Join('\n', _items);
}

/// <summary>
/// A YAML mapping read the way EdgeMesh reads its config (sigs.k8s.io/yaml into encoding/json): keys match without
/// regard to case. Every key read is remembered, so <see cref="ReportUnknown"/> can name the ones nobody asked for,
/// with the closest known key as a suggestion.
/// </summary>
public sealed class YamlSection
{
    private readonly YamlMappingNode _node;
    private readonly ConfigProblems _problems;
    private readonly HashSet<string> _known = new(StringComparer.OrdinalIgnoreCase);
    private readonly List<YamlSection> _children = [];

    public YamlSection(YamlMappingNode node, string path, ConfigProblems problems)
    {
        _node = node;
        Path = path;
        _problems = problems;
    }

    /// <summary>Dotted path of this mapping from the document root ("" for the root).</summary>
    public string Path { get; }

    public YamlNode Node => _node;

    private string Child(string key) => Path.Length == 0 ? key : Path + "." + key;

    /// <summary>Marks keys as known without reading them (accepted for compatibility, not used).</summary>
    public void Accept(params string[] keys)
    {
        foreach (var k in keys) _known.Add(k);
    }

    private YamlNode? Find(string key)
    {
        _known.Add(key);
        YamlNode? found = null;
        foreach (var (k, v) in _node.Children)
        {
            if (k is YamlScalarNode s && string.Equals(s.Value, key, StringComparison.OrdinalIgnoreCase))
            {
                if (found is not null) _problems.Add(Child(key), k, "appears twice; keep one (keys are not case-sensitive)");
                found = v;
            }
        }
        return found is YamlScalarNode { Value: null or "" or "~" or "null", Style: YamlDotNet.Core.ScalarStyle.Plain } ? null : found;
    }

    /// <summary>True if the key is present (with any value but null).</summary>
    public bool Has(string key) => Find(key) is not null;

    public YamlSection? Section(string key)
    {
        var n = Find(key);
        if (n is null) return null;
        if (n is not YamlMappingNode m)
        {
            _problems.Add(Child(key), n, "must be a mapping (key: value lines indented under it)");
            return null;
        }
        var s = new YamlSection(m, Child(key), _problems);
        _children.Add(s);
        return s;
    }

    public IReadOnlyList<YamlSection> Sections(string key)
    {
        var n = Find(key);
        if (n is null) return [];
        if (n is not YamlSequenceNode seq)
        {
            _problems.Add(Child(key), n, "must be a list (lines starting with '- ')");
            return [];
        }
        var list = new List<YamlSection>();
        var i = 0;
        foreach (var item in seq.Children)
        {
            if (item is YamlMappingNode m)
            {
                var s = new YamlSection(m, $"{Child(key)}[{i}]", _problems);
                _children.Add(s);
                list.Add(s);
            }
            else
            {
                _problems.Add($"{Child(key)}[{i}]", item, "must be a mapping");
            }
            i++;
        }
        return list;
    }

    public string? String(string key)
    {
        var n = Find(key);
        if (n is null) return null;
        if (n is YamlScalarNode s) return s.Value;
        _problems.Add(Child(key), n, "must be a single value, not a list or mapping");
        return null;
    }

    public IReadOnlyList<string>? Strings(string key)
    {
        var n = Find(key);
        if (n is null) return null;
        if (n is YamlScalarNode s) return s.Value is null ? [] : [s.Value];
        if (n is not YamlSequenceNode seq)
        {
            _problems.Add(Child(key), n, "must be a list of values");
            return null;
        }
        var list = new List<string>();
        foreach (var item in seq.Children)
        {
            if (item is YamlScalarNode { Value: { } v }) list.Add(v);
            else _problems.Add(Child(key), item, "every item must be a single value");
        }
        return list;
    }

    public bool? Bool(string key)
    {
        var n = Find(key);
        if (n is null) return null;
        if (n is YamlScalarNode { Value: { } v })
        {
            if (string.Equals(v, "true", StringComparison.OrdinalIgnoreCase)) return true;
            if (string.Equals(v, "false", StringComparison.OrdinalIgnoreCase)) return false;
        }
        _problems.Add(Child(key), n, $"'{Show(n)}' is not a boolean; write true or false");
        return null;
    }

    public int? Int(string key, int min, int max)
    {
        var n = Find(key);
        if (n is null) return null;
        if (n is YamlScalarNode { Value: { } v } && int.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out var i))
        {
            if (i >= min && i <= max) return i;
            _problems.Add(Child(key), n, $"{i} is out of range; use {min}..{max}");
            return null;
        }
        _problems.Add(Child(key), n, $"'{Show(n)}' is not a whole number; use {min}..{max}");
        return null;
    }

    public double? Double(string key, double min, double max)
    {
        var n = Find(key);
        if (n is null) return null;
        if (n is YamlScalarNode { Value: { } v } && double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out var d) && double.IsFinite(d))
        {
            if (d >= min && d <= max) return d;
            _problems.Add(Child(key), n, $"{d} is out of range; use {min}..{max}");
            return null;
        }
        _problems.Add(Child(key), n, $"'{Show(n)}' is not a number; use {min}..{max}");
        return null;
    }

    /// <summary>A duration written as "250ms", "1.5s", "2m", "1h", or a bare number of <paramref name="bareUnit"/>.</summary>
    public TimeSpan? Duration(string key, TimeSpan min, TimeSpan max, TimeSpan bareUnit)
    {
        var n = Find(key);
        if (n is null) return null;
        if (n is YamlScalarNode { Value: { } v } && TryParseDuration(v, bareUnit, out var d))
        {
            if (d >= min && d <= max) return d;
            _problems.Add(Child(key), n, $"{v} is out of range; use {FormatDuration(min)}..{FormatDuration(max)}");
            return null;
        }
        _problems.Add(Child(key), n, $"'{Show(n)}' is not a duration; write e.g. 500ms, 2s, 1m");
        return null;
    }

    public static bool TryParseDuration(string s, TimeSpan bareUnit, out TimeSpan value)
    {
        value = default;
        s = s.Trim();
        (string num, double scale) = s switch
        {
            _ when s.EndsWith("ms", StringComparison.OrdinalIgnoreCase) => (s[..^2], 1e-3),
            _ when s.EndsWith('s') || s.EndsWith('S') => (s[..^1], 1.0),
            _ when s.EndsWith('m') || s.EndsWith('M') => (s[..^1], 60.0),
            _ when s.EndsWith('h') || s.EndsWith('H') => (s[..^1], 3600.0),
            _ => (s, bareUnit.TotalSeconds),
        };
        if (!double.TryParse(num, NumberStyles.Float, CultureInfo.InvariantCulture, out var d) || !double.IsFinite(d) || d < 0) return false;
        var seconds = d * scale;
        if (seconds > TimeSpan.MaxValue.TotalSeconds / 2) return false;
        value = TimeSpan.FromSeconds(seconds);
        return true;
    }

    public static string FormatDuration(TimeSpan t) =>
        t.TotalMilliseconds < 1000 ? $"{t.TotalMilliseconds:0.###}ms"
        : t.TotalSeconds < 120 ? $"{t.TotalSeconds:0.###}s"
        : t.TotalMinutes < 120 ? $"{t.TotalMinutes:0.###}m"
        : $"{t.TotalHours:0.###}h";

    private static string Show(YamlNode n) => n is YamlScalarNode s ? s.Value ?? "" : n.NodeType.ToString().ToLowerInvariant();

    /// <summary>Reports every key of this mapping and of the sections read from it that nobody asked for.</summary>
    public void ReportUnknown()
    {
        foreach (var (k, _) in _node.Children)
        {
            var name = (k as YamlScalarNode)?.Value ?? "";
            if (_known.Contains(name)) continue;
            var suggestion = Closest(name, _known);
            _problems.Add(Child(name), k, suggestion is null
                ? "unknown key; remove it (see docs/agent-config.md for the keys)"
                : $"unknown key; did you mean '{suggestion}'?");
        }
        foreach (var c in _children) c.ReportUnknown();
    }

    private static string? Closest(string name, IEnumerable<string> known)
    {
        string? best = null;
        var bestDistance = int.MaxValue;
        foreach (var k in known)
        {
            var d = Distance(name.ToLowerInvariant(), k.ToLowerInvariant());
            if (d < bestDistance) { bestDistance = d; best = k; }
        }
        return best is not null && bestDistance <= Math.Max(2, name.Length / 3) ? best : null;
    }

    private static int Distance(string a, string b)
    {
        var prev = new int[b.Length + 1];
        var cur = new int[b.Length + 1];
        for (var j = 0; j <= b.Length; j++) prev[j] = j;
        for (var i = 1; i <= a.Length; i++)
        {
            cur[0] = i;
            for (var j = 1; j <= b.Length; j++)
                cur[j] = Math.Min(Math.Min(cur[j - 1] + 1, prev[j] + 1), prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1));
            (prev, cur) = (cur, prev);
        }
        return prev[b.Length];
    }
}
