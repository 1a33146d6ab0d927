using System.Buffers.Binary;
using System.Diagnostics.CodeAnalysis;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;
using System.Security.Cryptography;

namespace Weft.Wire.Pnet;

/// <summary>
/// The XSalsa20 stream cipher (Bernstein, "Extending the Salsa20 nonce", 2008) as a running key stream:
/// successive <see cref="Xor(ReadOnlySpan{byte}, Span{byte})"/> calls continue where the previous one stopped,
/// which is what libp2p pnet needs for each direction of a connection. Blocks are computed 8 at a time with
/// AVX2 (rotations use AVX-512 when present), or 4 at a time with SSE2 or ARM64 AdvSIMD; other CPUs use the
/// scalar code.
/// Not thread-safe.
/// </summary>
public sealed class XSalsa20
{
    public const int KeyLength = 32;
    public const int NonceLength = 24;
    public const int BlockLength = 64;

    private const uint Sigma0 = 0x61707865, Sigma1 = 0x3320646e, Sigma2 = 0x79622d32, Sigma3 = 0x6b206574;

    /// <summary>Which block function to use; tests force each one to compare them.</summary>
    internal enum Kernel { Scalar, Vector128, Vector256 }

    private readonly uint[] _input = new uint[16];
    private readonly byte[] _block = new byte[BlockLength];
    private readonly Kernel _kernel;
    private ulong _counter;
    private int _blockUsed = BlockLength;

    public XSalsa20(ReadOnlySpan<byte> key, ReadOnlySpan<byte> nonce) : this(key, nonce, BestKernel)
    {
    }

    internal XSalsa20(ReadOnlySpan<byte> key, ReadOnlySpan<byte> nonce, Kernel kernel)
    {
        if (key.Length != KeyLength) throw new ArgumentException($"an XSalsa20 key is {KeyLength} bytes, got {key.Length}", nameof(key));
        if (nonce.Length != NonceLength) throw new ArgumentException($"an XSalsa20 nonce is {NonceLength} bytes, got {nonce.Length}", nameof(nonce));
        _kernel = kernel;
        Span<byte> subKey = stackalloc byte[KeyLength];
        HSalsa20(key, nonce[..16], subKey);
        var x = _input;
        x[0] = Sigma0;
        x[5] = Sigma1;
        x[10] = Sigma2;
        x[15] = Sigma3;
        for (var i = 0; i < 4; i++)
        {
            x[1 + i] = BinaryPrimitives.ReadUInt32LittleEndian(subKey[(4 * i)..]);
            x[11 + i] = BinaryPrimitives.ReadUInt32LittleEndian(subKey[(16 + 4 * i)..]);
        }
        x[6] = BinaryPrimitives.ReadUInt32LittleEndian(nonce[16..]);
        x[7] = BinaryPrimitives.ReadUInt32LittleEndian(nonce[20..]);
        CryptographicOperations.ZeroMemory(subKey);
    }

    internal static Kernel BestKernel =>
        Avx2.IsSupported ? Kernel.Vector256 : IsSupported(Kernel.Vector128) ? Kernel.Vector128 : Kernel.Scalar;

    internal static bool IsSupported(Kernel kernel) => kernel switch
    {
        Kernel.Vector256 => Avx2.IsSupported,
        Kernel.Vector128 => Sse2.IsSupported || AdvSimd.Arm64.IsSupported,
        _ => true,
    };

    /// <summary>XORs the next <c>source.Length</c> key stream bytes with <paramref name="source"/> into
    /// <paramref name="destination"/>, which may be the same memory (not partially overlapping).</summary>
    public void Xor(ReadOnlySpan<byte> source, Span<byte> destination)
    {
        if (destination.Length < source.Length) throw new ArgumentException("destination is shorter than source", nameof(destination));
        // Left-over key stream from the previous call's last, partially used block.
        if (_blockUsed < BlockLength && !source.IsEmpty)
        {
            var n = Math.Min(BlockLength - _blockUsed, source.Length);
            XorBytes(source[..n], _block.AsSpan(_blockUsed, n), destination);
            _blockUsed += n;
            source = source[n..];
            destination = destination[n..];
        }
        if (source.IsEmpty) return;

        var whole = source.Length & ~(BlockLength - 1);
        if (whole > 0)
        {
            var done = _kernel switch
            {
                Kernel.Vector256 => XorBlocks8(source[..whole], destination),
                Kernel.Vector128 => XorBlocks4(source[..whole], destination),
                _ => 0,
            };
            while (done < whole)
            {
                ScalarBlock(_input, _counter++, _block);
                XorBytes(source.Slice(done, BlockLength), _block, destination[done..]);
                done += BlockLength;
            }
            source = source[whole..];
            destination = destination[whole..];
        }
        if (!source.IsEmpty)
        {
            ScalarBlock(_input, _counter++, _block);
            XorBytes(source, _block.AsSpan(0, source.Length), destination);
            _blockUsed = source.Length;
        }
    }

    /// <summary>For tests: jumps to the start of block <paramref name="block"/> of the key stream.</summary>
    internal void SetBlockCounter(ulong block)
    {
        _counter = block;
        _blockUsed = BlockLength;
    }

    /// <summary>XORs the key stream into <paramref name="buffer"/> in place.</summary>
    public void Xor(Span<byte> buffer) => Xor(buffer, buffer);

    /// <summary>HSalsa20: derives the 32-byte sub key from a key and the first 16 nonce bytes.</summary>
    public static void HSalsa20(ReadOnlySpan<byte> key, ReadOnlySpan<byte> nonce16, Span<byte> output)
    {
        Span<uint> x = stackalloc uint[16];
        x[0] = Sigma0;
        x[5] = Sigma1;
        x[10] = Sigma2;
        x[15] = Sigma3;
        for (var i = 0; i < 4; i++)
        {
            x[1 + i] = BinaryPrimitives.ReadUInt32LittleEndian(key[(4 * i)..]);
            x[11 + i] = BinaryPrimitives.ReadUInt32LittleEndian(key[(16 + 4 * i)..]);
            x[6 + i] = BinaryPrimitives.ReadUInt32LittleEndian(nonce16[(4 * i)..]);
        }
        Rounds(x);
        ReadOnlySpan<int> pick = [0, 5, 10, 15, 6, 7, 8, 9];
        for (var i = 0; i < 8; i++) BinaryPrimitives.WriteUInt32LittleEndian(output[(4 * i)..], x[pick[i]]);
        x.Clear();
    }

    private static void XorBytes(ReadOnlySpan<byte> source, ReadOnlySpan<byte> keyStream, Span<byte> destination)
    {
        var i = 0;
        if (Vector128.IsHardwareAccelerated)
        {
            for (; i + 16 <= source.Length; i += 16)
                (Vector128.Create(source[i..]) ^ Vector128.Create(keyStream[i..])).CopyTo(destination[i..]);
        }
        for (; i < source.Length; i++) destination[i] = (byte)(source[i] ^ keyStream[i]);
    }

    // ---- scalar ----

    private static void ScalarBlock(uint[] input, ulong counter, Span<byte> output)
    {
        Span<uint> x = stackalloc uint[16];
        input.CopyTo(x);
        x[8] = (uint)counter;
        x[9] = (uint)(counter >> 32);
        Span<uint> j = stackalloc uint[16];
        x.CopyTo(j);
        Rounds(x);
        for (var i = 0; i < 16; i++) BinaryPrimitives.WriteUInt32LittleEndian(output[(4 * i)..], x[i] + j[i]);
    }

    private static void Rounds(Span<uint> s)
    {
        uint x0 = s[0], x1 = s[1], x2 = s[2], x3 = s[3], x4 = s[4], x5 = s[5], x6 = s[6], x7 = s[7];
        uint x8 = s[8], x9 = s[9], x10 = s[10], x11 = s[11], x12 = s[12], x13 = s[13], x14 = s[14], x15 = s[15];
        for (var r = 0; r < 10; r++)
        {
            // column round
            x4 ^= BitOperations.RotateLeft(x0 + x12, 7); x8 ^= BitOperations.RotateLeft(x4 + x0, 9);
            x12 ^= BitOperations.RotateLeft(x8 + x4, 13); x0 ^= BitOperations.RotateLeft(x12 + x8, 18);
            x9 ^= BitOperations.RotateLeft(x5 + x1, 7); x13 ^= BitOperations.RotateLeft(x9 + x5, 9);
            x1 ^= BitOperations.RotateLeft(x13 + x9, 13); x5 ^= BitOperations.RotateLeft(x1 + x13, 18);
            x14 ^= BitOperations.RotateLeft(x10 + x6, 7); x2 ^= BitOperations.RotateLeft(x14 + x10, 9);
            x6 ^= BitOperations.RotateLeft(x2 + x14, 13); x10 ^= BitOperations.RotateLeft(x6 + x2, 18);
            x3 ^= BitOperations.RotateLeft(x15 + x11, 7); x7 ^= BitOperations.RotateLeft(x3 + x15, 9);
            x11 ^= BitOperations.RotateLeft(x7 + x3, 13); x15 ^= BitOperations.RotateLeft(x11 + x7, 18);
            // row round
            x1 ^= BitOperations.RotateLeft(x0 + x3, 7); x2 ^= BitOperations.RotateLeft(x1 + x0, 9);
            x3 ^= BitOperations.RotateLeft(x2 + x1, 13); x0 ^= BitOperations.RotateLeft(x3 + x2, 18);
            x6 ^= BitOperations.RotateLeft(x5 + x4, 7); x7 ^= BitOperations.RotateLeft(x6 + x5, 9);
            x4 ^= BitOperations.RotateLeft(x7 + x6, 13); x5 ^= BitOperations.RotateLeft(x4 + x7, 18);
            x11 ^= BitOperations.RotateLeft(x10 + x9, 7); x8 ^= BitOperations.RotateLeft(x11 + x10, 9);
            x9 ^= BitOperations.RotateLeft(x8 + x11, 13); x10 ^= BitOperations.RotateLeft(x9 + x8, 18);
            x12 ^= BitOperations.RotateLeft(x15 + x14, 7); x13 ^= BitOperations.RotateLeft(x12 + x15, 9);
            x14 ^= BitOperations.RotateLeft(x13 + x12, 13); x15 ^= BitOperations.RotateLeft(x14 + x13, 18);
        }
        s[0] = x0; s[1] = x1; s[2] = x2; s[3] = x3; s[4] = x4; s[5] = x5; s[6] = x6; s[7] = x7;
        s[8] = x8; s[9] = x9; s[10] = x10; s[11] = x11; s[12] = x12; s[13] = x13; s[14] = x14; s[15] = x15;
    }

    // ---- 8 blocks per step (AVX2): lane b of vector xi holds word i of block counter+b ----

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<uint> Rotl(Vector256<uint> v, [ConstantExpected] byte n) =>
        Avx512F.VL.IsSupported ? Avx512F.VL.RotateLeft(v, n) : Vector256.ShiftLeft(v, n) | Vector256.ShiftRightLogical(v, 32 - n);

    private int XorBlocks8(ReadOnlySpan<byte> source, Span<byte> destination)
    {
        const int step = 8 * BlockLength;
        var s = _input;
        ref var src = ref MemoryMarshal.GetReference(source);
        ref var dst = ref MemoryMarshal.GetReference(destination);
        var done = 0;
        for (; done + step <= source.Length; done += step)
        {
            // per-lane 64-bit counters split into low and high words
            var c = _counter;
            var j8 = Vector256.Create((uint)c, (uint)(c + 1), (uint)(c + 2), (uint)(c + 3), (uint)(c + 4), (uint)(c + 5), (uint)(c + 6), (uint)(c + 7));
            var j9 = Vector256.Create((uint)(c >> 32), (uint)((c + 1) >> 32), (uint)((c + 2) >> 32), (uint)((c + 3) >> 32),
                (uint)((c + 4) >> 32), (uint)((c + 5) >> 32), (uint)((c + 6) >> 32), (uint)((c + 7) >> 32));
            _counter = c + 8;

            Vector256<uint> x0 = Vector256.Create(s[0]), x1 = Vector256.Create(s[1]), x2 = Vector256.Create(s[2]), x3 = Vector256.Create(s[3]);
            Vector256<uint> x4 = Vector256.Create(s[4]), x5 = Vector256.Create(s[5]), x6 = Vector256.Create(s[6]), x7 = Vector256.Create(s[7]);
            Vector256<uint> x8 = j8, x9 = j9, x10 = Vector256.Create(s[10]), x11 = Vector256.Create(s[11]);
            Vector256<uint> x12 = Vector256.Create(s[12]), x13 = Vector256.Create(s[13]), x14 = Vector256.Create(s[14]), x15 = Vector256.Create(s[15]);
            for (var r = 0; r < 10; r++)
            {
                x4 ^= Rotl(x0 + x12, 7); x8 ^= Rotl(x4 + x0, 9); x12 ^= Rotl(x8 + x4, 13); x0 ^= Rotl(x12 + x8, 18);
                x9 ^= Rotl(x5 + x1, 7); x13 ^= Rotl(x9 + x5, 9); x1 ^= Rotl(x13 + x9, 13); x5 ^= Rotl(x1 + x13, 18);
                x14 ^= Rotl(x10 + x6, 7); x2 ^= Rotl(x14 + x10, 9); x6 ^= Rotl(x2 + x14, 13); x10 ^= Rotl(x6 + x2, 18);
                x3 ^= Rotl(x15 + x11, 7); x7 ^= Rotl(x3 + x15, 9); x11 ^= Rotl(x7 + x3, 13); x15 ^= Rotl(x11 + x7, 18);
                x1 ^= Rotl(x0 + x3, 7); x2 ^= Rotl(x1 + x0, 9); x3 ^= Rotl(x2 + x1, 13); x0 ^= Rotl(x3 + x2, 18);
                x6 ^= Rotl(x5 + x4, 7); x7 ^= Rotl(x6 + x5, 9); x4 ^= Rotl(x7 + x6, 13); x5 ^= Rotl(x4 + x7, 18);
                x11 ^= Rotl(x10 + x9, 7); x8 ^= Rotl(x11 + x10, 9); x9 ^= Rotl(x8 + x11, 13); x10 ^= Rotl(x9 + x8, 18);
                x12 ^= Rotl(x15 + x14, 7); x13 ^= Rotl(x12 + x15, 9); x14 ^= Rotl(x13 + x12, 13); x15 ^= Rotl(x14 + x13, 18);
            }
            x0 += Vector256.Create(s[0]); x1 += Vector256.Create(s[1]); x2 += Vector256.Create(s[2]); x3 += Vector256.Create(s[3]);
            x4 += Vector256.Create(s[4]); x5 += Vector256.Create(s[5]); x6 += Vector256.Create(s[6]); x7 += Vector256.Create(s[7]);
            x8 += j8; x9 += j9; x10 += Vector256.Create(s[10]); x11 += Vector256.Create(s[11]);
            x12 += Vector256.Create(s[12]); x13 += Vector256.Create(s[13]); x14 += Vector256.Create(s[14]); x15 += Vector256.Create(s[15]);

            ref var sb = ref Unsafe.Add(ref src, done);
            ref var db = ref Unsafe.Add(ref dst, done);
            Emit8(x0, x1, x2, x3, 0, ref sb, ref db);
            Emit8(x4, x5, x6, x7, 16, ref sb, ref db);
            Emit8(x8, x9, x10, x11, 32, ref sb, ref db);
            Emit8(x12, x13, x14, x15, 48, ref sb, ref db);
        }
        return done;
    }

    /// <summary>Transposes words 4g..4g+3 of the 8 blocks and XORs them into bytes 16g..16g+15 of each block.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Emit8(Vector256<uint> a, Vector256<uint> b, Vector256<uint> c, Vector256<uint> d, int offset, ref byte src, ref byte dst)
    {
        var t0 = Avx2.UnpackLow(a, b).AsUInt64();
        var t1 = Avx2.UnpackHigh(a, b).AsUInt64();
        var t2 = Avx2.UnpackLow(c, d).AsUInt64();
        var t3 = Avx2.UnpackHigh(c, d).AsUInt64();
        // r_k: low half = block k, high half = block k+4
        var r0 = Avx2.UnpackLow(t0, t2).AsByte();
        var r1 = Avx2.UnpackHigh(t0, t2).AsByte();
        var r2 = Avx2.UnpackLow(t1, t3).AsByte();
        var r3 = Avx2.UnpackHigh(t1, t3).AsByte();
        XorStore(r0.GetLower(), offset + 0 * BlockLength, ref src, ref dst);
        XorStore(r1.GetLower(), offset + 1 * BlockLength, ref src, ref dst);
        XorStore(r2.GetLower(), offset + 2 * BlockLength, ref src, ref dst);
        XorStore(r3.GetLower(), offset + 3 * BlockLength, ref src, ref dst);
        XorStore(r0.GetUpper(), offset + 4 * BlockLength, ref src, ref dst);
        XorStore(r1.GetUpper(), offset + 5 * BlockLength, ref src, ref dst);
        XorStore(r2.GetUpper(), offset + 6 * BlockLength, ref src, ref dst);
        XorStore(r3.GetUpper(), offset + 7 * BlockLength, ref src, ref dst);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void XorStore(Vector128<byte> keyStream, int offset, ref byte src, ref byte dst)
    {
        var v = Vector128.LoadUnsafe(ref src, (nuint)offset) ^ keyStream;
        v.StoreUnsafe(ref dst, (nuint)offset);
    }

    // ---- 4 blocks per step (SSE2 or ARM64 AdvSIMD) ----

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<uint> Rotl(Vector128<uint> v, [ConstantExpected] byte n) =>
        Avx512F.VL.IsSupported ? Avx512F.VL.RotateLeft(v, n) : Vector128.ShiftLeft(v, n) | Vector128.ShiftRightLogical(v, 32 - n);

    private int XorBlocks4(ReadOnlySpan<byte> source, Span<byte> destination)
    {
        const int step = 4 * BlockLength;
        var s = _input;
        ref var src = ref MemoryMarshal.GetReference(source);
        ref var dst = ref MemoryMarshal.GetReference(destination);
        var done = 0;
        for (; done + step <= source.Length; done += step)
        {
            var c = _counter;
            ulong c0 = c, c1 = c + 1, c2 = c + 2, c3 = c + 3;
            var j8 = Vector128.Create((uint)c0, (uint)c1, (uint)c2, (uint)c3);
            var j9 = Vector128.Create((uint)(c0 >> 32), (uint)(c1 >> 32), (uint)(c2 >> 32), (uint)(c3 >> 32));
            _counter = c + 4;

            Vector128<uint> x0 = Vector128.Create(s[0]), x1 = Vector128.Create(s[1]), x2 = Vector128.Create(s[2]), x3 = Vector128.Create(s[3]);
            Vector128<uint> x4 = Vector128.Create(s[4]), x5 = Vector128.Create(s[5]), x6 = Vector128.Create(s[6]), x7 = Vector128.Create(s[7]);
            Vector128<uint> x8 = j8, x9 = j9, x10 = Vector128.Create(s[10]), x11 = Vector128.Create(s[11]);
            Vector128<uint> x12 = Vector128.Create(s[12]), x13 = Vector128.Create(s[13]), x14 = Vector128.Create(s[14]), x15 = Vector128.Create(s[15]);
            for (var r = 0; r < 10; r++)
            {
                x4 ^= Rotl(x0 + x12, 7); x8 ^= Rotl(x4 + x0, 9); x12 ^= Rotl(x8 + x4, 13); x0 ^= Rotl(x12 + x8, 18);
                x9 ^= Rotl(x5 + x1, 7); x13 ^= Rotl(x9 + x5, 9); x1 ^= Rotl(x13 + x9, 13); x5 ^= Rotl(x1 + x13, 18);
                x14 ^= Rotl(x10 + x6, 7); x2 ^= Rotl(x14 + x10, 9); x6 ^= Rotl(x2 + x14, 13); x10 ^= Rotl(x6 + x2, 18);
                x3 ^= Rotl(x15 + x11, 7); x7 ^= Rotl(x3 + x15, 9); x11 ^= Rotl(x7 + x3, 13); x15 ^= Rotl(x11 + x7, 18);
                x1 ^= Rotl(x0 + x3, 7); x2 ^= Rotl(x1 + x0, 9); x3 ^= Rotl(x2 + x1, 13); x0 ^= Rotl(x3 + x2, 18);
                x6 ^= Rotl(x5 + x4, 7); x7 ^= Rotl(x6 + x5, 9); x4 ^= Rotl(x7 + x6, 13); x5 ^= Rotl(x4 + x7, 18);
                x11 ^= Rotl(x10 + x9, 7); x8 ^= Rotl(x11 + x10, 9); x9 ^= Rotl(x8 + x11, 13); x10 ^= Rotl(x9 + x8, 18);
                x12 ^= Rotl(x15 + x14, 7); x13 ^= Rotl(x12 + x15, 9); x14 ^= Rotl(x13 + x12, 13); x15 ^= Rotl(x14 + x13, 18);
            }
            x0 += Vector128.Create(s[0]); x1 += Vector128.Create(s[1]); x2 += Vector128.Create(s[2]); x3 += Vector128.Create(s[3]);
            x4 += Vector128.Create(s[4]); x5 += Vector128.Create(s[5]); x6 += Vector128.Create(s[6]); x7 += Vector128.Create(s[7]);
            x8 += j8; x9 += j9; x10 += Vector128.Create(s[10]); x11 += Vector128.Create(s[11]);
            x12 += Vector128.Create(s[12]); x13 += Vector128.Create(s[13]); x14 += Vector128.Create(s[14]); x15 += Vector128.Create(s[15]);

            ref var sb = ref Unsafe.Add(ref src, done);
            ref var db = ref Unsafe.Add(ref dst, done);
            Emit4(x0, x1, x2, x3, 0, ref sb, ref db);
            Emit4(x4, x5, x6, x7, 16, ref sb, ref db);
            Emit4(x8, x9, x10, x11, 32, ref sb, ref db);
            Emit4(x12, x13, x14, x15, 48, ref sb, ref db);
        }
        return done;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Emit4(Vector128<uint> a, Vector128<uint> b, Vector128<uint> c, Vector128<uint> d, int offset, ref byte src, ref byte dst)
    {
        var t0 = UnpackLow(a, b).AsUInt64();
        var t1 = UnpackHigh(a, b).AsUInt64();
        var t2 = UnpackLow(c, d).AsUInt64();
        var t3 = UnpackHigh(c, d).AsUInt64();
        XorStore(UnpackLow(t0, t2).AsByte(), offset + 0 * BlockLength, ref src, ref dst);
        XorStore(UnpackHigh(t0, t2).AsByte(), offset + 1 * BlockLength, ref src, ref dst);
        XorStore(UnpackLow(t1, t3).AsByte(), offset + 2 * BlockLength, ref src, ref dst);
        XorStore(UnpackHigh(t1, t3).AsByte(), offset + 3 * BlockLength, ref src, ref dst);
    }

    // Interleave the low (high) halves of two vectors: punpckl/h on x86, zip1/zip2 on ARM64.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<uint> UnpackLow(Vector128<uint> a, Vector128<uint> b) => Sse2.IsSupported ? Sse2.UnpackLow(a, b) : AdvSimd.Arm64.ZipLow(a, b);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<uint> UnpackHigh(Vector128<uint> a, Vector128<uint> b) => Sse2.IsSupported ? Sse2.UnpackHigh(a, b) : AdvSimd.Arm64.ZipHigh(a, b);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<ulong> UnpackLow(Vector128<ulong> a, Vector128<ulong> b) => Sse2.IsSupported ? Sse2.UnpackLow(a, b) : AdvSimd.Arm64.ZipLow(a, b);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<ulong> UnpackHigh(Vector128<ulong> a, Vector128<ulong> b) => Sse2.IsSupported ? Sse2.UnpackHigh(a, b) : AdvSimd.Arm64.ZipHigh(a, b);
}
