namespace Weft.Mesh.Identity;

/// <summary>
/// Bit-exact port of Go's <c>math/rand</c> default source (<c>rngSource</c>, the Mitchell–Reeds additive lagged
/// Fibonacci generator with taps 607/273) together with the <c>Rand.Read</c> byte stream built on top of it.
/// Equivalent to <c>rand.New(rand.NewSource(seed))</c> in Go. Not cryptographically secure and not thread-safe;
/// it exists only to reproduce identities derived by Go programs (EdgeMesh).
/// </summary>
public sealed class GoMathRand
{
    /// <summary>Length of the feedback register (Go <c>rngLen</c>).</summary>
    public const int Length = 607;

    /// <summary>Distance between feed and tap (Go <c>rngTap</c>).</summary>
    public const int Tap = 273;

    /// <summary>Modulus of the seeding LCG, 2^31 - 1 (Go <c>int32max</c>).</summary>
    public const long SeedModulus = int.MaxValue;

    /// <summary>Seed used when the reduced seed is zero.</summary>
    public const int ZeroSeedReplacement = 89482311;

    /// <summary>Number of LCG rounds discarded before the register is filled.</summary>
    public const int WarmUpRounds = 20;

    /// <summary>Bytes of each <see cref="Int63"/> value consumed by <see cref="Read"/>.</summary>
    public const int BytesPerValue = 7;

    private const ulong Mask63 = (1UL << 63) - 1;

    private readonly long[] _vec = new long[Length];
    private int _tap;
    private int _feed;
    private long _readVal;
    private int _readPos;

    /// <summary>Equivalent of <c>rand.New(rand.NewSource(seed))</c>.</summary>
    public GoMathRand(long seed) => Seed(seed);

    /// <summary>
    /// Re-seeds the generator and discards buffered <see cref="Read"/> bytes (Go <c>Rand.Seed</c>).
    /// </summary>
    public void Seed(long seed)
    {
        _tap = 0;
        _feed = Length - Tap;
        _readPos = 0;
        _readVal = 0;

        seed %= SeedModulus; // truncated remainder, as in Go
        if (seed < 0)
        {
            seed += SeedModulus;
        }

        if (seed == 0)
        {
            seed = ZeroSeedReplacement;
        }

        var x = (int)seed;
        var cooked = GoMathRandCooked.Values;
        for (var i = -WarmUpRounds; i < Length; i++)
        {
            x = SeedRand(x);
            if (i >= 0)
            {
                var u = (long)x << 40;
                x = SeedRand(x);
                u ^= (long)x << 20;
                x = SeedRand(x);
                u ^= x;
                u ^= cooked[i];
                _vec[i] = u;
            }
        }
    }

    /// <summary>Next value in [0, 2^63) (Go <c>Rand.Int63</c>).</summary>
    public long Int63() => (long)(Uint64() & Mask63);

    /// <summary>Next 64-bit value (Go <c>Rand.Uint64</c>, which uses the source's <c>Uint64</c>).</summary>
    public ulong Uint64()
    {
        if (--_tap < 0)
        {
            _tap += Length;
        }

        if (--_feed < 0)
        {
            _feed += Length;
        }

        var x = unchecked(_vec[_feed] + _vec[_tap]);
        _vec[_feed] = x;
        return unchecked((ulong)x);
    }

    /// <summary>
    /// Fills <paramref name="buffer"/> like Go's <c>Rand.Read</c>: each <see cref="Int63"/> value yields 7 bytes,
    /// least significant first; unused bytes are kept for the next call.
    /// </summary>
    public void Read(Span<byte> buffer)
    {
        var pos = _readPos;
        var val = _readVal;
        for (var n = 0; n < buffer.Length; n++)
        {
            if (pos == 0)
            {
                val = Int63();
                pos = BytesPerValue;
            }

            buffer[n] = (byte)val;
            val >>= 8;
            pos--;
        }

        _readPos = pos;
        _readVal = val;
    }

    /// <summary>One step of x[n+1] = 48271 * x[n] mod (2^31 - 1) using Schrage's method (no overflow in 32 bits).</summary>
    private static int SeedRand(int x)
    {
        const int A = 48271;
        const int Q = 44488; // M / A
        const int R = 3399;  // M % A

        var hi = x / Q;
        var lo = x % Q;
        x = (A * lo) - (R * hi);
        if (x < 0)
        {
            x += int.MaxValue;
        }

        return x;
    }
}
