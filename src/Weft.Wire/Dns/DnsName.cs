using System.Text;

namespace Weft.Wire.Dns;

/// <summary>
/// A domain name as a list of labels (RFC 1035 §3.1). Labels are UTF-8 on the wire, at most
/// <see cref="MaxLabelLength"/> bytes each, and the whole name at most <see cref="MaxWireLength"/> bytes
/// (length bytes and the root included). Comparison ignores ASCII case, as DNS does; the case of the
/// labels is kept for writing (some mDNS implementations match names case-sensitively).
/// Text form: labels joined by '.', with '.' and '\' inside a label escaped by '\'; the root is ".".
/// </summary>
public sealed class DnsName : IEquatable<DnsName>
{
    /// <summary>Longest label in bytes.</summary>
    public const int MaxLabelLength = 63;

    /// <summary>Longest name on the wire in bytes, length bytes and the terminating zero included.</summary>
    public const int MaxWireLength = 255;

    private readonly string[] _labels;
    private readonly int _hash;

    private DnsName(string[] labels)
    {
        _labels = labels;
        var h = new HashCode();
        foreach (var l in labels) h.Add(AsciiLower(l), StringComparer.Ordinal);
        _hash = h.ToHashCode();
        WireLength = 1 + labels.Sum(l => 1 + Encoding.UTF8.GetByteCount(l));
    }

    /// <summary>The root name (no labels).</summary>
    public static DnsName Root { get; } = new([]);

    public IReadOnlyList<string> Labels => _labels;

    /// <summary>Bytes this name takes on the wire without compression.</summary>
    public int WireLength { get; }

    /// <summary>
    /// Builds a name from labels. Throws <see cref="ArgumentException"/> for an empty or over-long label, or
    /// a name longer than <see cref="MaxWireLength"/>.
    /// </summary>
    public static DnsName FromLabels(IEnumerable<string> labels)
    {
        ArgumentNullException.ThrowIfNull(labels);
        var list = labels.ToArray();
        foreach (var l in list)
        {
            ArgumentNullException.ThrowIfNull(l, nameof(labels));
            var n = Encoding.UTF8.GetByteCount(l);
            if (n == 0) throw new ArgumentException("empty label", nameof(labels));
            if (n > MaxLabelLength) throw new ArgumentException($"label of {n} bytes exceeds {MaxLabelLength}", nameof(labels));
        }
        var name = new DnsName(list);
        if (name.WireLength > MaxWireLength) throw new ArgumentException($"name of {name.WireLength} bytes exceeds {MaxWireLength}", nameof(labels));
        return name;
    }

    /// <summary>Parses the text form ("a.b.local" or "a.b.local."; "." or "" is the root). Throws <see cref="FormatException"/>.</summary>
    public static DnsName Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (text is "" or ".") return Root;
        var labels = new List<string>();
        var current = new StringBuilder();
        for (var i = 0; i < text.Length; i++)
        {
            var c = text[i];
            if (c == '\\')
            {
                if (i + 1 >= text.Length) throw new FormatException($"dangling escape in '{text}'");
                current.Append(text[++i]);
            }
            else if (c == '.')
            {
                if (current.Length == 0) throw new FormatException($"empty label in '{text}'");
                labels.Add(current.ToString());
                current.Clear();
            }
            else
            {
                current.Append(c);
            }
        }
        if (current.Length > 0) labels.Add(current.ToString());
        try
        {
            return FromLabels(labels);
        }
        catch (ArgumentException ex)
        {
            throw new FormatException($"bad DNS name '{text}': {ex.Message}", ex);
        }
    }

    /// <summary>This name with <paramref name="label"/> in front.</summary>
    public DnsName Prepend(string label) => FromLabels([label, .. _labels]);

    /// <summary>True when this name ends with all the labels of <paramref name="suffix"/> (a name is a subdomain of itself).</summary>
    public bool IsSubdomainOf(DnsName suffix)
    {
        ArgumentNullException.ThrowIfNull(suffix);
        if (suffix._labels.Length > _labels.Length) return false;
        var offset = _labels.Length - suffix._labels.Length;
        for (var i = 0; i < suffix._labels.Length; i++)
            if (!LabelEquals(_labels[offset + i], suffix._labels[i])) return false;
        return true;
    }

    /// <summary>The labels after the first <paramref name="count"/> (the parent after one).</summary>
    public DnsName Skip(int count) => count <= 0 ? this : new DnsName(_labels[Math.Min(count, _labels.Length)..]);

    public bool Equals(DnsName? other)
    {
        if (other is null || other._labels.Length != _labels.Length) return false;
        for (var i = 0; i < _labels.Length; i++)
            if (!LabelEquals(_labels[i], other._labels[i])) return false;
        return true;
    }

    public override bool Equals(object? obj) => Equals(obj as DnsName);

    /// <summary>DNS compares labels ignoring the case of ASCII letters only (RFC 4343).</summary>
    public static bool LabelEquals(string a, string b)
    {
        if (a.Length != b.Length) return false;
        for (var i = 0; i < a.Length; i++)
            if (AsciiLowerChar(a[i]) != AsciiLowerChar(b[i])) return false;
        return true;
    }

    /// <summary><paramref name="s"/> with ASCII upper-case letters lowered (other characters untouched).</summary>
    public static string AsciiLower(string s) => string.Create(s.Length, s, (dst, src) =>
    {
        for (var i = 0; i < src.Length; i++) dst[i] = AsciiLowerChar(src[i]);
    });

    private static char AsciiLowerChar(char c) => c is >= 'A' and <= 'Z' ? (char)(c + 32) : c;

    public override int GetHashCode() => _hash;

    public static bool operator ==(DnsName? left, DnsName? right) => left is null ? right is null : left.Equals(right);

    public static bool operator !=(DnsName? left, DnsName? right) => !(left == right);

    public override string ToString()
    {
        if (_labels.Length == 0) return ".";
        var sb = new StringBuilder();
        for (var i = 0; i < _labels.Length; i++)
        {
            if (i > 0) sb.Append('.');
            foreach (var c in _labels[i])
            {
                if (c is '.' or '\\') sb.Append('\\');
                sb.Append(c);
            }
        }
        return sb.ToString();
    }
}
