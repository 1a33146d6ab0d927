using System.Buffers;
using System.IO.Pipelines;
using System.Runtime.CompilerServices;
using Weft.Wire.Yamux;

namespace Weft.P2P.Yamux;

/// <summary>
/// One yamux stream: a duplex byte pipe multiplexed over a <see cref="YamuxSession"/>.
/// <see cref="Input"/> ends at the peer's FIN and throws <see cref="YamuxStreamResetException"/> after a reset;
/// completing <see cref="Output"/> sends FIN. Writes are held back (FlushAsync does not complete) while the
/// peer's receive window is used up and the local send buffer is full.
/// </summary>
public sealed class YamuxStream : IDuplexPipe, IAsyncDisposable
{
    // Bytes the application may buffer in Output beyond what the session has framed before FlushAsync waits.
    private const long OutputPauseThreshold = 256 * 1024;
    private const long OutputResumeThreshold = 128 * 1024;
    private const int MinimumSegment = YamuxBufferPool.SmallBlockSize;
    private const int CopyChunk = YamuxBufferPool.LargeBlockSize;

    // Close bits: once both are set the stream leaves the session.
    private const int LocalFinBit = 1, RemoteFinBit = 2;

    private readonly YamuxSession _session;
    private readonly Pipe _inPipe;
    private readonly Pipe _outPipe;
    private readonly InputReader _input;
    private readonly OutputWriter _output;

    // --- receive side ---
    private readonly object _recvGate = new();      // guards _inPipe.Writer
    private bool _inWriterDone;                     // FIN, RST or session end delivered to Input
    private volatile bool _inReaderDone;            // the application completed Input: drop and credit data
    private readonly object _windowGate = new();    // guards the receive window fields
    private uint _recvWindow;                       // the full window we currently allow
    private long _recvCredit;                       // bytes the peer may still send
    private long _buffered;                         // delivered, not yet consumed by the application
    private long _unacked;                          // consumed, not yet granted back
    private long _epochStart;                       // timestamp of the last grant (auto-tuning)
    private volatile bool _remoteFin;               // written by the read loop only

    // --- send side ---
    private readonly object _sendGate = new();      // guards the fields below
    private long _sendWindow;
    private YamuxFlags _pendingFlags;               // SYN or ACK owed to the peer
    private long _pendingDelta;                     // window to grant with the next WindowUpdate
    private bool _waitingForWindow;
    private bool _resetRequested;                   // send RST, drop output
    private bool _abortOutput;                      // drop output, send nothing (peer reset / session end)
    private bool _accepted;                         // inbound: handed to the application (ACK may go out)

    // Touched by the session's writer loop only.
    private bool _outDone;
    private bool _synPending;

    // --- lifecycle ---
    private int _closeBits;
    private volatile Exception? _failure;           // thrown by Output once the stream is dead
    private int _resetState;                        // 0 live, 1 reset
    private int _disposed;
    private ITimer? _closeTimer;

    internal bool Queued;                           // in the session's ready queue (session queue lock)

    private readonly TaskCompletionSource _ended = new(TaskCreationOptions.RunContinuationsAsynchronously);

    internal YamuxStream(YamuxSession session, uint id, bool outbound, YamuxOptions options)
    {
        _session = session;
        Id = id;
        IsOutbound = outbound;
        _inPipe = new Pipe(new PipeOptions(
            pool: YamuxBufferPool.Shared, readerScheduler: PipeScheduler.ThreadPool, writerScheduler: PipeScheduler.Inline,
            pauseWriterThreshold: 0, resumeWriterThreshold: 0, minimumSegmentSize: MinimumSegment,
            useSynchronizationContext: false));
        _outPipe = new Pipe(new PipeOptions(
            pool: YamuxBufferPool.Shared, readerScheduler: PipeScheduler.Inline, writerScheduler: PipeScheduler.ThreadPool,
            pauseWriterThreshold: OutputPauseThreshold, resumeWriterThreshold: OutputResumeThreshold,
            minimumSegmentSize: MinimumSegment, useSynchronizationContext: false));
        _input = new InputReader(this, _inPipe.Reader);
        _output = new OutputWriter(this, _outPipe.Writer);

        _recvWindow = YamuxHeader.InitialStreamWindow;
        _recvCredit = YamuxHeader.InitialStreamWindow;
        _sendWindow = YamuxHeader.InitialStreamWindow;
        _epochStart = session.Time.GetTimestamp();
        if (outbound)
        {
            _pendingFlags = YamuxFlags.Syn;
            _synPending = true;
        }
        // A window beyond the implicit 256 KiB is granted with the SYN (outbound) or the ACK (inbound, once accepted).
        var extra = options.InitialStreamWindow - YamuxHeader.InitialStreamWindow;
        _recvWindow += extra;
        _recvCredit += extra;
        _pendingDelta = extra;
    }

    /// <summary>The stream id: odd for streams the session initiator opened, even for the responder's.</summary>
    public uint Id { get; }

    /// <summary>True for a stream this side opened.</summary>
    public bool IsOutbound { get; }

    /// <summary>The application protocol agreed on this stream (set by the host after multistream-select).</summary>
    public string? Protocol { get; set; }

    /// <summary>Data from the peer. Completes at the peer's FIN; throws <see cref="YamuxStreamResetException"/> after a reset.</summary>
    public PipeReader Input => _input;

    /// <summary>Data to the peer. Completing it sends FIN; completing it with an exception resets the stream.</summary>
    public PipeWriter Output => _output;

    /// <summary>Completes (never faults) when the stream has left the session: both FINs through, a reset, or the session's end.</summary>
    public Task Completion => _ended.Task;

    /// <summary>The receive window currently allowed to the peer (grows with auto-tuning).</summary>
    internal uint ReceiveWindow { get { lock (_windowGate) return _recvWindow; } }

    /// <summary>What the peer currently lets us send.</summary>
    internal long SendWindow { get { lock (_sendGate) return _sendWindow; } }

    internal bool IsReset => Volatile.Read(ref _resetState) != 0;

    /// <summary>Sends RST (if the peer knows the stream) and fails both directions locally.</summary>
    public void Reset()
    {
        if (IsFullyClosed) return;
        if (Interlocked.Exchange(ref _resetState, 1) != 0) return;
        var ex = new YamuxStreamResetException(Id, byPeer: false);
        _failure = ex;
        CompleteInput(ex);
        lock (_sendGate) _resetRequested = true;
        StopCloseTimer();
        Log.StreamReset(_session.Logger, Id, "local");
        _session.OnStreamDead(this);
        _ended.TrySetResult();
        _session.Enqueue(this);
    }

    /// <summary>A duplex <see cref="System.IO.Stream"/> over <see cref="Input"/> and <see cref="Output"/>; disposing it sends FIN.</summary>
    public Stream AsStream() => new YamuxDuplexStream(this);

    /// <summary>
    /// Sends FIN (after any buffered data) if not yet sent and stops reading. If the peer has not finished
    /// its direction within <see cref="YamuxOptions.StreamCloseTimeout"/>, the stream is reset.
    /// </summary>
    public ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return ValueTask.CompletedTask;
        if (!IsReset && _failure is null)
        {
            _output.CompleteCore();
            _input.Complete();
            if (!IsFullyClosed && !IsReset && _failure is null)
            {
                // The peer's FIN (or our own, stuck behind a closed window) may never come: bound the wait.
                var timer = _session.Time.CreateTimer(static s => ((YamuxStream)s!).OnCloseTimeout(), this, _session.Options.StreamCloseTimeout, Timeout.InfiniteTimeSpan);
                if (Interlocked.CompareExchange(ref _closeTimer, timer, null) != null) timer.Dispose();
                if (IsFullyClosed) StopCloseTimer();
            }
        }
        else
        {
            _input.Complete();
        }
        return ValueTask.CompletedTask;
    }

    private bool IsFullyClosed => Volatile.Read(ref _closeBits) == (LocalFinBit | RemoteFinBit);

    private void OnCloseTimeout()
    {
        if (IsFullyClosed) return;
        Log.StreamReset(_session.Logger, Id, "close timeout");
        Reset();
    }

    private void StopCloseTimer() => Interlocked.Exchange(ref _closeTimer, null)?.Dispose();

    public override string ToString() => $"yamux stream {Id}{(Protocol is null ? "" : " " + Protocol)}";

    // ------------------------------------------------------------------ receive side (read loop)

    /// <summary>A Data frame header of <paramref name="length"/> bytes arrived. False: drop its payload.</summary>
    internal bool OnDataHeader(uint length)
    {
        lock (_windowGate)
        {
            if (length > _recvCredit)
                throw new Weft.Wire.ProtocolViolationException("yamux", $"stream {Id}: data frame of {length} bytes exceeds the receive window of {_recvCredit}");
            _recvCredit -= length;
        }
        if (_remoteFin)
        {
            // Data after the peer's own FIN: kill just this stream.
            Log.StreamReset(_session.Logger, Id, "data after FIN");
            Reset();
            return false;
        }
        return true;
    }

    /// <summary>Delivers payload bytes (part or all of a Data frame) to <see cref="Input"/>.</summary>
    internal void Deliver(in ReadOnlySequence<byte> data)
    {
        var length = data.Length;
        if (length == 0) return;
        if (!_inReaderDone)
        {
            lock (_recvGate)
            {
                if (!_inWriterDone && !_inReaderDone)
                {
                    lock (_windowGate) _buffered += length;
                    var w = _inPipe.Writer;
                    foreach (var seg in data)
                    {
                        var src = seg.Span;
                        while (!src.IsEmpty)
                        {
                            var dst = w.GetSpan(Math.Min(src.Length, CopyChunk));
                            var n = Math.Min(dst.Length, src.Length);
                            src[..n].CopyTo(dst);
                            w.Advance(n);
                            src = src[n..];
                        }
                    }
                    var flush = w.FlushAsync();
                    // The pipe never pauses (no threshold), so the flush completes at once.
                    if (flush.IsCompleted) flush.GetAwaiter().GetResult();
                    return;
                }
            }
        }
        // Nobody reads any more (disposed or reset): drop the bytes and give the window back.
        if (!IsReset) OnConsumed(length, fromReader: false);
    }

    internal void OnRemoteFin()
    {
        if (_remoteFin) return;
        _remoteFin = true;
        lock (_recvGate)
        {
            if (!_inWriterDone)
            {
                _inWriterDone = true;
                _inPipe.Writer.Complete();
            }
        }
        if (Interlocked.Or(ref _closeBits, RemoteFinBit) == LocalFinBit) OnFullyClosed();
    }

    internal void OnRemoteReset()
    {
        if (Interlocked.Exchange(ref _resetState, 1) != 0) return;
        var ex = new YamuxStreamResetException(Id, byPeer: true);
        _failure = ex;
        CompleteInput(ex);
        lock (_sendGate) _abortOutput = true;
        StopCloseTimer();
        Log.StreamReset(_session.Logger, Id, "by peer");
        _session.OnStreamDead(this);
        _ended.TrySetResult();
        _session.Enqueue(this);
    }

    /// <summary>The session ended: both directions fail with <paramref name="ex"/>.</summary>
    internal void OnSessionClosed(Exception ex)
    {
        _failure ??= ex;
        CompleteInput(ex);
        lock (_sendGate) _abortOutput = true;
        StopCloseTimer();
        _ended.TrySetResult();
    }

    private void CompleteInput(Exception ex)
    {
        lock (_recvGate)
        {
            if (_inWriterDone) return;
            _inWriterDone = true;
            _inPipe.Writer.Complete(ex);
        }
    }

    /// <summary>Both FINs are through: the stream leaves the session.</summary>
    private void OnFullyClosed()
    {
        StopCloseTimer();
        _session.OnStreamDead(this);
        _ended.TrySetResult();
    }

    /// <summary>The peer granted <paramref name="delta"/> more bytes of send window.</summary>
    internal void OnWindowUpdate(uint delta)
    {
        bool wake;
        lock (_sendGate)
        {
            _sendWindow += delta;
            if (_sendWindow > uint.MaxValue)
                throw new Weft.Wire.ProtocolViolationException("yamux", $"stream {Id}: window updates grow the send window beyond 2^32-1");
            wake = _waitingForWindow;
            _waitingForWindow = false;
        }
        if (wake) _session.Enqueue(this);
    }

    // ------------------------------------------------------------------ application side

    /// <summary>The application consumed <paramref name="count"/> bytes: grant window back when half the window is used.</summary>
    private void OnConsumed(long count, bool fromReader)
    {
        long delta;
        lock (_windowGate)
        {
            if (fromReader) _buffered -= count;
            _unacked += count;
            if (_remoteFin || _unacked < _recvWindow / 2) return;
            var now = _session.Time.GetTimestamp();
            var max = _session.Options.MaxStreamWindow;
            if (_recvWindow < max && fromReader && now - _epochStart < _session.AutoTuneThresholdTicks)
            {
                // The window was used up within about two round trips: the link could carry more, double it.
                var grown = (uint)Math.Min((ulong)_recvWindow * 2, max);
                _unacked += grown - _recvWindow;
                _recvWindow = grown;
            }
            _epochStart = now;
            delta = _unacked;
            _unacked = 0;
            _recvCredit += delta;
        }
        lock (_sendGate) _pendingDelta += delta;
        _session.Enqueue(this);
    }

    private void OnInputCompleted()
    {
        if (_inReaderDone) return;
        _inReaderDone = true;
        long stranded;
        lock (_recvGate)
        {
            lock (_windowGate)
            {
                stranded = _buffered;
                _buffered = 0;
            }
        }
        if (stranded > 0 && !IsReset) OnConsumed(stranded, fromReader: false);
    }

    private void OnOutputFlushed() => _session.Enqueue(this);

    /// <summary>The session handed the stream to the application: the ACK (and any larger initial window) may go out.</summary>
    internal void OnAccepted()
    {
        lock (_sendGate)
        {
            _accepted = true;
            _pendingFlags |= YamuxFlags.Ack;
        }
        _session.Enqueue(this);
    }

    private void ThrowIfFailed()
    {
        var f = _failure;
        if (f is null) return;
        if (f is YamuxStreamResetException r) throw new YamuxStreamResetException(r.StreamId, r.ByPeer);
        throw new YamuxException(f.Message, f);
    }

    // ------------------------------------------------------------------ writer loop

    /// <summary>
    /// Called by the session's writer loop only: writes whatever this stream owes the peer (flags, window
    /// update, at most one data frame, FIN or RST). Returns true when it has more data to send right away.
    /// </summary>
    internal bool Service(YamuxSession.FrameWriter w)
    {
        YamuxFlags flags;
        long delta, window;
        bool reset, abort;
        lock (_sendGate)
        {
            reset = _resetRequested;
            abort = _abortOutput;
            flags = _pendingFlags;
            if (!IsOutbound && !_accepted) flags &= ~YamuxFlags.Ack;
            _pendingFlags &= ~flags;
            delta = IsOutbound || _accepted ? _pendingDelta : 0;
            _pendingDelta -= delta;
            window = _sendWindow;
        }

        if (reset || abort)
        {
            if (reset && !_synPending && !IsFullyClosed)
            {
                // A stream the peer never heard of needs no RST.
                w.WriteHeader(YamuxHeader.WindowUpdate(Id, YamuxFlags.Rst, 0));
            }
            CompleteOutput(_failure ?? new YamuxStreamResetException(Id, byPeer: false));
            return false;
        }

        if (_outDone)
        {
            // FIN already sent: only window grants for the inbound direction remain.
            if (delta > 0 || flags != 0) w.WriteHeader(YamuxHeader.WindowUpdate(Id, flags, (uint)delta));
            return false;
        }

        if (delta > 0)
        {
            w.WriteHeader(YamuxHeader.WindowUpdate(Id, flags, (uint)delta));
            if ((flags & YamuxFlags.Syn) != 0) _synPending = false;
            flags = YamuxFlags.None;
        }

        // Inbound streams send nothing before they are accepted (the ACK goes first).
        if (!IsOutbound && !Volatile.Read(ref _accepted))
            return false;

        var reader = _outPipe.Reader;
        if (!reader.TryRead(out var result))
        {
            if (flags != 0)
            {
                w.WriteHeader(YamuxHeader.WindowUpdate(Id, flags, 0));
                if ((flags & YamuxFlags.Syn) != 0) _synPending = false;
            }
            return false;
        }

        var buffer = result.Buffer;
        var n = Math.Min(Math.Min(buffer.Length, window), YamuxOptions.MaxSendFrameLength);
        if (n > 0)
        {
            w.WriteData(Id, flags, buffer.Slice(0, n));
            if ((flags & YamuxFlags.Syn) != 0) _synPending = false;
            flags = YamuxFlags.None;
        }
        var allSent = n == buffer.Length;
        if (result.IsCompleted && allSent)
        {
            reader.AdvanceTo(buffer.End);
            reader.Complete();
            _outDone = true;
            lock (_sendGate) _sendWindow -= n;
            w.WriteHeader(YamuxHeader.WindowUpdate(Id, flags | YamuxFlags.Fin, 0));
            _synPending = false;
            if (Interlocked.Or(ref _closeBits, LocalFinBit) == RemoteFinBit) OnFullyClosed();
            return false;
        }

        // examined = consumed: the pipe counts examined bytes as drained, and we want FlushAsync to wait until bytes are really sent.
        reader.AdvanceTo(buffer.GetPosition(n));
        if (flags != 0)
        {
            w.WriteHeader(YamuxHeader.WindowUpdate(Id, flags, 0));
            if ((flags & YamuxFlags.Syn) != 0) _synPending = false;
        }
        if (allSent)
        {
            lock (_sendGate) _sendWindow -= n;
            return false;
        }
        lock (_sendGate)
        {
            _sendWindow -= n;
            if (_sendWindow > 0) return true;
            _waitingForWindow = true;
            return false;
        }
    }

    /// <summary>Writer loop (or session teardown without one): drop pending output and release blocked writers.</summary>
    internal void CompleteOutput(Exception ex)
    {
        if (_outDone) return;
        _outDone = true;
        _outPipe.Reader.Complete(ex);
    }

    // ------------------------------------------------------------------ pipe wrappers

    private sealed class InputReader(YamuxStream stream, PipeReader inner) : PipeReader
    {
        private ReadOnlySequence<byte> _last;
        private bool _completed;

        public override ValueTask<ReadResult> ReadAsync(CancellationToken cancellationToken = default)
        {
            var vt = inner.ReadAsync(cancellationToken);
            if (vt.IsCompletedSuccessfully)
            {
                var r = vt.Result;
                _last = r.Buffer;
                return new ValueTask<ReadResult>(r);
            }
            return AwaitRead(vt);
        }

        [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
        private async ValueTask<ReadResult> AwaitRead(ValueTask<ReadResult> vt)
        {
            var r = await vt.ConfigureAwait(false);
            _last = r.Buffer;
            return r;
        }

        public override bool TryRead(out ReadResult result)
        {
            if (!inner.TryRead(out result)) return false;
            _last = result.Buffer;
            return true;
        }

        public override void AdvanceTo(SequencePosition consumed) => AdvanceTo(consumed, consumed);

        public override void AdvanceTo(SequencePosition consumed, SequencePosition examined)
        {
            var count = _last.IsEmpty ? 0 : _last.Slice(_last.Start, consumed).Length;
            inner.AdvanceTo(consumed, examined);
            _last = default;
            if (count > 0) stream.OnConsumed(count, fromReader: true);
        }

        public override void CancelPendingRead() => inner.CancelPendingRead();

        public override void Complete(Exception? exception = null)
        {
            if (_completed) return;
            _completed = true;
            _last = default;
            inner.Complete(exception);
            stream.OnInputCompleted();
        }
    }

    private sealed class OutputWriter(YamuxStream stream, PipeWriter inner) : PipeWriter
    {
        private bool _completed;

        public override Memory<byte> GetMemory(int sizeHint = 0)
        {
            stream.ThrowIfFailed();
            return inner.GetMemory(sizeHint);
        }

        public override Span<byte> GetSpan(int sizeHint = 0)
        {
            stream.ThrowIfFailed();
            return inner.GetSpan(sizeHint);
        }

        public override void Advance(int bytes) => inner.Advance(bytes);

        public override bool CanGetUnflushedBytes => inner.CanGetUnflushedBytes;

        public override long UnflushedBytes => inner.UnflushedBytes;

        public override ValueTask<FlushResult> FlushAsync(CancellationToken cancellationToken = default)
        {
            stream.ThrowIfFailed();
            var vt = inner.FlushAsync(cancellationToken);
            stream.OnOutputFlushed();
            return vt;
        }

        public override ValueTask<FlushResult> WriteAsync(ReadOnlyMemory<byte> source, CancellationToken cancellationToken = default)
        {
            stream.ThrowIfFailed();
            var src = source.Span;
            while (!src.IsEmpty)
            {
                var dst = inner.GetSpan(Math.Min(src.Length, CopyChunk));
                var n = Math.Min(dst.Length, src.Length);
                src[..n].CopyTo(dst);
                inner.Advance(n);
                src = src[n..];
            }
            return FlushAsync(cancellationToken);
        }

        public override void CancelPendingFlush() => inner.CancelPendingFlush();

        public override void Complete(Exception? exception = null)
        {
            if (exception is not null)
            {
                stream.Reset();
                if (!_completed)
                {
                    _completed = true;
                    inner.Complete();
                }
                return;
            }
            CompleteCore();
        }

        internal void CompleteCore()
        {
            if (_completed) return;
            _completed = true;
            inner.Complete();
            stream.OnOutputFlushed();
        }
    }
}
