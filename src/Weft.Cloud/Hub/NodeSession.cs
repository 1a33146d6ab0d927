using System.Buffers;
using System.Collections.Concurrent;
using System.Net.WebSockets;
using System.Threading.Channels;
using Weft.Cloud.Directory;
using Weft.Wire;
using Weft.Wire.Hub;

namespace Weft.Cloud.Hub;

/// <summary>The session's outbound queue was full.</summary>
public sealed class SessionBusyException(string node) : Exception($"the queue for node {node} is full");

/// <summary>The session ended before the answer came.</summary>
public sealed class SessionClosedException(string node, string reason) : Exception($"the session of node {node} closed: {reason}");

/// <summary>
/// One edge node's WebSocket: a bounded outbound queue drained by one writer (each frame with a write
/// deadline), a reader with a read deadline (any frame, keepalives included, renews it), a keepalive sender,
/// and requests waiting for the edge's answer by message id.
/// </summary>
public sealed class NodeSession
{
    private readonly WebSocket _ws;
    private readonly Channel<HubMessage> _out;
    private readonly ConcurrentDictionary<string, TaskCompletionSource<HubMessage>> _pending = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource _cts = new();
    private readonly Config.HubOptions _options;
    private readonly TimeProvider _time;
    private string _closeReason = "closed";

    public NodeSession(string node, string remote, WebSocket ws, Config.HubOptions options, TimeProvider time)
    {
        Node = node;
        Remote = remote;
        _ws = ws;
        _options = options;
        _time = time;
        Since = time.GetUtcNow();
        Claim = new Claim(node, 0);
        _out = Channel.CreateBounded<HubMessage>(new BoundedChannelOptions(options.SessionQueueLength) { SingleReader = true });
    }

    public string Node { get; }

    public string Remote { get; }

    public DateTimeOffset Since { get; }

    public Claim Claim { get; }

    public int QueueDepth => _out.Reader.Count;

    public bool IsClosed => _cts.IsCancellationRequested;

    public string CloseReason => _closeReason;

    /// <summary>Queues a message; false when the queue is full or the session is closed.</summary>
    public bool TrySend(HubMessage m) => !IsClosed && _out.Writer.TryWrite(m);

    /// <summary>Sends a request and waits for the message whose parent is its id.</summary>
    public async Task<HubMessage> RequestAsync(HubMessage request, CancellationToken ct)
    {
        var tcs = new TaskCompletionSource<HubMessage>(TaskCreationOptions.RunContinuationsAsynchronously);
        _pending[request.Id] = tcs;
        try
        {
            if (IsClosed) throw new SessionClosedException(Node, _closeReason);
            if (!TrySend(request)) throw new SessionBusyException(Node);
            return await tcs.Task.WaitAsync(ct).ConfigureAwait(false);
        }
        finally
        {
            _pending.TryRemove(request.Id, out _);
        }
    }

    /// <summary>Completes a waiting request; false when nobody waits for <paramref name="parentId"/>.</summary>
    public bool Complete(string parentId, HubMessage answer) => _pending.TryGetValue(parentId, out var t) && t.TrySetResult(answer);

    public void Close(string reason)
    {
        if (IsClosed) return;
        _closeReason = reason;
        _cts.Cancel();
    }

    /// <summary>Runs until the socket fails, a deadline passes, the peer closes, or <see cref="Close"/>.</summary>
    public async Task RunAsync(Func<NodeSession, HubMessage, Task> onMessage, Action<ProtocolViolationException> onViolation)
    {
        var tasks = new[] { ReadLoopAsync(onMessage, onViolation), WriteLoopAsync(), KeepaliveLoopAsync() };
        await Task.WhenAny(tasks).ConfigureAwait(false);
        Close(_closeReason);
        _out.Writer.TryComplete();
        try
        {
            if (_ws.State == WebSocketState.Open)
            {
                using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(1));
                await _ws.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, Truncate(_closeReason), cts.Token).ConfigureAwait(false);
            }
        }
        catch (Exception ex) when (ex is WebSocketException or OperationCanceledException or IOException or ObjectDisposedException) { }
        _ws.Abort();
        try { await Task.WhenAll(tasks).ConfigureAwait(false); } catch (Exception ex) when (ex is WebSocketException or OperationCanceledException or IOException or ObjectDisposedException) { }
        foreach (var t in _pending.Values) t.TrySetException(new SessionClosedException(Node, _closeReason));
        _cts.Dispose();
    }

    private static string Truncate(string s) => s.Length > 100 ? s[..100] : s;

    private async Task ReadLoopAsync(Func<NodeSession, HubMessage, Task> onMessage, Action<ProtocolViolationException> onViolation)
    {
        var buffer = new ArrayBufferWriter<byte>(4096);
        var limits = HubLimits.Default with { MaxMessageBytes = _options.MaxMessageBytes };
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(_cts.Token);
        try
        {
            while (true)
            {
                buffer.ResetWrittenCount();
                ValueWebSocketReceiveResult r;
                deadline.CancelAfter(_options.ReadTimeout);
                do
                {
                    if (buffer.WrittenCount >= _options.MaxMessageBytes)
                    {
                        _closeReason = $"message over {_options.MaxMessageBytes} bytes";
                        await _ws.CloseOutputAsync(WebSocketCloseStatus.MessageTooBig, "message too big", CancellationToken.None).ConfigureAwait(false);
                        return;
                    }
                    r = await _ws.ReceiveAsync(buffer.GetMemory(Math.Min(64 * 1024, _options.MaxMessageBytes - buffer.WrittenCount + 1)), deadline.Token).ConfigureAwait(false);
                    buffer.Advance(r.Count);
                } while (!r.EndOfMessage && r.MessageType != WebSocketMessageType.Close);
                if (r.MessageType == WebSocketMessageType.Close)
                {
                    _closeReason = "closed by the edge";
                    return;
                }
                HubMessage m;
                try
                {
                    m = HubMessage.ReadFrame(buffer.WrittenMemory, limits);
                }
                catch (ProtocolViolationException ex)
                {
                    _closeReason = "protocol violation: " + ex.Message;
                    onViolation(ex);
                    await _ws.CloseOutputAsync(WebSocketCloseStatus.ProtocolError, Truncate(ex.Detail), CancellationToken.None).ConfigureAwait(false);
                    return;
                }
                await onMessage(this, m).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (!_cts.IsCancellationRequested)
        {
            _closeReason = $"nothing received for {_options.ReadTimeout.TotalSeconds:0.###} s";
        }
        catch (Exception ex) when (ex is WebSocketException or IOException or OperationCanceledException or ObjectDisposedException)
        {
            if (!_cts.IsCancellationRequested) _closeReason = "connection lost: " + ex.Message;
        }
    }

    private async Task WriteLoopAsync()
    {
        var buffer = new ArrayBufferWriter<byte>(4096);
        try
        {
            await foreach (var m in _out.Reader.ReadAllAsync(_cts.Token).ConfigureAwait(false))
            {
                buffer.ResetWrittenCount();
                m.Write(buffer);
                using var cts = CancellationTokenSource.CreateLinkedTokenSource(_cts.Token);
                cts.CancelAfter(_options.WriteTimeout);
                try
                {
                    await _ws.SendAsync(buffer.WrittenMemory, WebSocketMessageType.Text, true, cts.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (!_cts.IsCancellationRequested)
                {
                    _closeReason = $"a frame was not written within {_options.WriteTimeout.TotalSeconds:0.###} s";
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
                await Task.Delay(_options.KeepaliveInterval, _time, _cts.Token).ConfigureAwait(false);
                TrySend(new HubMessage
                {
                    Id = Guid.NewGuid().ToString(), Timestamp = _time.GetUtcNow().ToUnixTimeMilliseconds(),
                    Source = HubNames.SourceCloudHub, Group = HubNames.GroupResource, Operation = HubNames.OpKeepalive, Resource = "node",
                });
            }
        }
        catch (OperationCanceledException) { }
    }
}
