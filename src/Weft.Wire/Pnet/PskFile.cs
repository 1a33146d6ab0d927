using System.Security.Cryptography;
using System.Text;

namespace Weft.Wire.Pnet;

/// <summary>
/// Reads a private-network pre-shared key (32 bytes) from the bytes of a key file.
/// <list type="bullet">
/// <item>A file that starts with <c>/key/swarm/psk/1.0.0/</c> is the libp2p/IPFS <c>swarm.key</c> format:
/// that header line, an encoding line (<c>/base16/</c>, <c>/base64/</c> or <c>/bin/</c>), then the key.</item>
/// <item>Any other file is an EdgeMesh PSK file: EdgeMesh hashes the whole file and feeds the hash to the
/// same decoder as <c>/base64/</c>, so the key is <c>Base64Decode(lowerhex(SHA256(file)))[0..32]</c>.
/// Every byte counts, including a trailing newline.</item>
/// </list>
/// </summary>
public static class PskFile
{
    public const string Header = "/key/swarm/psk/1.0.0/";
    public const string EncodingBase16 = "/base16/";
    public const string EncodingBase64 = "/base64/";
    public const string EncodingBinary = "/bin/";
    public const int KeyLength = 32;

    /// <summary>Largest key file accepted; real ones are under 100 bytes.</summary>
    public const int MaxFileLength = 64 * 1024;

    private const string Help = "Expected either a swarm.key file (\"/key/swarm/psk/1.0.0/\", then \"/base16/\" and 64 hex digits) " +
                                "or any other non-empty file, whose SHA-256 is used as EdgeMesh does.";

    /// <summary>Parses a key file. Throws <see cref="FormatException"/> saying what is wrong and how to fix it.</summary>
    public static byte[] ParseKey(ReadOnlySpan<byte> fileBytes)
    {
        if (fileBytes.IsEmpty) throw new FormatException("The PSK file is empty. " + Help);
        if (fileBytes.Length > MaxFileLength) throw new FormatException($"The PSK file has {fileBytes.Length} bytes; a key file is at most {MaxFileLength}. " + Help);
        return fileBytes.StartsWith(Encoding.ASCII.GetBytes(Header)) ? ParseSwarmKey(fileBytes) : DeriveEdgeMeshKey(fileBytes);
    }

    /// <summary>EdgeMesh's derivation from arbitrary file bytes: <c>Base64Decode(lowerhex(SHA256(file)))[0..32]</c>.</summary>
    public static byte[] DeriveEdgeMeshKey(ReadOnlySpan<byte> fileBytes)
    {
        var hex = Convert.ToHexStringLower(SHA256.HashData(fileBytes));
        // 64 hex digits are 64 valid base64 characters, which decode to 48 bytes; the decoder stops after 32.
        return Convert.FromBase64String(hex).AsSpan(0, KeyLength).ToArray();
    }

    private static byte[] ParseSwarmKey(ReadOnlySpan<byte> file)
    {
        var rest = file;
        var header = ReadLine(ref rest, "header");
        if (!header.SequenceEqual(Encoding.ASCII.GetBytes(Header)))
            throw new FormatException($"The PSK file's first line must be exactly \"{Header}\", got \"{Printable(header)}\".");
        var encoding = ReadLine(ref rest, "encoding");
        var name = Encoding.ASCII.GetString(encoding);
        return name switch
        {
            EncodingBase16 => DecodeBase16(TrimTrailingWhitespace(rest)),
            EncodingBase64 => DecodeBase64(TrimTrailingWhitespace(rest)),
            EncodingBinary => DecodeBinary(rest),
            _ => throw new FormatException($"The PSK file's second line must be \"{EncodingBase16}\", \"{EncodingBase64}\" or \"{EncodingBinary}\", got \"{Printable(encoding)}\"."),
        };
    }

    private static ReadOnlySpan<byte> ReadLine(ref ReadOnlySpan<byte> rest, string what)
    {
        var nl = rest.IndexOf((byte)'\n');
        if (nl < 0) throw new FormatException($"The PSK file ends inside its {what} line; the {what} line must end with a newline and be followed by the key.");
        var line = rest[..nl];
        rest = rest[(nl + 1)..];
        if (!line.IsEmpty && line[^1] == (byte)'\r') line = line[..^1];
        return line;
    }

    private static byte[] DecodeBase16(ReadOnlySpan<byte> text)
    {
        if (text.Length != 2 * KeyLength)
            throw new FormatException($"A /base16/ PSK must be {2 * KeyLength} hex digits on the third line, got {text.Length} characters. Generate one with: printf '/key/swarm/psk/1.0.0/\\n/base16/\\n%s\\n' \"$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n')\"");
        var key = new byte[KeyLength];
        for (var i = 0; i < KeyLength; i++)
        {
            var hi = HexValue(text[2 * i]);
            var lo = HexValue(text[2 * i + 1]);
            if (hi < 0 || lo < 0)
                throw new FormatException($"The /base16/ PSK contains a non-hex character near position {2 * i}; use only 0-9 and a-f.");
            key[i] = (byte)(hi << 4 | lo);
        }
        return key;
    }

    private static byte[] DecodeBase64(ReadOnlySpan<byte> text)
    {
        var s = Encoding.ASCII.GetString(text);
        if (s.Length % 4 != 0 && !s.Contains('=')) s = s.PadRight(s.Length + (4 - s.Length % 4) % 4, '=');
        var buffer = new byte[s.Length];
        if (s.Length == 0 || !Convert.TryFromBase64String(s, buffer, out var n))
            throw new FormatException("The /base64/ PSK on the third line is not valid base64 (standard alphabet). Generate one with: openssl rand -base64 32");
        if (n < KeyLength)
            throw new FormatException($"The /base64/ PSK decodes to {n} bytes; it must be at least {KeyLength}. Generate one with: openssl rand -base64 32");
        return buffer.AsSpan(0, KeyLength).ToArray();
    }

    private static byte[] DecodeBinary(ReadOnlySpan<byte> rest)
    {
        if (rest.Length < KeyLength || !IsWhitespace(rest[KeyLength..]))
            throw new FormatException($"A /bin/ PSK must be exactly {KeyLength} raw bytes after the second line (optionally followed by a newline), got {rest.Length} bytes.");
        return rest[..KeyLength].ToArray();
    }

    private static ReadOnlySpan<byte> TrimTrailingWhitespace(ReadOnlySpan<byte> s)
    {
        var end = s.Length;
        while (end > 0 && IsWhitespace(s[end - 1])) end--;
        return s[..end];
    }

    private static bool IsWhitespace(ReadOnlySpan<byte> s)
    {
        foreach (var b in s) if (!IsWhitespace(b)) return false;
        return true;
    }

    private static bool IsWhitespace(byte b) => b is (byte)' ' or (byte)'\t' or (byte)'\r' or (byte)'\n';

    private static int HexValue(byte c) => c switch
    {
        >= (byte)'0' and <= (byte)'9' => c - '0',
        >= (byte)'a' and <= (byte)'f' => c - 'a' + 10,
        >= (byte)'A' and <= (byte)'F' => c - 'A' + 10,
        _ => -1,
    };

    private static string Printable(ReadOnlySpan<byte> line)
    {
        var sb = new StringBuilder();
        foreach (var b in line[..Math.Min(line.Length, 40)]) sb.Append(b is >= 0x20 and < 0x7f ? (char)b : '?');
        if (line.Length > 40) sb.Append('…');
        return sb.ToString();
    }
}
