using System.Buffers;
using System.Buffers.Binary;
using System.IO.Pipelines;
using Weft.P2P.Host;

namespace Weft.P2P.Perf;

/// <summary>Result of one perf run, in the shape `weft p2p perf --json` prints.</summary>
public sealed record PerfResult(long UploadBytes, double UploadSeconds, long DownloadBytes, double DownloadSeconds);

/// <summary>
/// /perf/1.0.0 (perf/perf.md): the client sends the number of bytes it wants back as a big-endian
/// u64, then uploads until it half-closes; the server drains the upload, then sends that many bytes
/// and closes.
/// </summary>
public static class PerfService
{
    public const string ProtocolId = "/perf/1.0.0";

    /// <summary>Largest download a server agrees to send in one run.</summary>
    public const long MaxDownloadBytes = 64L * 1024 * 1024 * 1024;

    private const int ChunkSize = 64 * 1024;
    private static readonly byte[] Zeros = new byte[ChunkSize];

    public static void Register(Libp2pHost host) => host.Handle(ProtocolId, ServeAsync);

    private static async Task ServeAsync(IncomingStream s, CancellationToken ct)
    {
        var input = s.Stream.Input;
        var r = await input.ReadAtLeastAsync(8, ct).ConfigureAwait(false);
        if (r.Buffer.Length < 8)
            throw new Weft.Wire.ProtocolViolationException("perf", "stream closed before the 8-byte download size");
        Span<byte> head = stackalloc byte[8];
        r.Buffer.Slice(0, 8).CopyTo(head);
        input.AdvanceTo(r.Buffer.GetPosition(8));
        var download = BinaryPrimitives.ReadUInt64BigEndian(head);
        if (download > (ulong)MaxDownloadBytes)
            throw new Weft.Wire.ProtocolViolationException("perf", $"download of {download} bytes exceeds {MaxDownloadBytes}");
        await DrainAsync(input, ct).ConfigureAwait(false);
        await SendAsync(s.Stream.Output, (long)download, ct).ConfigureAwait(false);
        await s.Stream.Output.CompleteAsync().ConfigureAwait(false);
    }

    /// <summary>Runs one perf exchange over a connection.</summary>
    public static async Task<PerfResult> RunAsync(Connection conn, long uploadBytes, long downloadBytes, TimeProvider time, CancellationToken ct)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(uploadBytes);
        ArgumentOutOfRangeException.ThrowIfNegative(downloadBytes);
        var stream = await conn.OpenStreamAsync(ProtocolId, ct).ConfigureAwait(false);
        await using (stream.ConfigureAwait(false))
        {
            var start = time.GetTimestamp();
            var head = new byte[8];
            BinaryPrimitives.WriteUInt64BigEndian(head, (ulong)downloadBytes);
            await stream.Output.WriteAsync(head, ct).ConfigureAwait(false);
            await SendAsync(stream.Output, uploadBytes, ct).ConfigureAwait(false);
            await stream.Output.CompleteAsync().ConfigureAwait(false);
            var upSeconds = time.GetElapsedTime(start).TotalSeconds;
            var downStart = time.GetTimestamp();
            var got = await DrainAsync(stream.Input, ct).ConfigureAwait(false);
            var downSeconds = time.GetElapsedTime(downStart).TotalSeconds;
            if (got != downloadBytes)
                throw new Weft.Wire.ProtocolViolationException("perf", $"expected {downloadBytes} bytes back, got {got}");
            return new PerfResult(uploadBytes, upSeconds, downloadBytes, downSeconds);
        }
    }

    private static async Task SendAsync(PipeWriter output, long bytes, CancellationToken ct)
    {
        while (bytes > 0)
        {
            var n = (int)Math.Min(bytes, ChunkSize);
            var mem = output.GetMemory(n);
            n = Math.Min(n, mem.Length);
            Zeros.AsSpan(0, n).CopyTo(mem.Span);
            output.Advance(n);
            bytes -= n;
            var f = await output.FlushAsync(ct).ConfigureAwait(false);
            if (f.IsCompleted && bytes > 0) throw new EndOfStreamException("the peer stopped reading");
        }
    }

    private static async Task<long> DrainAsync(PipeReader input, CancellationToken ct)
    {
        long total = 0;
        while (true)
        {
            var r = await input.ReadAsync(ct).ConfigureAwait(false);
            total += r.Buffer.Length;
            input.AdvanceTo(r.Buffer.End);
            if (r.IsCompleted) return total;
        }
    }
}
