using System.Buffers.Binary;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace Weft.Mesh.Proxy;

/// <summary>A UDP echo stream's outcome: every echo is checked to be exactly one datagram that was sent, once.</summary>
public sealed record UdpStreamResult(int Sent, int Received, int Lost, int Corrupt, int Duplicates, double Seconds);

/// <summary>A download's time and the longest wait between two reads of it (what a relay failure costs the application).</summary>
public sealed record TransferResult(double Seconds, double MaxGapMs);

/// <summary>
/// An interactive session: exchanges done and failed, round trips (the longest is the stall the application saw), and
/// the error that ended it early, if any.
/// </summary>
public sealed record SessionResult(int Exchanges, int Corrupt, double P50Ms, double MaxMs, double Seconds, string? Error);

/// <summary>
/// Clients of <see cref="DemoApp"/> for tests, the lab and benchmarks (`weft demo-call`): they check every byte they
/// get back and are bounded in count and time.
/// </summary>
public static class DemoClient
{
    /// <summary>How long a stream waits for the window to move before it takes the missing datagrams as lost.</summary>
    public static readonly TimeSpan StallTimeout = TimeSpan.FromMilliseconds(500);

    /// <summary>How long a stream waits for the last echoes after the last datagram went out.</summary>
    public static readonly TimeSpan DrainTimeout = TimeSpan.FromSeconds(2);

    /// <summary>Size of datagram <paramref name="seq"/> of a stream: 8 to 1400 bytes.</summary>
    public static int StreamDatagramSize(int seq) => 8 + (int)((uint)seq * 7919u % 1393u);

    /// <summary>
    /// Sends <paramref name="count"/> datagrams on one socket (each: its sequence number, then a pattern from it) with
    /// at most <paramref name="window"/> unanswered, and checks each echo. Lost = never echoed within
    /// <see cref="DrainTimeout"/> of the last send.
    /// </summary>
    public static async Task<UdpStreamResult> UdpStreamAsync(IPEndPoint target, int count, int window, CancellationToken ct = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(window);
        using var c = new Socket(target.AddressFamily, SocketType.Dgram, ProtocolType.Udp) { ReceiveBufferSize = 4 << 20, SendBufferSize = 4 << 20 };
        c.Connect(target);
        var seen = new bool[count];
        int received = 0, corrupt = 0, duplicates = 0;
        using var progress = new SemaphoreSlim(0);
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var sw = Stopwatch.StartNew();
        var reader = Task.Run(async () =>
        {
            var buffer = new byte[65536];
            while (true)
            {
                int n;
                try { n = await c.ReceiveAsync(buffer, SocketFlags.None, stop.Token).ConfigureAwait(false); }
                catch (OperationCanceledException) { return; }
                catch (SocketException) { continue; } // ICMP from an earlier datagram
                var seq = n >= 4 ? BinaryPrimitives.ReadInt32LittleEndian(buffer) : -1;
                if (seq < 0 || seq >= count || n != StreamDatagramSize(seq) || !Matches(buffer.AsSpan(0, n), seq)) corrupt++;
                else if (seen[seq]) duplicates++;
                else
                {
                    seen[seq] = true;
                    Interlocked.Increment(ref received);
                }
                progress.Release();
            }
        }, CancellationToken.None);
        var d = new byte[StreamDatagramSize(0) + 1400];
        for (var seq = 0; seq < count; seq++)
        {
            while (seq - Volatile.Read(ref received) >= window && await progress.WaitAsync(StallTimeout, ct).ConfigureAwait(false)) { }
            var size = StreamDatagramSize(seq);
            Fill(d.AsSpan(0, size), seq);
            await c.SendAsync(d.AsMemory(0, size), SocketFlags.None, ct).ConfigureAwait(false);
        }
        var until = Stopwatch.GetTimestamp() + (long)(DrainTimeout.TotalSeconds * Stopwatch.Frequency);
        while (Volatile.Read(ref received) < count && Stopwatch.GetTimestamp() < until)
            await progress.WaitAsync(TimeSpan.FromMilliseconds(50), ct).ConfigureAwait(false);
        var seconds = sw.Elapsed.TotalSeconds;
        await stop.CancelAsync().ConfigureAwait(false);
        await reader.ConfigureAwait(false);
        var got = Volatile.Read(ref received);
        return new UdpStreamResult(count, got, count - got, corrupt, duplicates, seconds);
    }

    private static void Fill(Span<byte> d, int seq)
    {
        BinaryPrimitives.WriteInt32LittleEndian(d, seq);
        for (var i = 4; i < d.Length; i++) d[i] = (byte)(seq + i);
    }

    private static bool Matches(ReadOnlySpan<byte> d, int seq)
    {
        for (var i = 4; i < d.Length; i++) if (d[i] != (byte)(seq + i)) return false;
        return true;
    }

    /// <summary>
    /// <paramref name="count"/> one-datagram queries, each from a new socket (a new flow at a proxy), sizes cycling
    /// through <paramref name="sizes"/>; returns how many came back intact within <paramref name="timeout"/> each.
    /// </summary>
    public static async Task<(int Sent, int Answered)> UdpQueriesAsync(IPEndPoint target, int count, IReadOnlyList<int> sizes, TimeSpan timeout, CancellationToken ct = default)
    {
        var answered = 0;
        var back = new byte[65536];
        for (var q = 0; q < count; q++)
        {
            using var c = new Socket(target.AddressFamily, SocketType.Dgram, ProtocolType.Udp);
            c.Connect(target);
            var query = new byte[sizes[q % sizes.Count]];
            Random.Shared.NextBytes(query);
            await c.SendAsync(query, SocketFlags.None, ct).ConfigureAwait(false);
            using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
            cts.CancelAfter(timeout);
            try
            {
                var n = await c.ReceiveAsync(back, SocketFlags.None, cts.Token).ConfigureAwait(false);
                if (back.AsSpan(0, n).SequenceEqual(query)) answered++;
            }
            catch (OperationCanceledException) when (!ct.IsCancellationRequested)
            {
                // not answered in time: counted as lost
            }
        }
        return (count, answered);
    }

    /// <summary>
    /// One TCP echo exchange: sends <paramref name="size"/> random bytes, half-closes, reads the echo until EOF and
    /// checks it. Returns the seconds from connect to EOF. Throws <see cref="InvalidDataException"/> on a wrong echo.
    /// </summary>
    public static async Task<double> TcpEchoAsync(IPEndPoint target, int size, CancellationToken ct = default)
    {
        var data = new byte[size];
        Random.Shared.NextBytes(data);
        var sw = Stopwatch.StartNew();
        using var s = new Socket(target.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await s.ConnectAsync(target, ct).ConfigureAwait(false);
        var reading = Task.Run(async () =>
        {
            var back = new byte[size];
            var buffer = new byte[65536];
            var got = 0;
            int n;
            while ((n = await s.ReceiveAsync(buffer, SocketFlags.None, ct).ConfigureAwait(false)) > 0)
            {
                if (got + n > size) throw new InvalidDataException($"echo longer than the {size} bytes sent");
                buffer.AsSpan(0, n).CopyTo(back.AsSpan(got));
                got += n;
            }
            return (back, got);
        }, CancellationToken.None);
        for (var sent = 0; sent < size;) sent += await s.SendAsync(data.AsMemory(sent, Math.Min(1 << 20, size - sent)), SocketFlags.None, ct).ConfigureAwait(false);
        s.Shutdown(SocketShutdown.Send);
        var (echo, length) = await reading.ConfigureAwait(false);
        var seconds = sw.Elapsed.TotalSeconds;
        if (length != size || !echo.AsSpan().SequenceEqual(data)) throw new InvalidDataException($"echo of {length} bytes differs from the {size} bytes sent");
        return seconds;
    }

    /// <summary>
    /// <c>GET BASE/bytes/N</c>, checking every byte against the pattern. Returns the seconds from sending the request to
    /// the last byte, and the longest gap between reads. Throws <see cref="InvalidDataException"/> on a wrong or short body.
    /// </summary>
    public static async Task<TransferResult> GetBytesAsync(HttpClient http, Uri baseUrl, long n, CancellationToken ct = default)
    {
        var sw = Stopwatch.StartNew();
        using var response = await http.GetAsync(new Uri(baseUrl, "bytes/" + n.ToString(System.Globalization.CultureInfo.InvariantCulture)), HttpCompletionOption.ResponseHeadersRead, ct).ConfigureAwait(false);
        response.EnsureSuccessStatusCode();
        await using var body = await response.Content.ReadAsStreamAsync(ct).ConfigureAwait(false);
        var buffer = new byte[256 * 1024];
        long at = 0;
        int read;
        var last = sw.Elapsed;
        var maxGap = TimeSpan.Zero;
        while ((read = await body.ReadAsync(buffer, ct).ConfigureAwait(false)) > 0)
        {
            var now = sw.Elapsed;
            if (now - last > maxGap) maxGap = now - last;
            last = now;
            if (!DemoApp.MatchesPattern(at, buffer.AsSpan(0, read))) throw new InvalidDataException($"bytes {at}..{at + read} are not the pattern");
            at += read;
        }
        if (at != n) throw new InvalidDataException($"got {at} bytes, not {n}");
        return new TransferResult(sw.Elapsed.TotalSeconds, Math.Round(maxGap.TotalMilliseconds, 1));
    }

    /// <summary>
    /// An interactive session on one TCP connection to an echo service: every <paramref name="interval"/> one message of
    /// <paramref name="size"/> bytes (its sequence number, then a pattern from it) is sent and its echo awaited and
    /// checked, for <paramref name="duration"/>. A connection error or a wrong echo ends it early (<see cref="SessionResult.Error"/>).
    /// </summary>
    public static async Task<SessionResult> SessionAsync(IPEndPoint target, TimeSpan duration, TimeSpan interval, int size, TimeSpan exchangeTimeout, CancellationToken ct = default)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(size, 8);
        var rtts = new List<double>();
        var corrupt = 0;
        string? error = null;
        var total = Stopwatch.StartNew();
        using var s = new Socket(target.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        var message = new byte[size];
        var back = new byte[size];
        try
        {
            await s.ConnectAsync(target, ct).ConfigureAwait(false);
            for (var seq = 0L; total.Elapsed < duration; seq++)
            {
                BinaryPrimitives.WriteInt64LittleEndian(message, seq);
                for (var i = 8; i < size; i++) message[i] = (byte)(seq + i);
                var sw = Stopwatch.StartNew();
                using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
                cts.CancelAfter(exchangeTimeout);
                await s.SendAsync(message, SocketFlags.None, cts.Token).ConfigureAwait(false);
                for (var got = 0; got < size;)
                {
                    var n = await s.ReceiveAsync(back.AsMemory(got), SocketFlags.None, cts.Token).ConfigureAwait(false);
                    if (n == 0) throw new IOException($"the connection was closed after {seq} exchanges");
                    got += n;
                }
                rtts.Add(sw.Elapsed.TotalMilliseconds);
                if (!back.AsSpan().SequenceEqual(message))
                {
                    corrupt++;
                    throw new InvalidDataException($"exchange {seq} came back different");
                }
                var wait = interval - sw.Elapsed;
                if (wait > TimeSpan.Zero) await Task.Delay(wait, ct).ConfigureAwait(false); // the session's own pace
            }
            s.Shutdown(SocketShutdown.Send);
        }
        catch (Exception ex) when (ex is SocketException or IOException or InvalidDataException or OperationCanceledException && !ct.IsCancellationRequested)
        {
            error = ex is OperationCanceledException ? $"no echo within {exchangeTimeout.TotalSeconds:0.#} s" : ex.Message;
        }
        rtts.Sort();
        return new SessionResult(rtts.Count, corrupt, rtts.Count == 0 ? 0 : Math.Round(rtts[rtts.Count / 2], 3), rtts.Count == 0 ? 0 : Math.Round(rtts[^1], 3),
            Math.Round(total.Elapsed.TotalSeconds, 3), error);
    }
}
