using System.Diagnostics.CodeAnalysis;
using System.Text;
using Weft.Wire.Multiformats;

namespace Weft.Wire.Kad;

/// <summary>
/// The key of a provider record: a multihash (kad-dht/README.md: provider keys are multihashes, not CIDs).
/// Text forms: CID v1 (multibase base32 "b…", any codec; a raw-codec CID is what EdgeMesh's rendezvous uses)
/// or CID v0 (base58 "Qm…"). Any other text stands for the sha2-256 of its UTF-8 bytes, as a rendezvous
/// string does: <c>EDGEMESH_PLAYGOUND</c> → <c>bafkreie777rtklljkfpo24tqxwvftflojq2hhig5etpzason3vxaw3r4oi</c>.
/// </summary>
public sealed class ContentKey : IEquatable<ContentKey>
{
    /// <summary>Multicodec of raw bytes, the codec of rendezvous CIDs.</summary>
    public const ulong RawCodec = 0x55;

    private readonly byte[] _multihash;

    private ContentKey(byte[] multihash) => _multihash = multihash;

    /// <summary>The multihash: what ADD_PROVIDER and GET_PROVIDERS carry as their key.</summary>
    public ReadOnlyMemory<byte> Multihash => _multihash;

    /// <summary>The key of a rendezvous string (or any text): sha2-256 of its UTF-8 bytes.</summary>
    public static ContentKey ForText(string text) => new(Multiformats.Multihash.Sha256(Encoding.UTF8.GetBytes(text)));

    /// <summary>A key from a multihash as found on the wire. False when the bytes are not exactly one multihash.</summary>
    public static bool TryFromMultihash(ReadOnlySpan<byte> bytes, [NotNullWhen(true)] out ContentKey? key)
    {
        key = null;
        if (bytes.Length == 0 || !Multiformats.Multihash.TryDecode(bytes, out _, out _)) return false;
        key = new ContentKey(bytes.ToArray());
        return true;
    }

    /// <summary>
    /// A key from the bytes of a CID (v1: version, codec, multihash; v0: a bare sha2-256 multihash) or a bare
    /// multihash, as go and js accept in ADD_PROVIDER / GET_PROVIDERS.
    /// </summary>
    public static bool TryFromWire(ReadOnlySpan<byte> bytes, [NotNullWhen(true)] out ContentKey? key)
    {
        if (TryFromMultihash(bytes, out key)) return true;
        if (Varint.TryRead(bytes, out var version, out var n1) && version == 1 && Varint.TryRead(bytes[n1..], out _, out var n2))
            return TryFromMultihash(bytes[(n1 + n2)..], out key);
        return false;
    }

    /// <summary>Parses a CID (v1 base32, v0 base58); any other text is hashed (<see cref="ForText"/>).</summary>
    public static ContentKey Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (text.Length > 1 && text[0] == 'b' && Base32.TryDecode(text.AsSpan(1), out var v1) && TryFromWire(v1, out var k1) && v1[0] == 1) return k1;
        if (text.Length == 46 && text.StartsWith("Qm", StringComparison.Ordinal) && Base58.TryDecode(text, out var v0) && TryFromMultihash(v0, out var k0)) return k0;
        return ForText(text);
    }

    /// <summary>The CID v1 (raw codec) of this multihash, base32: how go and js print a rendezvous key.</summary>
    public string ToCidString()
    {
        var cid = new byte[2 + _multihash.Length];
        cid[0] = 1;
        cid[1] = (byte)RawCodec;
        _multihash.CopyTo(cid, 2);
        return "b" + Base32.Encode(cid);
    }

    public bool Equals(ContentKey? other) => other is not null && _multihash.AsSpan().SequenceEqual(other._multihash);

    public override bool Equals(object? obj) => Equals(obj as ContentKey);

    public override int GetHashCode()
    {
        var h = new HashCode();
        h.AddBytes(_multihash);
        return h.ToHashCode();
    }

    public override string ToString() => ToCidString();
}
