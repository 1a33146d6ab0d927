using System.Buffers;
using System.Collections.Concurrent;
using System.Net.WebSockets;
using System.Threading.Channels;
using Weft.Wire;
using Weft.Wire.Hub;

// Compiled into Weft.Cloud and (linked) into Weft.Edge: both ends of the hub link run the same loops.
namespace Weft.HubLink;

/// <summary>Bounds and timings of one hub WebSocket.</summary>
internal sealed record HubSocketOptions(int MaxMessageBytes, TimeSpan ReadTimeout, TimeSpan WriteTimeout, TimeSpan KeepaliveInterval, int QueueLength);

/// <summary>The outbound queue was full.</summary>
public sealed class HubQueueFullException(string what) : Exception($"the queue for {what} is full");

/// <summary>The link ended before the answer came.</summary>
public sealed class HubLinkClosedException(string what, string reason) : Exception($"the link of {what} closed: {reason}");

/// <summary>
/// One hub WebSocket, either end: a bounded outbound queue drained by one writer (each frame under a write
/// deadline), a reader under a read deadline (any frame renews it; messages over the size limit close with
/// 1009, malformed ones with 1002 and a <see cref="ProtocolViolationException"/>), a keepalive sender, and
/// requests waiting for the message whose parent is their id.
/// </summary>
internal sealed class HubSocket
{
    private readonly WebSocket _ws;
    private readonly HubSocketOptions _o;
    private readonly Channel<HubMessage> _out;
    private readonly ConcurrentDictionary<string, TaskCompletionSource<HubMessage>> _pending = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource _cts = new();
    private readonly Func<HubMessage> _keepalive;
    private readonly TimeProvider _time;
    private readonly string _what;
    private string _closeReason = "closed";

    public HubSocket(WebSocket ws, HubSocketOptions options, Func<HubMessage> keepalive, TimeProvider time, string what)
    {
        _ws = ws;
        _o = options;
        _keepalive = keepalive;
        _time = time;
        _what = what;
        _out = Channel.CreateBounded<HubMessage>(new BoundedChannelOptions(options.QueueLength) { SingleReader = true });
    }

    public int QueueDepth => _out.Reader.Count;

    public bool IsClosed => _cts.IsCancellationRequested;

    public string CloseReason => _closeReason;

    public long Received;

    public long Sent;

    public bool TrySend(HubMessage m) => !IsClosed && _out.Writer.TryWrite(m);

    public async Task<HubMessage> RequestAsync(HubMessage request, CancellationToken ct)
    {
        var tcs = new TaskCompletionSource<HubMessage>(TaskCreationOptions.RunContinuationsAsynchronously);
        _pending[request.Id] = tcs;
        try
        {
            if (IsClosed) throw new HubLinkClosedException(_what, _closeReason);
            if (!TrySend(request)) throw new HubQueueFullException(_what);
            return await tcs.Task.WaitAsync(ct).ConfigureAwait(false);
        }
        finally
        {
            _pending.TryRemove(request.Id, out _);
        }
    }

    public bool Complete(string parentId, HubMessage answer) => _pending.TryGetValue(parentId, out var t) && t.TrySetResult(answer);

    public void Close(string reason)
    {
        if (IsClosed) return;
        _closeReason = reason;
        try { _cts.Cancel(); } catch (ObjectDisposedException) { }
    }

    public async Task RunAsync(Func<HubMessage, Task> onMessage, Action<ProtocolViolationException> onViolation)
    {
        var tasks = new[] { ReadLoopAsync(onMessage, onViolation), WriteLoopAsync(), KeepaliveLoopAsync() };
        await Task.WhenAny(tasks).ConfigureAwait(false);
        Close(_closeReason);
        _out.Writer.TryComplete();
        try
        {
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(1));
            if (_ws.State == WebSocketState.Open)
                await _ws.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, Truncate(_closeReason), cts.Token).ConfigureAwait(false);
            // Let the peer read our close frame and answer it (bounded) before the socket goes.
            var sink = new byte[1024];
            while (_ws.State == WebSocketState.CloseSent && (await _ws.ReceiveAsync(sink, cts.Token).ConfigureAwait(false)).MessageType != WebSocketMessageType.Close) { }
        }
        catch (Exception ex) when (ex is WebSocketException or OperationCanceledException or IOException or ObjectDisposedException or InvalidOperationException) { }
        _ws.Abort();
        try { await Task.WhenAll(tasks).ConfigureAwait(false); } catch (Exception ex) when (ex is WebSocketException or OperationCanceledException or IOException or ObjectDisposedException) { }
        foreach (var t in _pending.Values) t.TrySetException(new HubLinkClosedException(_what, _closeReason));
    }

    private static string Truncate(string s) => s.Length > 100 ? s[..100] : s;

    /// <summary>Bytes each idle session holds for the next frame; longer frames get a buffer of their own while they last.</summary>
    private const int FirstChunk = 512;

    private async Task ReadLoopAsync(Func<HubMessage, Task> onMessage, Action<ProtocolViolationException> onViolation)
    {
        // An idle session waits with only a small buffer (tens of thousands of sessions per replica).
        var first = new byte[FirstChunk];
        var limits = HubLimits.Default with { MaxMessageBytes = _o.MaxMessageBytes };
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(_cts.Token);
        try
        {
            while (true)
            {
                deadline.CancelAfter(_o.ReadTimeout);
                var r = await _ws.ReceiveAsync(first.AsMemory(), deadline.Token).ConfigureAwait(false);
                ReadOnlyMemory<byte> frame = first.AsMemory(0, r.Count);
                if (!r.EndOfMessage && r.MessageType != WebSocketMessageType.Close)
                {
                    var big = new ArrayBufferWriter<byte>(FirstChunk * 8);
                    big.Write(frame.Span);
                    do
                    {
                        if (big.WrittenCount > _o.MaxMessageBytes)
                        {
                            _closeReason = $"message over {_o.MaxMessageBytes} bytes";
                            onViolation(new ProtocolViolationException("hub", _closeReason));
                            await _ws.CloseOutputAsync(WebSocketCloseStatus.MessageTooBig, "message too big", CancellationToken.None).ConfigureAwait(false);
                            return;
                        }
                        r = await _ws.ReceiveAsync(big.GetMemory(Math.Min(64 * 1024, _o.MaxMessageBytes - big.WrittenCount + 1)), deadline.Token).ConfigureAwait(false);
                        big.Advance(r.Count);
                    } while (!r.EndOfMessage && r.MessageType != WebSocketMessageType.Close);
                    frame = big.WrittenMemory;
                }
                if (r.MessageType == WebSocketMessageType.Close)
                {
                    _closeReason = "closed by the peer" + (string.IsNullOrEmpty(_ws.CloseStatusDescription) ? "" : ": " + _ws.CloseStatusDescription);
                    return;
                }
                HubMessage m;
                try
                {
                    m = HubMessage.ReadFrame(frame, limits);
                }
                catch (ProtocolViolationException ex)
                {
                    _closeReason = "protocol violation: " + ex.Message;
                    onViolation(ex);
                    await _ws.CloseOutputAsync(WebSocketCloseStatus.ProtocolError, Truncate(ex.Detail), CancellationToken.None).ConfigureAwait(false);
                    return;
                }
                Interlocked.Increment(ref Received);
                if (!string.IsNullOrEmpty(m.ParentId) && Complete(m.ParentId, m)) continue;
                await onMessage(m).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (!_cts.IsCancellationRequested)
        {
            _closeReason = $"nothing received for {_o.ReadTimeout.TotalSeconds:0.###} s";
        }
        catch (Exception ex) when (ex is WebSocketException or IOException or OperationCanceledException or ObjectDisposedException)
        {
            if (!_cts.IsCancellationRequested) _closeReason = "connection lost: " + ex.Message;
        }
    }

    private async Task WriteLoopAsync()
    {
        try
        {
            await foreach (var m in _out.Reader.ReadAllAsync(_cts.Token).ConfigureAwait(false))
            {
                // A buffer per message rather than per session: idle sessions hold none.
                var bytes = m.ToJson();
                using var cts = CancellationTokenSource.CreateLinkedTokenSource(_cts.Token);
                cts.CancelAfter(_o.WriteTimeout);
                try
                {
                    await _ws.SendAsync(bytes, WebSocketMessageType.Text, true, cts.Token).ConfigureAwait(false);
                    Interlocked.Increment(ref Sent);
                }
                catch (OperationCanceledException) when (!_cts.IsCancellationRequested)
                {
                    _closeReason = $"a frame was not written within {_o.WriteTimeout.TotalSeconds:0.###} s";
                    return;
                }
            }
        }
        catch (Exception ex) when (ex is WebSocketException or IOException or OperationCanceledException or ObjectDisposedException)
        {
            if (!_cts.IsCancellationRequested) _closeReason = "connection lost: " + ex.Message;
        }
    }

    private async Task KeepaliveLoopAsync()
    {
        try
        {
            while (true)
            {
                await Task.Delay(_o.KeepaliveInterval, _time, _cts.Token).ConfigureAwait(false);
                TrySend(_keepalive());
            }
        }
        catch (OperationCanceledException) { }
    }
}
