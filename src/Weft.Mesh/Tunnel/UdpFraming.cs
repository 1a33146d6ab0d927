using System.Buffers;
using System.IO.Pipelines;
using System.Net.Sockets;
using Weft.P2P.IO;
using Weft.Wire.Protobuf;

namespace Weft.Mesh.Tunnel;

/// <summary>
/// Datagrams over a tunnel stream. Weft's UDP tunnel frames each datagram as <c>uvarint(length) ‖ bytes</c> so their
/// boundaries survive the byte stream; EdgeMesh's (protocol "udp" on the TCP tunnel) writes them raw, so a read of up
/// to 4096 bytes is taken as one datagram there (as EdgeMesh does; boundaries may merge).
/// </summary>
public static class UdpFraming
{
    /// <summary>Read size for EdgeMesh's unframed UDP.</summary>
    public const int EdgeMeshReadSize = 4096;

    private const string Codec = "tunnel-udp";

    /// <summary>Appends one framed datagram; the caller flushes.</summary>
    public static void Write(PipeWriter output, ReadOnlySpan<byte> datagram) => LengthPrefixed.Write(output, datagram);

    /// <summary>Reads one framed datagram; null at the stream's end. Throws ProtocolViolationException past <paramref name="max"/>.</summary>
    public static async ValueTask<byte[]?> ReadAsync(PipeReader input, int max, CancellationToken ct)
    {
        try
        {
            return await input.ReadAsync((ref ReadOnlySequence<byte> seq, out byte[] value) => LengthPrefixed.TryRead(ref seq, max, Codec, out value), ct).ConfigureAwait(false);
        }
        catch (EndOfStreamException ex) when (ex.Message.Contains("closed the stream", StringComparison.Ordinal) && !ex.Message.Contains("middle", StringComparison.Ordinal))
        {
            return null;
        }
    }

    /// <summary>
    /// Server side: bridges a connected UDP socket and a tunnel stream until the stream ends, the socket fails, or
    /// nothing moved either way for <paramref name="idle"/> (then the stream is finished cleanly).
    /// </summary>
    public static async Task BridgeAsync(Socket socket, IDuplexPipe stream, bool framed, int maxDatagram, TimeSpan idle, TimeProvider time, BridgeCounters counters, CancellationToken ct)
    {
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        long last = time.GetTimestamp();
        void Touch() => Volatile.Write(ref last, time.GetTimestamp());

        async Task StreamToSocket()
        {
            while (true)
            {
                byte[]? datagram;
                if (framed)
                {
                    datagram = await ReadAsync(stream.Input, maxDatagram, stop.Token).ConfigureAwait(false);
                }
                else
                {
                    var r = await stream.Input.ReadAsync(stop.Token).ConfigureAwait(false);
                    var take = r.Buffer.Slice(0, Math.Min(r.Buffer.Length, EdgeMeshReadSize));
                    datagram = take.IsEmpty && r.IsCompleted ? null : take.ToArray();
                    stream.Input.AdvanceTo(take.End, r.Buffer.End);
                    if (datagram is { Length: 0 }) continue;
                }
                if (datagram is null) return;
                Touch();
                await socket.SendAsync(datagram, SocketFlags.None, stop.Token).ConfigureAwait(false);
                counters.AddToSocket(datagram.Length);
            }
        }

        async Task SocketToStream()
        {
            var buffer = ArrayPool<byte>.Shared.Rent(maxDatagram);
            try
            {
                while (true)
                {
                    int n;
                    try
                    {
                        n = await socket.ReceiveAsync(buffer.AsMemory(0, maxDatagram), SocketFlags.None, stop.Token).ConfigureAwait(false);
                    }
                    catch (SocketException ex) when (ex.SocketErrorCode is SocketError.ConnectionRefused or SocketError.ConnectionReset)
                    {
                        continue; // ICMP port unreachable from the endpoint: UDP carries on, as a direct socket would
                    }
                    Touch();
                    if (framed) Write(stream.Output, buffer.AsSpan(0, n));
                    else stream.Output.Write(buffer.AsSpan(0, n));
                    counters.AddToPipe(n);
                    var f = await stream.Output.FlushAsync(stop.Token).ConfigureAwait(false);
                    if (f.IsCompleted) return;
                }
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(buffer);
            }
        }

        async Task IdleWatch()
        {
            while (true)
            {
                var quiet = time.GetElapsedTime(Volatile.Read(ref last));
                if (quiet >= idle) return;
                await Task.Delay(idle - quiet, time, stop.Token).ConfigureAwait(false);
            }
        }

        var tasks = new[] { StreamToSocket(), SocketToStream(), IdleWatch() };
        var first = await Task.WhenAny(tasks).ConfigureAwait(false);
        stop.Cancel();
        try { await Task.WhenAll(tasks).ConfigureAwait(false); }
        catch (OperationCanceledException) { /* the others stopping */ }
        catch (Exception) when (first.IsCompletedSuccessfully) { /* a stop after a clean end */ }
        if (first.IsFaulted) await first.ConfigureAwait(false);
        await stream.Output.CompleteAsync().ConfigureAwait(false);
    }
}
