using System.Net;
using System.Net.Sockets;

namespace Weft.Bench;

/// <summary>
/// Baseline (b): the best a plain C# program gets from loopback TCP. One listening socket and one
/// connecting socket in this process; a sender task writes <c>--write-size</c> chunks (default 256 KiB)
/// with Socket.SendAsync, a receiver task reads with Socket.ReceiveAsync into a buffer of the same size
/// (or <c>--read-size</c>: 4096 shows what reading in 4 KiB pieces, as Kestrel's socket pipes do, costs).
/// The time runs from the first send until the receiver has counted every byte.
/// </summary>
public static class SocketPump
{
    public const int DefaultWriteSize = 256 * 1024;
    public const int MinWriteSize = 64 * 1024;
    public const long WarmupBytes = 64L * 1024 * 1024;

    public static async Task<Dictionary<string, object?>> RunAsync(Options o, CancellationToken ct)
    {
        var bytes = o.GetBytes("--bytes", 1L << 30);
        var writeSize = (int)o.GetBytes("--write-size", DefaultWriteSize);
        var readSize = (int)o.GetBytes("--read-size", writeSize);
        if (bytes <= 0) throw new ArgumentException("--bytes must be positive");
        if (writeSize < MinWriteSize) throw new ArgumentException($"--write-size must be at least {MinWriteSize}");
        if (readSize <= 0) throw new ArgumentException("--read-size must be positive");

        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(1);
        using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        var acceptTask = listener.AcceptAsync(ct).AsTask();
        await client.ConnectAsync(listener.LocalEndPoint!, ct).ConfigureAwait(false);
        using var server = await acceptTask.ConfigureAwait(false);
        server.NoDelay = true;

        var sendBuf = new byte[writeSize];
        var recvBuf = new byte[readSize];
        await PumpAsync(client, server, sendBuf, recvBuf, WarmupBytes, ct).ConfigureAwait(false);

        var before = ProcessSnapshot.Take();
        var seconds = await PumpAsync(client, server, sendBuf, recvBuf, bytes, ct).ConfigureAwait(false);
        var after = ProcessSnapshot.Take();

        var r = new Dictionary<string, object?>
        {
            ["bytes"] = bytes,
            ["writeSize"] = writeSize,
            ["readSize"] = readSize,
            ["seconds"] = Stats.Round(seconds, 4),
            ["mibPerSec"] = Stats.MibPerSec(bytes, seconds),
        };
        ProcessSnapshot.AddCpu(r, before, after);
        return r;
    }

    private static async Task<double> PumpAsync(Socket tx, Socket rx, byte[] sendBuf, byte[] recvBuf, long bytes, CancellationToken ct)
    {
        var start = System.Diagnostics.Stopwatch.GetTimestamp();
        var receiving = Task.Run(async () =>
        {
            long got = 0;
            while (got < bytes)
            {
                var n = await rx.ReceiveAsync(recvBuf.AsMemory(), SocketFlags.None, ct).ConfigureAwait(false);
                if (n == 0) throw new EndOfStreamException($"socket closed after {got} of {bytes} bytes");
                got += n;
            }
        }, ct);
        var sending = Task.Run(async () =>
        {
            var left = bytes;
            while (left > 0)
            {
                var n = (int)Math.Min(left, sendBuf.Length);
                var sent = await tx.SendAsync(sendBuf.AsMemory(0, n), SocketFlags.None, ct).ConfigureAwait(false);
                left -= sent;
            }
        }, ct);
        await Task.WhenAll(sending, receiving).ConfigureAwait(false);
        return System.Diagnostics.Stopwatch.GetElapsedTime(start).TotalSeconds;
    }
}
