using System.Buffers.Binary;
using System.Numerics;
using System.Security.Cryptography;
using Weft.Wire.Identity;

namespace Weft.Wire.Kad;

/// <summary>
/// A point in the Kademlia keyspace: sha256 of a key's bytes (a peer's ID bytes for peers). The distance
/// between two points is their XOR read as a 256-bit big-endian number (kad-dht/README.md "Distance").
/// </summary>
public readonly struct KadId : IEquatable<KadId>
{
    public const int Bits = 256;

    // Four big-endian 64-bit words, most significant first.
    private readonly ulong _a, _b, _c, _d;

    private KadId(ulong a, ulong b, ulong c, ulong d)
    {
        _a = a;
        _b = b;
        _c = c;
        _d = d;
    }

    /// <summary>The point of a key: sha256(<paramref name="key"/>).</summary>
    public static KadId FromKey(ReadOnlySpan<byte> key)
    {
        Span<byte> digest = stackalloc byte[32];
        SHA256.HashData(key, digest);
        return FromDigest(digest);
    }

    /// <summary>The point of a peer: sha256 of its ID bytes.</summary>
    public static KadId FromPeer(PeerId peer) => FromKey(peer.Bytes.Span);

    /// <summary>A point given directly as 32 bytes (e.g. a random one for a bucket refresh).</summary>
    public static KadId FromDigest(ReadOnlySpan<byte> digest)
    {
        if (digest.Length != 32) throw new ArgumentException("a keyspace point is 32 bytes", nameof(digest));
        return new KadId(
            BinaryPrimitives.ReadUInt64BigEndian(digest),
            BinaryPrimitives.ReadUInt64BigEndian(digest[8..]),
            BinaryPrimitives.ReadUInt64BigEndian(digest[16..]),
            BinaryPrimitives.ReadUInt64BigEndian(digest[24..]));
    }

    /// <summary>The XOR distance to <paramref name="other"/>, itself a point (compare distances with <see cref="CompareTo"/>).</summary>
    public KadId Xor(KadId other) => new(_a ^ other._a, _b ^ other._b, _c ^ other._c, _d ^ other._d);

    /// <summary>Leading bits this point shares with <paramref name="other"/> (256 for the same point).</summary>
    public int CommonPrefixLength(KadId other) => Xor(other).LeadingZeros();

    /// <summary>Leading zero bits (256 for zero).</summary>
    public int LeadingZeros()
    {
        if (_a != 0) return BitOperations.LeadingZeroCount(_a);
        if (_b != 0) return 64 + BitOperations.LeadingZeroCount(_b);
        if (_c != 0) return 128 + BitOperations.LeadingZeroCount(_c);
        return _d != 0 ? 192 + BitOperations.LeadingZeroCount(_d) : 256;
    }

    /// <summary>Orders as unsigned 256-bit numbers (use on distances).</summary>
    public int CompareTo(KadId other)
    {
        var c = _a.CompareTo(other._a);
        if (c != 0) return c;
        c = _b.CompareTo(other._b);
        if (c != 0) return c;
        c = _c.CompareTo(other._c);
        return c != 0 ? c : _d.CompareTo(other._d);
    }

    /// <summary>
    /// A random point sharing exactly <paramref name="prefixLength"/> leading bits with this one (the next bit
    /// differs): a target that falls in bucket <paramref name="prefixLength"/> of this point's routing table.
    /// </summary>
    public KadId RandomWithPrefix(int prefixLength, Random rng)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(prefixLength);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(prefixLength, Bits);
        Span<byte> self = stackalloc byte[32];
        WriteTo(self);
        Span<byte> r = stackalloc byte[32];
        rng.NextBytes(r);
        for (var bit = 0; bit <= prefixLength; bit++)
        {
            var mask = (byte)(0x80 >> (bit % 8));
            var same = (self[bit / 8] & mask) != 0;
            if (bit == prefixLength) same = !same;
            r[bit / 8] = (byte)(same ? r[bit / 8] | mask : r[bit / 8] & ~mask);
        }
        return FromDigest(r);
    }

    public void WriteTo(Span<byte> destination)
    {
        BinaryPrimitives.WriteUInt64BigEndian(destination, _a);
        BinaryPrimitives.WriteUInt64BigEndian(destination[8..], _b);
        BinaryPrimitives.WriteUInt64BigEndian(destination[16..], _c);
        BinaryPrimitives.WriteUInt64BigEndian(destination[24..], _d);
    }

    public bool Equals(KadId other) => _a == other._a && _b == other._b && _c == other._c && _d == other._d;

    public override bool Equals(object? obj) => obj is KadId k && Equals(k);

    public override int GetHashCode() => HashCode.Combine(_a, _b, _c, _d);

    public static bool operator ==(KadId left, KadId right) => left.Equals(right);

    public static bool operator !=(KadId left, KadId right) => !left.Equals(right);

    public override string ToString()
    {
        Span<byte> b = stackalloc byte[32];
        WriteTo(b);
        return Convert.ToHexStringLower(b);
    }
}
