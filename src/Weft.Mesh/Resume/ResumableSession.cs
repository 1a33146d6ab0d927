using System.Buffers;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Weft.P2P.Host;
using Weft.P2P.Yamux;
using Weft.Wire.Identity;
using Weft.Wire.Resume;
using ProtocolViolationException = Weft.Wire.ProtocolViolationException;

namespace Weft.Mesh.Resume;

/// <summary>
/// One proxied TCP connection carried by the resumable tunnel, on either end. Both ends number the bytes they send,
/// keep what is not yet acknowledged (bounded, <see cref="ResumeOptions.ResendBufferBytes"/>), acknowledge what
/// they receive, and when the stream under them dies the client end attaches a new stream (any path to the same peer)
/// and both resend from the other's acknowledged offset. Received data below the delivered offset is dropped, so
/// nothing is duplicated, lost or reordered; anything that cannot be resumed resets the local socket (RST).
/// </summary>
internal sealed class ResumableSession
{
    /// <summary>Bytes read from the local socket at a time (one chunk of the resend buffer; sent as DATA frames of at most <see cref="ResumeFrame.MaxPayload"/>).</summary>
    public const int ChunkSize = 256 * 1024;

    /// <summary>Most inbox chunks written to the local socket in one gathered send.</summary>
    private const int MaxChunksPerSend = 16;

    private sealed class Chunk(long offset, byte[] buffer, int length)
    {
        public long Offset { get; } = offset;
        public byte[] Buffer { get; } = buffer;
        public int Length { get; } = length;
        public long End => Offset + Length;
    }

    private sealed class Attachment(YamuxStream stream, Connection connection, int generation, long sendPos)
    {
        public YamuxStream Stream { get; } = stream;
        public Connection Connection { get; } = connection;
        public int Generation { get; } = generation;
        public long SendPos = sendPos;
        public bool FinSent;
        public long AckedTo = -1;
        public bool AckedFin;
        public long LastAckAt;
        public CancellationTokenSource Cts { get; } = new();
        public Task Loops = Task.CompletedTask;
    }

    private readonly ResumeService _owner;
    private readonly Socket _socket;
    private readonly ILogger _log;
    private readonly object _gate = new();
    private readonly List<Chunk> _chunks = [];
    private readonly List<Chunk> _inbox = [];              // received, not yet written to the socket
    private readonly SemaphoreSlim _inboxSignal = new(0, 1);
    private readonly TaskCompletionSource _completed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly CancellationTokenSource _stop = new();
    private SemaphoreSlim _wake = new(0, 1);
    private TaskCompletionSource _room = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private long _bufferStart, _sent, _finOffset = -1;
    private long _queued;            // bytes of the other side's stream received (in the inbox or written to the socket)
    private long _received;          // of those, written to the socket: what is acknowledged
    private long _remoteFinAt = -1;  // where the other side's FIN came (once it did)
    private bool _localFin, _finAcked, _remoteFin, _ended;
    private bool _socketBusy;        // a send to the local socket is under way (the delivery loop's, or a frame's direct write)
    private Attachment? _current;
    private readonly List<Attachment> _attachments = [];
    private int _generation;
    private long _detachedAt;
    private Task _reattach = Task.CompletedTask;

    public ResumableSession(ResumeService owner, byte[] id, PeerId peer, string node, System.Net.IPEndPoint target, bool isClient, Socket socket, ILogger log)
    {
        _owner = owner;
        Id = id;
        Peer = peer;
        Node = node;
        Target = target;
        IsClient = isClient;
        _socket = socket;
        _log = log;
        // Synchronous sends return at once with what the socket took (DATA frames are written straight to it when
        // nothing waits before them); the asynchronous reads and sends are not affected.
        _socket.Blocking = false;
    }

    public byte[] Id { get; }
    public string IdText => Convert.ToHexStringLower(Id);
    public PeerId Peer { get; }
    public string Node { get; }
    public System.Net.IPEndPoint Target { get; }
    public bool IsClient { get; }

    /// <summary>Completes when the connection is over: cleanly (both directions finished) or reset (faulted with the reason).</summary>
    public Task Completion => _completed.Task;

    /// <summary>True while a stream carries the session.</summary>
    public bool Attached { get { lock (_gate) return _current is not null; } }

    /// <summary>The connection the session currently runs on.</summary>
    public Connection? Connection { get { lock (_gate) return _current?.Connection; } }

    /// <summary>Times the session moved to another stream (after a path died, or to a better path).</summary>
    public int Reattachments { get; private set; }

    public long Buffered { get { lock (_gate) return _sent - _bufferStart; } }

    /// <summary>Where the bytes read from (ToPipe) and written to (ToSocket) the local socket are counted, if anywhere.</summary>
    public Tunnel.BridgeCounters? Counters { get; init; }

    /// <summary>Bytes of the other side's stream this side holds (written to the socket or waiting to be): where it resumes.</summary>
    public long Received { get { lock (_gate) return _queued; } }

    /// <summary>
    /// Most bytes waiting in the inbox. The other side never has more than its resend buffer unacknowledged and we
    /// acknowledge only what reached the socket, so a well-behaved peer stays under its resend buffer; twice that is
    /// a violation.
    /// </summary>
    private long MaxInbox => 2L * _owner.Options.ResendBufferBytes + ResumeFrame.MaxPayload;

    /// <summary>Starts reading the local socket and writing to it. Call once, after the first attachment.</summary>
    public void Start()
    {
        _ = Task.Run(SocketReaderAsync);
        _ = Task.Run(DeliverAsync);
    }

    // ------------------------------------------------------------------ attachments

    /// <summary>
    /// Carries the session on <paramref name="stream"/> from now on, sending from <paramref name="peerReceived"/>.
    /// False (and the session reset) when the other side lacks bytes no longer buffered, or claims more than was sent.
    /// </summary>
    public bool Attach(YamuxStream stream, Connection connection, long peerReceived)
    {
        Attachment att;
        string? impossible = null;
        lock (_gate)
        {
            if (_ended) return false;
            if (peerReceived < _bufferStart || peerReceived > _sent)
                impossible = $"cannot resume: the other side has {peerReceived} bytes, this side still holds {_bufferStart}..{_sent}";
        }
        if (impossible is not null)
        {
            Reset(impossible, sendReset: false);
            return false;
        }
        lock (_gate)
        {
            if (_ended) return false;
            if (_current is not null) throw new InvalidOperationException("attach while attached");
            att = new Attachment(stream, connection, ++_generation, peerReceived);
            _current = att;
            if (Counters is { } counters) counters.Relayed = connection.IsRelayed;
            _attachments.RemoveAll(a => a.Loops.IsCompleted);
            _attachments.Add(att);
            if (_detachedAt != 0)
            {
                Reattachments++;
                _owner.Metrics.RecordStall(_owner.Time.GetElapsedTime(_detachedAt));
                _detachedAt = 0;
            }
        }
        // The stream is disposed (its pooled buffers returned) only once both loops are done with it: the reader may
        // still be sending a slice of its input to the socket after the stream was reset.
        att.Loops = Task.WhenAll(Task.Run(() => WriterAsync(att)), Task.Run(() => ReaderAsync(att)))
            .ContinueWith(_ => att.Stream.DisposeAsync().AsTask(), TaskScheduler.Default).Unwrap();
        Wake();
        return true;
    }

    /// <summary>Completes when the loops of the attachment on <paramref name="stream"/> (if any) are done with it.</summary>
    public Task Released(YamuxStream stream)
    {
        lock (_gate)
            return _attachments.FirstOrDefault(a => a.Stream == stream)?.Loops ?? Task.CompletedTask;
    }

    /// <summary>
    /// Stops using the current stream (its loops end, the stream is reset) and returns what was received so far, for
    /// the hello/welcome of the next stream. Waits until the old loops are gone so that number is final.
    /// </summary>
    public async Task<long> DetachForMoveAsync()
    {
        Attachment? old;
        lock (_gate)
        {
            old = _current;
            _current = null;
            if (old is not null && _detachedAt == 0) _detachedAt = _owner.Time.GetTimestamp();
        }
        if (old is not null)
        {
            await old.Cts.CancelAsync().ConfigureAwait(false);
            old.Stream.Reset();
            try { await old.Loops.WaitAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(false); } catch (Exception) { /* gone */ }
        }
        lock (_gate) return _queued;
    }

    /// <summary>The stream of <paramref name="att"/> failed or ended early: let go of it and wait for (or start) a new one.</summary>
    private void Lost(Attachment att, string why)
    {
        lock (_gate)
        {
            if (_current != att || _ended) return;
            _current = null;
            _detachedAt = _owner.Time.GetTimestamp();
        }
        att.Cts.Cancel();
        att.Stream.Reset();
        Log.PathLost(_log, IdText, Node, why);
        _owner.Metrics.PathLosses.Add(1);
        if (IsClient) _reattach = Task.Run(ReattachAsync);
        else _ = Task.Run(GraceAsync);
    }

    /// <summary>Server side: no resume within the grace period resets the connection.</summary>
    private async Task GraceAsync()
    {
        try { await Task.Delay(_owner.Options.Grace, _owner.Time, _stop.Token).ConfigureAwait(false); }
        catch (OperationCanceledException) { return; }
        lock (_gate) if (_current is not null || _ended) return;
        Reset($"no path to resume on within {_owner.Options.Grace.TotalSeconds:0.#} s", sendReset: false);
    }

    /// <summary>Client side: attach a new stream to the same peer (any path) until it works or the grace period ends.</summary>
    private async Task ReattachAsync()
    {
        var deadline = _owner.Time.GetTimestamp() + (long)(_owner.Options.Grace.TotalSeconds * _owner.Time.TimestampFrequency);
        var delay = _owner.Options.MinReattachDelay;
        string last = "no attempt";
        while (_owner.Time.GetTimestamp() < deadline && !_stop.IsCancellationRequested)
        {
            lock (_gate) if (_ended || _current is not null) return;
            var outcome = await _owner.TryResumeAsync(this, null, _stop.Token).ConfigureAwait(false);
            if (outcome is null) return; // attached, or reset for good
            last = outcome;
            try { await Task.Delay(delay, _owner.Time, _stop.Token).ConfigureAwait(false); }
            catch (OperationCanceledException) { return; }
            delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, _owner.Options.MaxReattachDelay.Ticks));
        }
        Reset($"no path to resume on within {_owner.Options.Grace.TotalSeconds:0.#} s (last: {last})", sendReset: false);
    }

    // ------------------------------------------------------------------ socket -> buffer

    private async Task SocketReaderAsync()
    {
        var ct = _stop.Token;
        try
        {
            while (true)
            {
                // Backpressure: the resend buffer (this connection and the peer's total) bounds what is read.
                while (true)
                {
                    Task room;
                    lock (_gate)
                    {
                        if (_ended) return;
                        if (_sent - _bufferStart + ChunkSize <= _owner.Options.ResendBufferBytes && _owner.HasPeerRoom(Peer, ChunkSize)) break;
                        room = _room.Task;
                    }
                    await Task.WhenAny(room, _owner.PeerRoomChanged(Peer), Task.Delay(Timeout.Infinite, ct)).ConfigureAwait(false);
                    ct.ThrowIfCancellationRequested();
                }
                var buffer = ArrayPool<byte>.Shared.Rent(ChunkSize);
                int n;
                try
                {
                    n = await _socket.ReceiveAsync(buffer.AsMemory(0, ChunkSize), SocketFlags.None, ct).ConfigureAwait(false);
                }
                catch
                {
                    ArrayPool<byte>.Shared.Return(buffer);
                    throw;
                }
                if (n > 0 && n < ChunkSize / 2)
                {
                    // A short read keeps a right-sized copy, so the memory held stays under twice the bytes buffered
                    // (an app writing 64 bytes at a time must not pin a ChunkSize array per write).
                    var small = ArrayPool<byte>.Shared.Rent(n);
                    buffer.AsSpan(0, n).CopyTo(small);
                    ArrayPool<byte>.Shared.Return(buffer);
                    buffer = small;
                }
                if (n == 0)
                {
                    ArrayPool<byte>.Shared.Return(buffer);
                    lock (_gate)
                    {
                        _localFin = true;
                        _finOffset = _sent;
                    }
                    Wake();
                    return;
                }
                lock (_gate)
                {
                    if (_ended)
                    {
                        ArrayPool<byte>.Shared.Return(buffer);
                        return;
                    }
                    _chunks.Add(new Chunk(_sent, buffer, n));
                    _sent += n;
                }
                _owner.AddPeerBytes(Peer, n);
                Counters?.AddToPipe(n);
                Wake();
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException or IOException)
        {
            Reset($"the local connection failed: {ex.Message}", sendReset: true);
        }
    }

    // ------------------------------------------------------------------ buffer -> stream

    private void Wake()
    {
        try { if (_wake.CurrentCount == 0) _wake.Release(); } catch (SemaphoreFullException) { } catch (ObjectDisposedException) { }
    }

    private async Task WriterAsync(Attachment att)
    {
        var output = att.Stream.Output;
        var ct = att.Cts.Token;
        var options = _owner.Options;
        try
        {
            while (!ct.IsCancellationRequested)
            {
                var wrote = false;
                lock (_gate)
                {
                    if (_current != att) return;
                    // DATA from the resend buffer, up to 256 KiB per flush (what the peer acknowledged it has).
                    if (att.SendPos < _bufferStart) att.SendPos = _bufferStart;
                    var budget = 4 * ChunkSize;
                    while (att.SendPos < _sent && budget > 0)
                    {
                        var chunk = ChunkAt(att.SendPos);
                        var from = (int)(att.SendPos - chunk.Offset);
                        var len = Math.Min(chunk.Length - from, ResumeFrame.MaxPayload);
                        ResumeFrame.WriteDataHeader(output, (ulong)att.SendPos, len);
                        output.Write(chunk.Buffer.AsSpan(from, len));
                        att.SendPos += len;
                        budget -= len;
                        wrote = true;
                    }
                    if (_localFin && att.SendPos == _finOffset && !att.FinSent)
                    {
                        ResumeFrame.WriteFin(output, (ulong)_finOffset);
                        att.FinSent = true;
                        wrote = true;
                    }
                    // ACK what arrived: after AckEveryBytes, after AckInterval, or when the FIN arrived.
                    var now = _owner.Time.GetTimestamp();
                    if (_received != att.AckedTo || _remoteFin != att.AckedFin)
                    {
                        var due = _received - att.AckedTo >= options.AckEveryBytes || _remoteFin != att.AckedFin
                            || _owner.Time.GetElapsedTime(att.LastAckAt) >= options.AckInterval || att.AckedTo < 0;
                        if (due)
                        {
                            ResumeFrame.WriteAck(output, (ulong)_received, _remoteFin);
                            att.AckedTo = _received;
                            att.AckedFin = _remoteFin;
                            att.LastAckAt = now;
                            wrote = true;
                        }
                    }
                }
                if (wrote)
                {
                    var flush = await output.FlushAsync(ct).ConfigureAwait(false);
                    if (flush.IsCompleted) throw new IOException("the stream stopped taking data");
                    CheckDone(att);
                    continue;
                }
                bool ackPending;
                lock (_gate) ackPending = _received != att.AckedTo;
                await _wake.WaitAsync(ackPending ? options.AckInterval : Timeout.InfiniteTimeSpan, ct).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
        }
        catch (Exception ex)
        {
            Lost(att, ex.Message);
        }
    }

    private Chunk ChunkAt(long offset)
    {
        // Chunks are in order and contiguous from _bufferStart; a binary search keeps resends cheap.
        int lo = 0, hi = _chunks.Count - 1;
        while (lo <= hi)
        {
            var mid = (lo + hi) / 2;
            var c = _chunks[mid];
            if (offset < c.Offset) hi = mid - 1;
            else if (offset >= c.End) lo = mid + 1;
            else return c;
        }
        throw new InvalidOperationException($"offset {offset} is not buffered ({_bufferStart}..{_sent})");
    }

    // ------------------------------------------------------------------ stream -> socket

    private async Task ReaderAsync(Attachment att)
    {
        var input = att.Stream.Input;
        var ct = att.Cts.Token;
        try
        {
            while (true)
            {
                var result = await input.ReadAsync(ct).ConfigureAwait(false);
                var buffer = result.Buffer;
                try
                {
                    while (ResumeFrame.TryRead(ref buffer, out var frame))
                    {
                        if (!await HandleFrameAsync(att, frame, ct).ConfigureAwait(false)) return;
                    }
                }
                finally
                {
                    input.AdvanceTo(buffer.Start, buffer.End);
                }
                if (result.IsCompleted)
                {
                    lock (_gate) if (_ended) return;
                    Lost(att, "the stream ended");
                    return;
                }
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
        }
        catch (ProtocolViolationException ex)
        {
            Reset($"protocol violation: {ex.Detail}", sendReset: true);
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException && !ct.IsCancellationRequested)
        {
            Reset($"the local connection failed: {ex.Message}", sendReset: true);
        }
        catch (Exception ex)
        {
            Lost(att, ex.Message);
        }
    }

    /// <summary>False when the session is over.</summary>
    private async Task<bool> HandleFrameAsync(Attachment att, ResumeFrame frame, CancellationToken ct)
    {
        switch (frame.Type)
        {
            case ResumeFrameType.Data:
            {
                // Into the inbox, never straight to the socket: a socket that does not take data must not hold up
                // the ACKs behind this frame (they are what frees the other direction).
                ReadOnlySequence<byte> payload;
                long at;
                lock (_gate)
                {
                    if (_ended) return false;
                    var start = (long)frame.Offset;
                    if (start > _queued) throw new ProtocolViolationException("tunnel-resume", $"DATA at {start} leaves a gap after {_queued}");
                    payload = frame.Payload;
                    var skip = _queued - start;
                    if (skip >= payload.Length) return true; // held already (sent again after a move): drop it
                    payload = payload.Slice(skip);
                    var length = (int)payload.Length;
                    if (_queued - _received + length > MaxInbox)
                        throw new ProtocolViolationException("tunnel-resume", $"the other side sent {_queued - _received + length} bytes past what was acknowledged (at most {MaxInbox})");
                    at = _queued;
                    _queued += length;
                    if (_inbox.Count > 0 || _socketBusy)
                    {
                        // Behind other data: queue a copy for the delivery loop.
                        _inbox.Add(CopyToChunk(at, payload));
                        payload = default;
                    }
                    else
                    {
                        _socketBusy = true;
                    }
                }
                if (payload.IsEmpty)
                {
                    Signal(_inboxSignal);
                    return true;
                }
                // Nothing waits before it: straight to the socket, as much as it takes now without blocking; the rest
                // (a full socket) goes to the inbox, so the frames behind this one (ACKs among them) are not held up.
                var written = 0;
                bool queued, wake;
                try
                {
                    written = SendNow(payload);
                }
                finally
                {
                    lock (_gate)
                    {
                        _socketBusy = false;
                        if (written < payload.Length && !_ended) _inbox.Add(CopyToChunk(at + written, payload.Slice(written)));
                        queued = _inbox.Count > 0;
                        wake = AckWanted(written);
                        _received += written;
                    }
                }
                if (written > 0) Counters?.AddToSocket(written);
                if (queued) Signal(_inboxSignal);
                if (wake) Wake();
                return true;
            }
            case ResumeFrameType.Ack:
            {
                var released = new List<Chunk>();
                lock (_gate)
                {
                    var to = (long)frame.Offset;
                    if (to > _sent) throw new ProtocolViolationException("tunnel-resume", $"ACK of {to} beyond the {_sent} bytes sent");
                    while (_chunks.Count > 0 && _chunks[0].End <= to)
                    {
                        released.Add(_chunks[0]);
                        _chunks.RemoveAt(0);
                    }
                    if (to > _bufferStart) _bufferStart = to;
                    if (frame.Fin && _localFin && to == _finOffset) _finAcked = true;
                    var room = _room;
                    _room = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                    room.TrySetResult();
                }
                long freed = 0;
                foreach (var c in released)
                {
                    freed += c.Length;
                    ArrayPool<byte>.Shared.Return(c.Buffer);
                }
                if (freed > 0) _owner.AddPeerBytes(Peer, -freed);
                CheckDone(att);
                return !IsEnded;
            }
            case ResumeFrameType.Fin:
            {
                lock (_gate)
                {
                    if ((long)frame.Offset != _queued) throw new ProtocolViolationException("tunnel-resume", $"FIN at {frame.Offset} but {_queued} bytes arrived");
                    _remoteFinAt = _queued;
                }
                Signal(_inboxSignal);
                return true;
            }
            case ResumeFrameType.Reset:
                Reset($"the other side reset the connection: {frame.Reason}", sendReset: false);
                return false;
            default:
                return true;
        }
    }

    private bool IsEnded { get { lock (_gate) return _ended; } }

    private static Chunk CopyToChunk(long offset, in ReadOnlySequence<byte> data)
    {
        var length = (int)data.Length;
        var buffer = ArrayPool<byte>.Shared.Rent(length);
        data.CopyTo(buffer);
        return new Chunk(offset, buffer, length);
    }

    /// <summary>Writes what the (non-blocking) socket takes now; returns how much that was.</summary>
    private int SendNow(in ReadOnlySequence<byte> data)
    {
        var written = 0;
        foreach (var segment in data)
        {
            var span = segment.Span;
            while (span.Length > 0)
            {
                var n = _socket.Send(span, SocketFlags.None, out var error);
                if (error == SocketError.WouldBlock) return written;
                if (error != SocketError.Success) throw new SocketException((int)error);
                written += n;
                span = span[n..];
            }
        }
        return written;
    }

    /// <summary>Whether writing <paramref name="more"/> bytes to the socket should wake the writer to acknowledge (under the lock, before counting them).</summary>
    private bool AckWanted(long more)
    {
        var att = _current;
        if (att is null || more == 0) return false;
        // The writer sleeps without a timer when nothing was waiting for an ACK: wake it for the first unacknowledged byte,
        // and again once AckEveryBytes are waiting (otherwise its AckInterval timer sends the ACK).
        return _received == att.AckedTo || _received + more - att.AckedTo >= _owner.Options.AckEveryBytes;
    }

    private static void Signal(SemaphoreSlim s)
    {
        try { if (s.CurrentCount == 0) s.Release(); } catch (SemaphoreFullException) { } catch (ObjectDisposedException) { }
    }

    /// <summary>Inbox → socket, in order, for the session's lifetime; each byte written is then acknowledged.</summary>
    private async Task DeliverAsync()
    {
        var ct = _stop.Token;
        var batch = new List<Chunk>(MaxChunksPerSend);
        var segments = new List<ArraySegment<byte>>(MaxChunksPerSend);
        var frameWaiting = false;
        try
        {
            while (true)
            {
                Chunk? next;
                var finNow = false;
                lock (_gate)
                {
                    if (_ended) return;
                    next = _inbox.Count > 0 ? _inbox[0] : null;
                    if (next is null && _remoteFinAt >= 0 && _remoteFinAt == _received && !_remoteFin) finNow = true;
                }
                if (finNow)
                {
                    try { _socket.Shutdown(SocketShutdown.Send); } catch (SocketException) { /* the app is gone: the socket reader reports it */ }
                    lock (_gate) _remoteFin = true;
                    Wake();
                    continue;
                }
                if (next is null)
                {
                    await _inboxSignal.WaitAsync(ct).ConfigureAwait(false);
                    continue;
                }
                // Everything waiting (up to MaxChunksPerSend chunks) in one gathered send: fewer system calls and wake-ups.
                // The batch leaves the inbox first, so only this loop owns its buffers (Finish returns the inbox's).
                batch.Clear();
                lock (_gate)
                {
                    if (_ended) return;
                    if (_socketBusy || _inbox.Count == 0)
                    {
                        // A frame is being written straight to the socket (it queues what the socket did not take).
                        frameWaiting = true;
                    }
                    else
                    {
                        var take = Math.Min(_inbox.Count, MaxChunksPerSend);
                        for (var i = 0; i < take; i++) batch.Add(_inbox[i]);
                        _inbox.RemoveRange(0, take);
                        _socketBusy = true;
                    }
                }
                if (frameWaiting)
                {
                    frameWaiting = false;
                    await _inboxSignal.WaitAsync(ct).ConfigureAwait(false);
                    continue;
                }
                var total = 0;
                var done = false;
                try
                {
                    segments.Clear();
                    foreach (var c in batch)
                    {
                        segments.Add(new ArraySegment<byte>(c.Buffer, 0, c.Length));
                        total += c.Length;
                    }
                    var sent = await _socket.SendAsync(segments, SocketFlags.None).WaitAsync(ct).ConfigureAwait(false);
                    while (sent < total)
                    {
                        // A partial send: the rest, from where it stopped.
                        var skip = sent;
                        segments.Clear();
                        foreach (var c in batch)
                        {
                            if (skip >= c.Length) { skip -= c.Length; continue; }
                            segments.Add(new ArraySegment<byte>(c.Buffer, skip, c.Length - skip));
                            skip = 0;
                        }
                        sent += await _socket.SendAsync(segments, SocketFlags.None).WaitAsync(ct).ConfigureAwait(false);
                    }
                    done = true;
                }
                finally
                {
                    // A send given up on (the session is ending) may still read its buffers: leave those to the GC.
                    if (done) foreach (var c in batch) ArrayPool<byte>.Shared.Return(c.Buffer);
                    batch.Clear();
                }
                bool wake;
                lock (_gate)
                {
                    _socketBusy = false;
                    wake = AckWanted(total);
                    _received += total;
                }
                Counters?.AddToSocket(total);
                if (wake) Wake(); // the writer acknowledges it
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException or IOException)
        {
            Reset($"the local connection failed: {ex.Message}", sendReset: true);
        }
    }

    /// <summary>Both directions finished and acknowledged: close cleanly.</summary>
    private void CheckDone(Attachment att)
    {
        lock (_gate)
        {
            if (_ended || !_localFin || !_finAcked || !_remoteFin || !att.AckedFin || _current != att) return;
            _ended = true;
        }
        _ = Task.Run(async () =>
        {
            try
            {
                await att.Stream.Output.CompleteAsync().ConfigureAwait(false);
                await att.Stream.DisposeAsync().ConfigureAwait(false);
            }
            catch (Exception) { /* closing anyway */ }
            Finish(null);
        });
    }

    /// <summary>Ends the session with an error: the local socket is reset, the other side told (when a stream is up).</summary>
    public void Reset(string reason, bool sendReset)
    {
        Attachment? att;
        lock (_gate)
        {
            if (_ended) return;
            _ended = true;
            att = _current;
            _current = null;
        }
        Log.SessionReset(_log, IdText, Node, reason);
        _owner.Metrics.Resets.Add(1, new KeyValuePair<string, object?>("reason", ResetReason(reason)));
        if (att is not null)
        {
            if (sendReset)
            {
                try
                {
                    ResumeFrame.WriteReset(att.Stream.Output, reason);
                    _ = CloseAfterResetAsync(att.Stream);
                }
                catch (Exception) { att.Stream.Reset(); }
            }
            else
            {
                att.Stream.Reset();
            }
            att.Cts.Cancel();
        }
        Tunnel.SocketBridge.Abort(_socket);
        Finish(new IOException(reason));
    }

    /// <summary>How long a stream that carried a RESET frame stays half-open before it is reset.</summary>
    private static readonly TimeSpan ResetLinger = TimeSpan.FromSeconds(1);

    /// <summary>
    /// Sends the RESET frame and a FIN, and resets the stream only after <see cref="ResetLinger"/>: a stream reset at once
    /// may reach the other side before it has read the frame, and its reason would be lost.
    /// </summary>
    private static async Task CloseAfterResetAsync(YamuxStream stream)
    {
        try
        {
            await stream.Output.FlushAsync().AsTask().WaitAsync(ResetLinger).ConfigureAwait(false);
            await stream.Output.CompleteAsync().ConfigureAwait(false);
            await Task.Delay(ResetLinger).ConfigureAwait(false);
        }
        catch (Exception)
        {
            // the stream is going anyway
        }
        stream.Reset();
    }

    private static string ResetReason(string reason) =>
        reason.StartsWith("cannot resume", StringComparison.Ordinal) ? "impossible"
        : reason.StartsWith("no path", StringComparison.Ordinal) ? "no-path"
        : reason.Contains("unknown session", StringComparison.Ordinal) ? "unknown-session"
        : reason.StartsWith("the local", StringComparison.Ordinal) ? "local"
        : reason.StartsWith("the other side", StringComparison.Ordinal) ? "remote"
        : reason.StartsWith("protocol", StringComparison.Ordinal) ? "protocol" : "other";

    private void Finish(Exception? error)
    {
        _stop.Cancel();
        List<Chunk> chunks;
        lock (_gate)
        {
            chunks = [.. _chunks];
            _chunks.Clear();
            foreach (var c in _inbox) ArrayPool<byte>.Shared.Return(c.Buffer);
            _inbox.Clear();
        }
        long freed = 0;
        foreach (var c in chunks)
        {
            freed += c.Length;
            ArrayPool<byte>.Shared.Return(c.Buffer);
        }
        if (freed > 0) _owner.AddPeerBytes(Peer, -freed);
        if (error is null)
        {
            try { _socket.Shutdown(SocketShutdown.Both); } catch (Exception) { /* gone */ }
            _socket.Dispose();
        }
        _owner.Remove(this);
        if (error is null) _completed.TrySetResult();
        else _completed.TrySetException(error);
    }
}
