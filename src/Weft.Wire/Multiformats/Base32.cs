using System.Diagnostics.CodeAnalysis;

namespace Weft.Wire.Multiformats;

/// <summary>
/// RFC 4648 base32, lower-case, without padding (multibase "base32", prefix 'b'). Decoding also accepts
/// upper case (multibase 'B'), rejects padding, impossible lengths and non-zero trailing bits.
/// </summary>
public static class Base32
{
    private const string Alphabet = "abcdefghijklmnopqrstuvwxyz234567";

    private static readonly sbyte[] DecodeMap = BuildDecodeMap();

    /// <summary>Encodes <paramref name="data"/> as lower-case base32 without padding.</summary>
    public static string Encode(ReadOnlySpan<byte> data)
    {
        int length = ((data.Length * 8) + 4) / 5;
        char[]? rented = null;
        Span<char> chars = length <= 512 ? stackalloc char[length] : (rented = System.Buffers.ArrayPool<char>.Shared.Rent(length));
        int bits = 0;
        int buffer = 0;
        int o = 0;
        foreach (byte b in data)
        {
            buffer = (buffer << 8) | b;
            bits += 8;
            while (bits >= 5)
            {
                bits -= 5;
                chars[o++] = Alphabet[(buffer >> bits) & 31];
            }
        }

        if (bits > 0)
        {
            chars[o++] = Alphabet[(buffer << (5 - bits)) & 31];
        }

        string result = new(chars[..o]);
        if (rented is not null)
        {
            System.Buffers.ArrayPool<char>.Shared.Return(rented);
        }

        return result;
    }

    /// <summary>Decodes <paramref name="text"/>; throws <see cref="FormatException"/> when it is not valid base32.</summary>
    public static byte[] Decode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (!TryDecode(text, out byte[]? result))
        {
            throw new FormatException("Invalid base32 string (RFC 4648 alphabet, no padding expected).");
        }

        return result;
    }

    /// <summary>Decodes <paramref name="text"/>; false when it is not valid base32.</summary>
    public static bool TryDecode(string? text, [NotNullWhen(true)] out byte[]? result) => TryDecode(text.AsSpan(), out result);

    /// <summary>Decodes <paramref name="text"/>; false when it is not valid base32.</summary>
    public static bool TryDecode(ReadOnlySpan<char> text, [NotNullWhen(true)] out byte[]? result)
    {
        result = null;
        int rem = text.Length % 8;
        if (rem is 1 or 3 or 6)
        {
            return false;
        }

        var output = new byte[text.Length * 5 / 8];
        int bits = 0;
        int buffer = 0;
        int o = 0;
        foreach (char c in text)
        {
            int v = c < 128 ? DecodeMap[c] : -1;
            if (v < 0)
            {
                return false;
            }

            buffer = ((buffer << 5) | v) & 0xFFF;
            bits += 5;
            if (bits >= 8)
            {
                bits -= 8;
                output[o++] = (byte)(buffer >> bits);
            }
        }

        if ((buffer & ((1 << bits) - 1)) != 0)
        {
            return false;
        }

        result = output;
        return true;
    }

    private static sbyte[] BuildDecodeMap()
    {
        var map = new sbyte[128];
        Array.Fill(map, (sbyte)-1);
        for (int i = 0; i < Alphabet.Length; i++)
        {
            map[Alphabet[i]] = (sbyte)i;
            map[char.ToUpperInvariant(Alphabet[i])] = (sbyte)i;
        }

        return map;
    }
}
