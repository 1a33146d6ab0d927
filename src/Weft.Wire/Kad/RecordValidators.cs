using System.Text;
using Weft.Wire.Identity;

namespace Weft.Wire.Kad;

/// <summary>
/// Checks and ranks the values of one record namespace (kad-dht/README.md "Entry validation"). Both are pure:
/// the same input always gives the same answer.
/// </summary>
public interface IRecordValidator
{
    /// <summary>Null when <paramref name="value"/> is a valid value for <paramref name="key"/>, else why not.</summary>
    string? Validate(ReadOnlySpan<byte> key, ReadOnlySpan<byte> value);

    /// <summary>The index of the best of two or more valid <paramref name="values"/>; stable for equal input.</summary>
    int Select(ReadOnlySpan<byte> key, IReadOnlyList<byte[]> values);
}

/// <summary>
/// <c>/pk/&lt;multihash&gt;</c> records: the value is a public key protobuf whose peer ID is that multihash (as go and
/// js check). All valid values are the same key, so the first is as good as any.
/// </summary>
public sealed class PublicKeyRecordValidator : IRecordValidator
{
    public static PublicKeyRecordValidator Instance { get; } = new();

    private static readonly byte[] Prefix = "/pk/"u8.ToArray();

    public string? Validate(ReadOnlySpan<byte> key, ReadOnlySpan<byte> value)
    {
        if (!key.StartsWith(Prefix) || key.Length == Prefix.Length) return "key is not /pk/<multihash>";
        if (!PublicKey.TryFromProtobuf(value, out var pk)) return "value is not a public key";
        return PeerId.FromPublicKey(pk).Bytes.Span.SequenceEqual(key[Prefix.Length..]) ? null : "public key does not match the key";
    }

    public int Select(ReadOnlySpan<byte> key, IReadOnlyList<byte[]> values) => 0;
}

/// <summary>
/// A namespace of opaque values (any bytes up to <see cref="MaxValueLength"/>): nothing to verify, and the
/// first value wins a selection (js-libp2p's behaviour for a namespace whose selector returns 0).
/// </summary>
public sealed class OpaqueRecordValidator(int maxValueLength = OpaqueRecordValidator.DefaultMaxValueLength) : IRecordValidator
{
    /// <summary>Largest value accepted by default.</summary>
    public const int DefaultMaxValueLength = 16 * 1024;

    public int MaxValueLength { get; } = maxValueLength;

    public string? Validate(ReadOnlySpan<byte> key, ReadOnlySpan<byte> value) =>
        value.Length > MaxValueLength ? $"value of {value.Length} bytes exceeds {MaxValueLength}" : null;

    public int Select(ReadOnlySpan<byte> key, IReadOnlyList<byte[]> values) => 0;
}

/// <summary>
/// Validators by namespace: a key <c>/NS/rest</c> is checked by the validator of NS; a key without a
/// namespace, or with one nobody registered, is invalid (go and js behave the same).
/// </summary>
public sealed class RecordValidators
{
    private readonly Dictionary<string, IRecordValidator> _byNamespace;

    private RecordValidators(Dictionary<string, IRecordValidator> map) => _byNamespace = map;

    /// <summary>Only <c>/pk/</c> (what every libp2p DHT node understands).</summary>
    public static RecordValidators Default { get; } = new(new(StringComparer.Ordinal) { ["pk"] = PublicKeyRecordValidator.Instance });

    /// <summary>The namespaces with a validator.</summary>
    public IReadOnlyCollection<string> Namespaces => _byNamespace.Keys;

    /// <summary>A copy with <paramref name="validator"/> for <paramref name="ns"/> (replacing any other).</summary>
    public RecordValidators With(string ns, IRecordValidator validator)
    {
        ArgumentException.ThrowIfNullOrEmpty(ns);
        if (ns.Contains('/', StringComparison.Ordinal)) throw new ArgumentException("a namespace has no '/'", nameof(ns));
        ArgumentNullException.ThrowIfNull(validator);
        return new RecordValidators(new Dictionary<string, IRecordValidator>(_byNamespace, StringComparer.Ordinal) { [ns] = validator });
    }

    /// <summary>The namespace of a key (<c>/NS/rest</c> → NS), or null when it has none.</summary>
    public static string? NamespaceOf(ReadOnlySpan<byte> key)
    {
        if (key.Length < 3 || key[0] != (byte)'/') return null;
        var end = key[1..].IndexOf((byte)'/');
        if (end <= 0) return null;
        try
        {
            return new UTF8Encoding(false, true).GetString(key.Slice(1, end));
        }
        catch (DecoderFallbackException)
        {
            return null;
        }
    }

    /// <summary>Null when the record is valid, else why not.</summary>
    public string? Validate(ReadOnlySpan<byte> key, ReadOnlySpan<byte> value)
    {
        var ns = NamespaceOf(key);
        if (ns is null) return "record key has no namespace (/NS/...)";
        return _byNamespace.TryGetValue(ns, out var v) ? v.Validate(key, value) : $"no validator for namespace \"{ns}\"";
    }

    /// <summary>The index of the best of <paramref name="values"/> (all already valid).</summary>
    public int Select(ReadOnlySpan<byte> key, IReadOnlyList<byte[]> values)
    {
        if (values.Count <= 1) return 0;
        var ns = NamespaceOf(key);
        var i = ns is not null && _byNamespace.TryGetValue(ns, out var v) ? v.Select(key, values) : 0;
        return i >= 0 && i < values.Count ? i : 0;
    }
}
