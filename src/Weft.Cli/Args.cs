using System.Globalization;

namespace Weft.Cli;

/// <summary>Bad command-line usage: exit code 2 with this message.</summary>
public sealed class UsageException(string message) : Exception(message);

/// <summary>
/// A strict parser: options are declared up front; anything else is an error that names the option
/// and shows the usage line.
/// </summary>
public sealed class Args
{
    private readonly Dictionary<string, List<string>> _values = new(StringComparer.Ordinal);
    private readonly HashSet<string> _flags = new(StringComparer.Ordinal);

    public IReadOnlyList<string> Positionals { get; }

    private Args(List<string> positionals) => Positionals = positionals;

    /// <param name="valued">options that take a value (may repeat)</param>
    /// <param name="flags">options without a value</param>
    public static Args Parse(IReadOnlyList<string> argv, string usage, IEnumerable<string> valued, IEnumerable<string>? flags = null)
    {
        var v = valued.ToHashSet(StringComparer.Ordinal);
        var f = (flags ?? []).ToHashSet(StringComparer.Ordinal);
        var pos = new List<string>();
        var a = new Args(pos);
        for (var i = 0; i < argv.Count; i++)
        {
            var t = argv[i];
            if (t == "--")
            {
                pos.AddRange(argv.Skip(i + 1));
                break;
            }
            if (t.StartsWith("--", StringComparison.Ordinal))
            {
                var name = t;
                string? inline = null;
                var eq = t.IndexOf('=');
                if (eq > 0) { name = t[..eq]; inline = t[(eq + 1)..]; }
                if (v.Contains(name))
                {
                    var value = inline ?? (i + 1 < argv.Count ? argv[++i] : throw new UsageException($"{name} needs a value\nusage: {usage}"));
                    if (!a._values.TryGetValue(name, out var list)) a._values[name] = list = [];
                    list.Add(value);
                }
                else if (f.Contains(name) && inline is null)
                {
                    a._flags.Add(name);
                }
                else
                {
                    throw new UsageException($"unknown option {name}\nusage: {usage}");
                }
            }
            else
            {
                pos.Add(t);
            }
        }
        return a;
    }

    public bool Has(string flag) => _flags.Contains(flag);

    public string? Get(string name) => _values.TryGetValue(name, out var l) ? l[^1] : null;

    public IReadOnlyList<string> GetAll(string name) => _values.TryGetValue(name, out var l) ? l : [];

    public int GetInt(string name, int fallback, int min, int max)
    {
        var s = Get(name);
        if (s is null) return fallback;
        if (!int.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out var n) || n < min || n > max)
            throw new UsageException($"{name} must be a whole number from {min} to {max}, got '{s}'");
        return n;
    }

    /// <summary>A byte count: a whole number with an optional K, M, G (×1000) or KiB, MiB, GiB (×1024) suffix.</summary>
    public long GetBytes(string name, long fallback)
    {
        var s = Get(name);
        if (s is null) return fallback;
        return ParseBytes(s) ?? throw new UsageException($"{name} must be a byte count like 1048576, 16MiB or 1G, got '{s}'");
    }

    public static long? ParseBytes(string s)
    {
        var units = new (string Suffix, long Factor)[]
        {
            ("KiB", 1L << 10), ("MiB", 1L << 20), ("GiB", 1L << 30), ("K", 1000), ("M", 1_000_000), ("G", 1_000_000_000), ("B", 1), ("", 1),
        };
        foreach (var (suffix, factor) in units)
        {
            if (!s.EndsWith(suffix, StringComparison.OrdinalIgnoreCase)) continue;
            var num = s[..^suffix.Length];
            if (long.TryParse(num, NumberStyles.Integer, CultureInfo.InvariantCulture, out var n) && n >= 0 && n <= long.MaxValue / factor)
                return n * factor;
        }
        return null;
    }
}
