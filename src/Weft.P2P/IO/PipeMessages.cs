using System.Buffers;
using System.IO.Pipelines;
using Weft.Wire.Protobuf;

namespace Weft.P2P.IO;

/// <summary>A codec's reader: false = need more bytes, input untouched; malformed = ProtocolViolationException.</summary>
public delegate bool TryParse<T>(ref ReadOnlySequence<byte> input, out T value);

public static class PipeMessages
{
    /// <summary>
    /// Reads one message with <paramref name="parse"/>. Throws <see cref="EndOfStreamException"/> if the
    /// peer closes first.
    /// </summary>
    public static async ValueTask<T> ReadAsync<T>(this PipeReader reader, TryParse<T> parse, CancellationToken ct)
    {
        while (true)
        {
            var result = await reader.ReadAsync(ct).ConfigureAwait(false);
            var buffer = result.Buffer;
            bool ok;
            T value;
            try
            {
                ok = parse(ref buffer, out value);
            }
            catch
            {
                reader.AdvanceTo(result.Buffer.Start);
                throw;
            }
            if (ok)
            {
                reader.AdvanceTo(buffer.Start);
                return value;
            }
            var pending = result.Buffer.Length; // read before AdvanceTo: the buffer's segments are not ours after it
            reader.AdvanceTo(result.Buffer.Start, result.Buffer.End);
            if (result.IsCompleted)
                throw new EndOfStreamException(pending == 0
                    ? "the peer closed the stream"
                    : $"the peer closed the stream in the middle of a message ({pending} bytes pending)");
            if (result.IsCanceled) throw new OperationCanceledException("read canceled");
        }
    }

    /// <summary>Reads one unsigned-varint length-prefixed message of at most <paramref name="maxLength"/> bytes.</summary>
    public static ValueTask<byte[]> ReadLengthPrefixedAsync(this PipeReader reader, int maxLength, string protocol, CancellationToken ct)
        => reader.ReadAsync((ref ReadOnlySequence<byte> input, out byte[] value) =>
            LengthPrefixed.TryRead(ref input, maxLength, protocol, out value), ct);

    public static ValueTask<FlushResult> WriteLengthPrefixedAsync(this PipeWriter writer, ReadOnlySpan<byte> message, CancellationToken ct)
    {
        LengthPrefixed.Write(writer, message);
        return writer.FlushAsync(ct);
    }
}
