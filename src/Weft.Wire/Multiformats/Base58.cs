using System.Diagnostics.CodeAnalysis;

namespace Weft.Wire.Multiformats;

/// <summary>Base58 with the Bitcoin alphabet (multibase "base58btc", prefix 'z').</summary>
public static class Base58
{
    private const string Alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

    private static readonly sbyte[] DecodeMap = BuildDecodeMap();

    /// <summary>Encodes <paramref name="data"/>; each leading zero byte becomes a leading '1'.</summary>
    public static string Encode(ReadOnlySpan<byte> data)
    {
        int zeros = 0;
        while (zeros < data.Length && data[zeros] == 0)
        {
            zeros++;
        }

        // log(256) / log(58) ~= 1.366; digits are kept little-endian in base 58.
        int capacity = ((data.Length - zeros) * 138 / 100) + 1;
        byte[]? rented = null;
        Span<byte> digits = capacity <= 256
            ? stackalloc byte[capacity]
            : (rented = System.Buffers.ArrayPool<byte>.Shared.Rent(capacity));
        int length = 0;
        for (int i = zeros; i < data.Length; i++)
        {
            int carry = data[i];
            for (int j = 0; j < length; j++)
            {
                carry += digits[j] << 8;
                digits[j] = (byte)(carry % 58);
                carry /= 58;
            }

            while (carry > 0)
            {
                digits[length++] = (byte)(carry % 58);
                carry /= 58;
            }
        }

        int total = zeros + length;
        char[]? rentedChars = null;
        Span<char> chars = total <= 512
            ? stackalloc char[total]
            : (rentedChars = System.Buffers.ArrayPool<char>.Shared.Rent(total));
        chars[..zeros].Fill('1');
        for (int i = 0; i < length; i++)
        {
            chars[zeros + i] = Alphabet[digits[length - 1 - i]];
        }

        string result = new(chars[..total]);
        if (rented is not null)
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(rented);
        }

        if (rentedChars is not null)
        {
            System.Buffers.ArrayPool<char>.Shared.Return(rentedChars);
        }

        return result;
    }

    /// <summary>Decodes <paramref name="text"/>; throws <see cref="FormatException"/> on a character outside the alphabet.</summary>
    public static byte[] Decode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (!TryDecode(text, out byte[]? result))
        {
            throw new FormatException("Invalid base58btc string: it contains a character outside the base58btc alphabet.");
        }

        return result;
    }

    /// <summary>Decodes <paramref name="text"/>; false on a character outside the alphabet.</summary>
    public static bool TryDecode(string? text, [NotNullWhen(true)] out byte[]? result) => TryDecode(text.AsSpan(), out result);

    /// <summary>Decodes <paramref name="text"/>; false on a character outside the alphabet.</summary>
    public static bool TryDecode(ReadOnlySpan<char> text, [NotNullWhen(true)] out byte[]? result)
    {
        result = null;
        int zeros = 0;
        while (zeros < text.Length && text[zeros] == '1')
        {
            zeros++;
        }

        // log(58) / log(256) ~= 0.733
        int capacity = ((text.Length - zeros) * 733 / 1000) + 1;
        byte[]? rented = null;
        Span<byte> bytes = capacity <= 256
            ? stackalloc byte[capacity]
            : (rented = System.Buffers.ArrayPool<byte>.Shared.Rent(capacity));
        int length = 0;
        try
        {
            for (int i = zeros; i < text.Length; i++)
            {
                char c = text[i];
                int carry = c < 128 ? DecodeMap[c] : -1;
                if (carry < 0)
                {
                    return false;
                }

                for (int j = 0; j < length; j++)
                {
                    carry += bytes[j] * 58;
                    bytes[j] = (byte)carry;
                    carry >>= 8;
                }

                while (carry > 0)
                {
                    bytes[length++] = (byte)carry;
                    carry >>= 8;
                }
            }

            var output = new byte[zeros + length];
            for (int i = 0; i < length; i++)
            {
                output[zeros + i] = bytes[length - 1 - i];
            }

            result = output;
            return true;
        }
        finally
        {
            if (rented is not null)
            {
                System.Buffers.ArrayPool<byte>.Shared.Return(rented);
            }
        }
    }

    private static sbyte[] BuildDecodeMap()
    {
        var map = new sbyte[128];
        Array.Fill(map, (sbyte)-1);
        for (int i = 0; i < Alphabet.Length; i++)
        {
            map[Alphabet[i]] = (sbyte)i;
        }

        return map;
    }
}
