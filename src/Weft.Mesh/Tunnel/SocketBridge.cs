using System.IO.Pipelines;
using System.Net.Sockets;

namespace Weft.Mesh.Tunnel;

/// <summary>Byte counts of one bridged connection, updated as the bytes move.</summary>
public sealed class BridgeCounters
{
    private long _toSocket, _toPipe;
    private volatile bool _relayed;

    /// <summary>Whether the bytes counted from now on cross a relay (a resumable connection changes it when it moves).</summary>
    public bool Relayed { get => _relayed; set => _relayed = value; }

    /// <summary>Bytes written to the socket (from the tunnel).</summary>
    public long ToSocket => Interlocked.Read(ref _toSocket);

    /// <summary>Bytes read from the socket (into the tunnel).</summary>
    public long ToPipe => Interlocked.Read(ref _toPipe);

    internal Action<long>? OnToSocket;
    internal Action<long>? OnToPipe;

    internal void AddToSocket(long n)
    {
        Interlocked.Add(ref _toSocket, n);
        OnToSocket?.Invoke(n);
    }

    internal void AddToPipe(long n)
    {
        Interlocked.Add(ref _toPipe, n);
        OnToPipe?.Invoke(n);
    }
}

/// <summary>
/// Copies a TCP socket to a pipe pair (a tunnel stream) and back, propagating half-close both ways: the socket's
/// EOF completes the pipe's output (a FIN on the stream), the pipe's end shuts the socket's send side. Ends when both
/// directions ended; an error in either aborts both (the socket is reset, the caller resets the stream).
/// </summary>
public static class SocketBridge
{
    /// <summary>Largest single read from the socket.</summary>
    public const int ReadChunk = 64 * 1024;

    /// <summary>Runs until both directions end. Throws what broke it (the caller resets the stream and closes the socket).</summary>
    public static async Task RunAsync(Socket socket, IDuplexPipe pipe, BridgeCounters counters, CancellationToken ct)
    {
        using var abort = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var up = SocketToPipeAsync(socket, pipe.Output, counters, abort.Token);
        var down = PipeToSocketAsync(pipe.Input, socket, counters, abort.Token);
        var first = await Task.WhenAny(up, down).ConfigureAwait(false);
        if (first.IsFaulted || first.IsCanceled)
        {
            abort.Cancel();
            Abort(socket);
            try { await Task.WhenAll(up, down).ConfigureAwait(false); } catch (Exception) { /* reported below */ }
            await first.ConfigureAwait(false); // rethrows
        }
        var second = first == up ? down : up;
        try
        {
            await second.ConfigureAwait(false);
        }
        catch
        {
            Abort(socket);
            throw;
        }
    }

    /// <summary>Resets the socket (RST, not FIN): the application must see the tunnel broke, not a clean end.</summary>
    public static void Abort(Socket socket)
    {
        try { socket.LingerState = new LingerOption(true, 0); } catch (Exception) { /* already closed */ }
        try { socket.Close(); } catch (Exception) { /* already closed */ }
    }

    private static async Task SocketToPipeAsync(Socket socket, PipeWriter output, BridgeCounters counters, CancellationToken ct)
    {
        while (true)
        {
            var memory = output.GetMemory(ReadChunk);
            int n;
            try
            {
                n = await socket.ReceiveAsync(memory, SocketFlags.None, ct).ConfigureAwait(false);
            }
            catch (SocketException ex) when (ex.SocketErrorCode == SocketError.Shutdown)
            {
                n = 0;
            }
            if (n == 0)
            {
                await output.CompleteAsync().ConfigureAwait(false); // FIN on the stream
                return;
            }
            output.Advance(n);
            counters.AddToPipe(n);
            var flush = await output.FlushAsync(ct).ConfigureAwait(false);
            if (flush.IsCompleted) throw new IOException("the tunnel stream stopped taking data");
        }
    }

    private static async Task PipeToSocketAsync(PipeReader input, Socket socket, BridgeCounters counters, CancellationToken ct)
    {
        while (true)
        {
            var result = await input.ReadAsync(ct).ConfigureAwait(false);
            var buffer = result.Buffer;
            var length = buffer.Length;
            try
            {
                foreach (var segment in buffer)
                {
                    var sent = 0;
                    while (sent < segment.Length)
                        sent += await socket.SendAsync(segment[sent..], SocketFlags.None, ct).ConfigureAwait(false);
                }
            }
            finally
            {
                input.AdvanceTo(buffer.End);
            }
            if (length > 0) counters.AddToSocket(length);
            if (result.IsCompleted)
            {
                try { socket.Shutdown(SocketShutdown.Send); } catch (SocketException) { /* the socket is gone; the other direction reports it */ }
                return;
            }
            if (result.IsCanceled) throw new OperationCanceledException(ct);
        }
    }
}
