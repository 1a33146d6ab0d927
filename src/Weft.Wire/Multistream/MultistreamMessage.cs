using System.Buffers;
using System.Text;
using Weft.Wire.Multiformats;

namespace Weft.Wire.Multistream;

/// <summary>
/// multistream-select 1.0 messages: <c>uvarint(len) ‖ utf8(text) ‖ '\n'</c>, where len counts the newline.
/// </summary>
public static class MultistreamMessage
{
    public const string ProtocolId = "/multistream/1.0.0";
    public const string NotAvailable = "na";
    public const string List = "ls";

    /// <summary>Largest single message we accept (a protocol id, or an <c>ls</c> answer).</summary>
    public const int MaxMessageLength = 64 * 1024;

    /// <summary>Largest protocol id we send or accept as a proposal.</summary>
    public const int MaxProtocolIdLength = 1024;

    /// <summary>The header message as bytes: <c>0x13 "/multistream/1.0.0\n"</c>.</summary>
    public static ReadOnlySpan<byte> HeaderBytes => "\u0013/multistream/1.0.0\n"u8;

    /// <summary>
    /// Reads the header, failing at the first byte that differs from it. A peer with another PSK sends
    /// noise, which this rejects at once instead of waiting for a length that never arrives.
    /// </summary>
    public static bool TryReadHeader(ref ReadOnlySequence<byte> input)
    {
        var expected = HeaderBytes;
        var n = (int)Math.Min(input.Length, expected.Length);
        Span<byte> got = stackalloc byte[expected.Length];
        input.Slice(0, n).CopyTo(got);
        for (var i = 0; i < n; i++)
        {
            if (got[i] != expected[i])
                throw new ProtocolViolationException("multistream", "the peer did not start with the multistream header (PSK mismatch, or not a libp2p peer?)");
        }
        if (n < expected.Length) return false;
        input = input.Slice(expected.Length);
        return true;
    }

    /// <summary>Reads one message. False: more bytes needed (input untouched).</summary>
    public static bool TryRead(ref ReadOnlySequence<byte> input, out string text, int maxLength = MaxMessageLength)
    {
        text = "";
        var probe = input;
        if (!Varint.TryRead(ref probe, out var len)) return false;
        if (len == 0) throw new ProtocolViolationException("multistream", "empty message");
        if (len > (ulong)maxLength)
            throw new ProtocolViolationException("multistream", $"message of {len} bytes exceeds the limit of {maxLength}");
        if (probe.Length < (long)len) return false;
        var body = probe.Slice(0, (long)len);
        var last = body.Slice(body.Length - 1).FirstSpan[0];
        if (last != (byte)'\n')
            throw new ProtocolViolationException("multistream", "message does not end with a newline (PSK mismatch, or not a libp2p peer?)");
        try
        {
            text = Utf8Strict.GetString(body.Slice(0, body.Length - 1));
        }
        catch (DecoderFallbackException)
        {
            throw new ProtocolViolationException("multistream", "message is not valid UTF-8 (PSK mismatch, or not a libp2p peer?)");
        }
        input = probe.Slice((long)len);
        return true;
    }

    /// <summary>Writes one message for <paramref name="text"/> (a newline is appended).</summary>
    public static void Write(IBufferWriter<byte> output, string text)
    {
        var n = Encoding.UTF8.GetByteCount(text) + 1;
        if (n > MaxMessageLength) throw new ArgumentException($"multistream message of {n} bytes exceeds {MaxMessageLength}", nameof(text));
        Varint.Write(output, (ulong)n);
        var span = output.GetSpan(n);
        Encoding.UTF8.GetBytes(text, span);
        span[n - 1] = (byte)'\n';
        output.Advance(n);
    }

    /// <summary>The body of an <c>ls</c> answer: each protocol as a message, then a bare newline.</summary>
    public static string EncodeListBody(IEnumerable<string> protocols)
    {
        var w = new ArrayBufferWriter<byte>();
        foreach (var p in protocols) Write(w, p);
        w.GetSpan(1)[0] = (byte)'\n';
        w.Advance(1);
        // The ls answer is itself one message whose text is these bytes minus the final newline that Write adds.
        return Encoding.UTF8.GetString(w.WrittenSpan[..^1]);
    }

    /// <summary>Parses an <c>ls</c> answer body (already stripped of its outer framing) into protocol ids.</summary>
    public static IReadOnlyList<string> DecodeListBody(string body)
    {
        var bytes = new ReadOnlySequence<byte>(Encoding.UTF8.GetBytes(body + "\n"));
        var list = new List<string>();
        while (bytes.Length > 1)
        {
            if (!TryRead(ref bytes, out var p, MaxProtocolIdLength))
                throw new ProtocolViolationException("multistream", "truncated ls answer");
            list.Add(p);
        }
        return list;
    }

    private static readonly UTF8Encoding Utf8Strict = new(false, true);
}
