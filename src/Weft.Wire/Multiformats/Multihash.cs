using System.Security.Cryptography;

namespace Weft.Wire.Multiformats;

/// <summary>Multihash: varint hash code, varint digest length, digest.</summary>
public static class Multihash
{
    /// <summary>The identity "hash" (the digest is the data itself).</summary>
    public const ulong Identity = 0x00;

    /// <summary>SHA2-256.</summary>
    public const ulong Sha2_256 = 0x12;

    /// <summary>Longest digest accepted when decoding.</summary>
    public const int MaxDigestLength = 1024;

    private const string Codec = "multihash";

    /// <summary>Builds the multihash of an already computed <paramref name="digest"/>.</summary>
    public static byte[] Encode(ulong code, ReadOnlySpan<byte> digest)
    {
        int codeSize = Varint.SizeOf(code);
        int lengthSize = Varint.SizeOf((ulong)digest.Length);
        var result = new byte[codeSize + lengthSize + digest.Length];
        Varint.Write(result, code);
        Varint.Write(result.AsSpan(codeSize), (ulong)digest.Length);
        digest.CopyTo(result.AsSpan(codeSize + lengthSize));
        return result;
    }

    /// <summary>The sha2-256 multihash of <paramref name="data"/>.</summary>
    public static byte[] Sha256(ReadOnlySpan<byte> data)
    {
        var result = new byte[2 + 32];
        result[0] = (byte)Sha2_256;
        result[1] = 32;
        SHA256.HashData(data, result.AsSpan(2));
        return result;
    }

    /// <summary>
    /// Splits a complete multihash (nothing may follow the digest). False when <paramref name="mh"/> is
    /// not exactly one well-formed multihash.
    /// </summary>
    public static bool TryDecode(ReadOnlySpan<byte> mh, out ulong code, out ReadOnlySpan<byte> digest)
    {
        code = 0;
        digest = default;
        try
        {
            if (!Varint.TryRead(mh, out ulong c, out int n1)
                || !Varint.TryRead(mh[n1..], out ulong length, out int n2))
            {
                return false;
            }

            int rest = mh.Length - n1 - n2;
            if (length > MaxDigestLength || length != (ulong)rest)
            {
                return false;
            }

            code = c;
            digest = mh[(n1 + n2)..];
            return true;
        }
        catch (ProtocolViolationException)
        {
            return false;
        }
    }

    /// <summary>Like <see cref="TryDecode"/> but throws <see cref="ProtocolViolationException"/> ("multihash").</summary>
    public static ulong Decode(ReadOnlySpan<byte> mh, out ReadOnlySpan<byte> digest)
    {
        if (!TryDecode(mh, out ulong code, out digest))
        {
            throw new ProtocolViolationException(Codec, "malformed multihash");
        }

        return code;
    }

    /// <summary>
    /// Reads a multihash from the start of <paramref name="input"/> (data may follow); returns its total
    /// length. Throws <see cref="ProtocolViolationException"/> when malformed or truncated.
    /// </summary>
    public static int ReadPrefix(ReadOnlySpan<byte> input, out ulong code, out ReadOnlySpan<byte> digest)
    {
        code = Varint.Read(input, out int n1);
        ulong length = Varint.Read(input[n1..], out int n2);
        if (length > MaxDigestLength || length > (ulong)(input.Length - n1 - n2))
        {
            throw new ProtocolViolationException(Codec, "digest length exceeds the input");
        }

        digest = input.Slice(n1 + n2, (int)length);
        return n1 + n2 + (int)length;
    }
}
