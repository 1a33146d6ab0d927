using System.Buffers;
using System.IO.Pipelines;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Weft.Wire;
using Weft.Wire.Yamux;

namespace Weft.P2P.Yamux;

/// <summary>
/// A yamux (/yamux/1.0.0) session over one connection (hashicorp/yamux spec.md): many
/// <see cref="YamuxStream"/>s with per-stream flow control, keep-alive pings and GoAway.
/// One read loop parses frames from the connection; one writer loop serialises every frame into the
/// connection's <see cref="PipeWriter"/> (headers and payload copied straight into its memory, flushed in batches).
/// </summary>
public sealed class YamuxSession : IAsyncDisposable
{
    // Flush the connection once this many bytes are written but not flushed, even if more work is queued.
    private const int FlushThresholdBytes = 256 * 1024;

    // Control frames (pongs, RSTs for refused streams) queued but not yet written; beyond this the read loop
    // stops reading until the writer catches up, so a peer that never reads cannot grow our queue.
    private const int MaxPendingControlFrames = 4096;

    // Window auto-tuning doubles a window consumed faster than max(2 x RTT, this floor).
    private static readonly TimeSpan MinAutoTuneEpoch = TimeSpan.FromMilliseconds(1);

    private readonly IDuplexPipe _connection;
    private readonly bool _isInitiator;
    private readonly FrameWriter _frameWriter;
    private readonly AsyncSignal _writerSignal = new();
    private readonly Channel<YamuxStream> _accept = Channel.CreateUnbounded<YamuxStream>(
        new UnboundedChannelOptions { SingleWriter = false, SingleReader = false, AllowSynchronousContinuations = false });
    private readonly TaskCompletionSource _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _goAwayFlushed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly long _minAutoTuneTicks;

    // Session state, guarded by _gate.
    private readonly object _gate = new();
    private readonly Dictionary<uint, YamuxStream> _streams = new();
    private long _nextStreamId;
    private int _inboundCount, _outboundCount, _backlogCount;
    private bool _goAwaySent, _goAwayReceived;
    private volatile bool _closing;
    private bool _graceful;
    private Exception? _closeError;
    private YamuxGoAwayCode? _finalGoAway;
    private List<YamuxStream>? _teardownStreams;
    private bool _started;
    private ITimer? _keepAliveTimer, _keepAliveTimeoutTimer, _goAwayTimer;

    // Writer queues, guarded by _queueLock.
    private readonly object _queueLock = new();
    private readonly Queue<YamuxHeader> _control = new();
    private readonly Queue<YamuxStream> _ready = new();
    private bool _writerGone;
    private TaskCompletionSource? _controlDrained;

    // Pings, guarded by _pings.
    private readonly Dictionary<uint, PendingPing> _pings = new();
    private uint _nextPingId;
    private uint? _keepAlivePingId;
    private long _rttTicks = -1;

    // Read loop state.
    private long _lastReceived;
    private uint _payloadRemaining;
    private YamuxStream? _payloadStream;
    private bool _payloadFin;

    /// <param name="connection">The secured connection; the session owns it from now on and completes both pipes when it ends.</param>
    /// <param name="isInitiator">True on the side that dialled: it opens odd stream ids, the other side even ones.</param>
    public YamuxSession(IDuplexPipe connection, bool isInitiator, YamuxOptions options, ILogger logger, TimeProvider time)
    {
        ArgumentNullException.ThrowIfNull(connection);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _connection = connection;
        _isInitiator = isInitiator;
        Options = options;
        Logger = logger ?? throw new ArgumentNullException(nameof(logger));
        Time = time ?? throw new ArgumentNullException(nameof(time));
        _nextStreamId = isInitiator ? 1 : 2;
        _frameWriter = new FrameWriter(connection.Output);
        _minAutoTuneTicks = (long)(MinAutoTuneEpoch.TotalSeconds * time.TimestampFrequency);
    }

    internal YamuxOptions Options { get; }
    internal ILogger Logger { get; }
    internal TimeProvider Time { get; }

    /// <summary>Completes when the session has ended: successfully after GoAway, disposal or the peer closing the
    /// connection; faulted with the cause otherwise (<see cref="ProtocolViolationException"/> when the peer broke
    /// the protocol, <see cref="YamuxException"/> for a keep-alive timeout or an error GoAway from the peer).</summary>
    public Task Completion => _completion.Task;

    /// <summary>Streams open in either direction (including inbound ones not yet accepted).</summary>
    public int ActiveStreams { get { lock (_gate) return _streams.Count; } }

    /// <summary>True once the session is closing or closed.</summary>
    public bool IsClosed => _closing;

    /// <summary>When bytes last arrived from the peer (a <see cref="TimeProvider.GetTimestamp"/> value; 0 before any): proof of life.</summary>
    public long LastReceived => Volatile.Read(ref _lastReceived);

    /// <summary>The last measured round trip, or null before the first pong.</summary>
    internal TimeSpan? Rtt
    {
        get
        {
            var t = Interlocked.Read(ref _rttTicks);
            return t < 0 ? null : Time.GetElapsedTime(0, t);
        }
    }

    /// <summary>A stream's window doubles when half of it is consumed within this many timestamp ticks.</summary>
    internal long AutoTuneThresholdTicks
    {
        get
        {
            var rtt = Interlocked.Read(ref _rttTicks);
            return Math.Max(rtt < 0 ? 0 : 2 * rtt, _minAutoTuneTicks);
        }
    }

    /// <summary>Starts the read and writer loops, measures the RTT once and arms the keep-alive timer.</summary>
    public void Start()
    {
        lock (_gate)
        {
            if (_started || _closing) return;
            _started = true;
        }
        var read = Task.Run(ReadLoopAsync);
        var write = Task.Run(WriteLoopAsync);
        _ = FinishAsync(read, write);
        try
        {
            SendPing(keepAlive: false, tcs: null); // the first RTT sample, for window auto-tuning
        }
        catch (YamuxException)
        {
            return; // closed meanwhile
        }
        if (Options.KeepAliveInterval > TimeSpan.Zero)
        {
            _keepAliveTimeoutTimer = Time.CreateTimer(static s => ((YamuxSession)s!).OnKeepAliveTimeout(), this, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
            _keepAliveTimer = Time.CreateTimer(static s => ((YamuxSession)s!).OnKeepAliveTick(), this, Options.KeepAliveInterval, Options.KeepAliveInterval);
            if (_closing) StopTimers();
        }
    }

    /// <summary>
    /// Opens a stream. Nothing waits for the peer: the SYN goes out with the first frame and data may follow at once.
    /// Throws <see cref="YamuxException"/> when the session is closed or going away, or too many streams are open.
    /// </summary>
    public ValueTask<YamuxStream> OpenStreamAsync(CancellationToken ct = default)
    {
        ct.ThrowIfCancellationRequested();
        YamuxStream stream;
        lock (_gate)
        {
            if (_closing) throw new YamuxException("the yamux session is closed");
            if (_goAwayReceived) throw new YamuxException("the peer sent GoAway: no new streams");
            if (_goAwaySent) throw new YamuxException("this side sent GoAway: no new streams");
            if (_outboundCount >= Options.MaxOutboundStreams)
                throw new YamuxException($"too many outbound yamux streams ({Options.MaxOutboundStreams})");
            if (_nextStreamId > uint.MaxValue) throw new YamuxException("yamux stream ids are exhausted");
            var id = (uint)_nextStreamId;
            _nextStreamId += 2;
            stream = new YamuxStream(this, id, outbound: true, Options);
            _streams.Add(id, stream);
            _outboundCount++;
        }
        Enqueue(stream);
        return new ValueTask<YamuxStream>(stream);
    }

    /// <summary>The next inbound stream, or null once the session is closed or either side sent GoAway.</summary>
    public async ValueTask<YamuxStream?> AcceptStreamAsync(CancellationToken ct = default)
    {
        var reader = _accept.Reader;
        while (await reader.WaitToReadAsync(ct).ConfigureAwait(false))
        {
            if (!reader.TryRead(out var stream)) continue;
            lock (_gate) _backlogCount--;
            stream.OnAccepted();
            return stream;
        }
        return null;
    }

    /// <summary>Measures the yamux-level round trip with a ping.</summary>
    public async ValueTask<TimeSpan> PingAsync(CancellationToken ct = default)
    {
        ct.ThrowIfCancellationRequested();
        var tcs = new TaskCompletionSource<TimeSpan>(TaskCreationOptions.RunContinuationsAsynchronously);
        var id = SendPing(keepAlive: false, tcs);
        using (ct.UnsafeRegister(static (s, token) =>
        {
            var (session, pingId, source) = ((YamuxSession, uint, TaskCompletionSource<TimeSpan>))s!;
            lock (session._pings) session._pings.Remove(pingId);
            source.TrySetCanceled(token);
        }, (this, id, tcs)))
        {
            return await tcs.Task.ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Sends GoAway: neither side opens new streams; open ones finish, then the session closes (or when
    /// <see cref="YamuxOptions.GoAwayTimeout"/> passes, resetting what is left). Completes once the frame is flushed.
    /// </summary>
    public ValueTask GoAwayAsync(YamuxGoAwayCode code = YamuxGoAwayCode.Normal)
    {
        lock (_gate)
        {
            if (_closing || _goAwaySent) return new ValueTask(_goAwayFlushed.Task);
            _goAwaySent = true;
        }
        EnqueueControl(YamuxHeader.GoAway(code));
        _accept.Writer.TryComplete();
        StartGoAwayTimer();
        CheckDrained();
        return new ValueTask(_goAwayFlushed.Task);
    }

    /// <summary>Closes the session now: GoAway (best effort), every open stream fails, both connection pipes complete.</summary>
    public async ValueTask DisposeAsync()
    {
        Close(null, YamuxGoAwayCode.Normal, graceful: false, "disposed");
        // A graceful close may still wait on a flush the peer never takes.
        try { _connection.Output.CancelPendingFlush(); } catch (Exception) { /* already completed */ }
        try { await Completion.ConfigureAwait(false); } catch (Exception) { /* reported through Completion */ }
    }

    public override string ToString() => $"yamux session ({(_isInitiator ? "initiator" : "responder")}, {ActiveStreams} streams)";

    // ================================================================== writer side

    internal void Enqueue(YamuxStream stream)
    {
        lock (_queueLock)
        {
            if (_writerGone || stream.Queued) return;
            stream.Queued = true;
            _ready.Enqueue(stream);
        }
        _writerSignal.Set();
    }

    private bool EnqueueControl(YamuxHeader header)
    {
        lock (_queueLock)
        {
            if (_writerGone) return false;
            _control.Enqueue(header);
        }
        _writerSignal.Set();
        return true;
    }

    private async Task WriteLoopAsync()
    {
        var w = _frameWriter;
        var output = _connection.Output;
        Exception? failure = null;
        var goAwayWritten = false;
        try
        {
            while (!_closing)
            {
                var worked = false;
                YamuxStream? stream = null;
                TaskCompletionSource? drained = null;
                lock (_queueLock)
                {
                    while (_control.TryDequeue(out var h))
                    {
                        w.WriteHeader(h);
                        if (h.Type == YamuxFrameType.GoAway) goAwayWritten = true;
                        worked = true;
                    }
                    if (_controlDrained is not null)
                    {
                        drained = _controlDrained;
                        _controlDrained = null;
                    }
                    if (_ready.TryDequeue(out stream)) stream.Queued = false;
                }
                drained?.TrySetResult();
                if (stream is not null)
                {
                    worked = true;
                    if (stream.Service(w)) Enqueue(stream);
                }
                if (w.Unflushed >= FlushThresholdBytes || (!worked && w.Unflushed > 0))
                {
                    w.Unflushed = 0;
                    var result = await output.FlushAsync().ConfigureAwait(false);
                    if (goAwayWritten) _goAwayFlushed.TrySetResult();
                    if (result.IsCompleted)
                    {
                        Close(null, null, graceful: false, "the connection stopped reading");
                        break;
                    }
                }
                else if (!worked)
                {
                    await _writerSignal.WaitAsync().ConfigureAwait(false);
                }
            }

            bool graceful;
            YamuxGoAwayCode? finalGoAway;
            lock (_gate)
            {
                graceful = _graceful;
                finalGoAway = _finalGoAway;
            }
            lock (_queueLock)
            {
                // Pongs and RSTs still owed go out on a graceful close; on a hard one only the GoAway.
                while (_control.TryDequeue(out var h))
                {
                    if (graceful || h.Type == YamuxFrameType.GoAway) w.WriteHeader(h);
                }
            }
            if (finalGoAway is { } code) w.WriteHeader(YamuxHeader.GoAway(code));
            if (w.Unflushed > 0)
            {
                w.Unflushed = 0;
                var flush = output.FlushAsync();
                if (!flush.IsCompleted && !graceful) output.CancelPendingFlush();
                await flush.ConfigureAwait(false);
            }
        }
        catch (Exception ex)
        {
            failure = ex;
            Close(ex, null, graceful: false, ex.Message);
        }
        finally
        {
            _goAwayFlushed.TrySetResult();
            List<YamuxStream> leftovers = [];
            lock (_queueLock)
            {
                _writerGone = true;
                while (_ready.TryDequeue(out var s))
                {
                    s.Queued = false;
                    leftovers.Add(s);
                }
                _control.Clear();
                _controlDrained?.TrySetResult();
                _controlDrained = null;
            }
            List<YamuxStream>? teardown;
            lock (_gate) teardown = _teardownStreams;
            var ex = SessionClosedException();
            foreach (var s in leftovers) s.CompleteOutput(ex);
            if (teardown is not null)
                foreach (var s in teardown) s.CompleteOutput(ex);
            try { output.Complete(failure); } catch (Exception) { /* the transport is gone */ }
        }
    }

    // ================================================================== read side

    private async Task ReadLoopAsync()
    {
        var input = _connection.Input;
        try
        {
            while (true)
            {
                var result = await input.ReadAsync().ConfigureAwait(false);
                if (_closing) break;
                var buffer = result.Buffer;
                if (!buffer.IsEmpty) Volatile.Write(ref _lastReceived, Time.GetTimestamp());
                var leftover = false; // read before AdvanceTo: the buffer's segments are the pipe's again after it
                try
                {
                    ProcessFrames(ref buffer);
                }
                finally
                {
                    leftover = !buffer.IsEmpty;
                    input.AdvanceTo(buffer.Start, buffer.End);
                }
                if (result.IsCompleted)
                {
                    if (leftover || _payloadRemaining > 0)
                        Close(new YamuxException("the connection ended in the middle of a yamux frame"), null, graceful: false, "truncated frame");
                    else
                        Close(null, null, graceful: false, "the peer closed the connection");
                    break;
                }
                var wait = ControlBacklogWait();
                if (wait is not null) await wait.ConfigureAwait(false);
            }
        }
        catch (ProtocolViolationException pv)
        {
            Log.ProtocolViolation(Logger, pv.Detail);
            Close(pv, YamuxGoAwayCode.ProtocolError, graceful: false, pv.Message);
        }
        catch (Exception ex)
        {
            Close(ex, YamuxGoAwayCode.InternalError, graceful: false, ex.Message);
        }
        finally
        {
            try { input.Complete(); } catch (Exception) { /* the transport is gone */ }
        }
    }

    private Task? ControlBacklogWait()
    {
        lock (_queueLock)
        {
            if (_writerGone || _control.Count <= MaxPendingControlFrames) return null;
            _controlDrained ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            return _controlDrained.Task;
        }
    }

    private void ProcessFrames(ref ReadOnlySequence<byte> buffer)
    {
        while (true)
        {
            if (_payloadRemaining > 0)
            {
                if (buffer.IsEmpty) return;
                var n = (uint)Math.Min(buffer.Length, _payloadRemaining);
                _payloadStream?.Deliver(buffer.Slice(0, n));
                buffer = buffer.Slice(n);
                _payloadRemaining -= n;
                if (_payloadRemaining == 0) EndPayload();
                continue;
            }
            if (_closing) return;
            if (!YamuxHeader.TryRead(ref buffer, out var header)) return;
            switch (header.Type)
            {
                case YamuxFrameType.Data:
                case YamuxFrameType.WindowUpdate:
                    OnStreamFrame(header);
                    break;
                case YamuxFrameType.Ping:
                    if (header.Has(YamuxFlags.Syn)) EnqueueControl(YamuxHeader.Ping(YamuxFlags.Ack, header.Length));
                    else if (header.Has(YamuxFlags.Ack)) OnPong(header.Length);
                    break;
                case YamuxFrameType.GoAway:
                    OnRemoteGoAway(header.GoAwayCode);
                    break;
            }
        }
    }

    private void OnStreamFrame(in YamuxHeader h)
    {
        var id = h.StreamId;
        if (id == YamuxHeader.SessionStreamId)
            throw new ProtocolViolationException("yamux", $"{h.Type} frame on the session stream id 0");
        if (h.Type == YamuxFrameType.Data && h.Length > (uint)Options.MaxFrameDataLength)
            throw new ProtocolViolationException("yamux", $"data frame of {h.Length} bytes exceeds the limit of {Options.MaxFrameDataLength}");

        YamuxStream? stream;
        if (h.Has(YamuxFlags.Syn))
        {
            stream = OnSyn(id);
        }
        else
        {
            lock (_gate) _streams.TryGetValue(id, out stream);
        }

        if (stream is not null)
        {
            if (h.Has(YamuxFlags.Rst))
            {
                stream.OnRemoteReset();
                stream = null;
            }
            else if (h.Type == YamuxFrameType.WindowUpdate)
            {
                if (h.Length > 0) stream.OnWindowUpdate(h.Length);
                if (h.Has(YamuxFlags.Fin)) stream.OnRemoteFin();
            }
        }

        if (h.Type == YamuxFrameType.Data)
        {
            if (stream is not null && !stream.OnDataHeader(h.Length)) stream = null;
            _payloadStream = stream;
            _payloadRemaining = h.Length;
            _payloadFin = h.Has(YamuxFlags.Fin);
            if (h.Length == 0) EndPayload();
        }
    }

    private void EndPayload()
    {
        var stream = _payloadStream;
        _payloadStream = null;
        if (stream is not null && _payloadFin) stream.OnRemoteFin();
    }

    private YamuxStream? OnSyn(uint id)
    {
        var peerUsesOdd = !_isInitiator;
        if (((id & 1) == 1) != peerUsesOdd)
            throw new ProtocolViolationException("yamux", $"SYN for stream {id}, which has this side's parity");
        string? refused = null;
        YamuxStream? stream = null;
        lock (_gate)
        {
            if (_streams.ContainsKey(id))
                throw new ProtocolViolationException("yamux", $"SYN for stream {id}, which is already open");
            // Like hashicorp/yamux, ids need not arrive in order: a peer that opens streams from several
            // threads may send SYN 3 before SYN 1. Only an id that is open now is a violation.
            if (_closing || _goAwaySent || _goAwayReceived) refused = "going away";
            else if (_inboundCount >= Options.MaxInboundStreams) refused = "too many inbound streams";
            else if (_backlogCount >= Options.AcceptBacklog) refused = "accept backlog full";
            else
            {
                stream = new YamuxStream(this, id, outbound: false, Options);
                _streams.Add(id, stream);
                _inboundCount++;
                _backlogCount++;
            }
        }
        if (stream is null)
        {
            Log.StreamRefused(Logger, id, refused!);
            EnqueueControl(YamuxHeader.WindowUpdate(id, YamuxFlags.Rst, 0));
            return null;
        }
        if (!_accept.Writer.TryWrite(stream))
        {
            // GoAway or close completed the accept queue meanwhile.
            lock (_gate) _backlogCount--;
            stream.Reset();
            return null;
        }
        return stream;
    }

    private void OnRemoteGoAway(YamuxGoAwayCode code)
    {
        Log.GoAwayReceived(Logger, code.ToString());
        if (code != YamuxGoAwayCode.Normal)
        {
            Close(new YamuxException($"the peer ended the yamux session with GoAway ({code})"), null, graceful: false, $"GoAway {code}");
            return;
        }
        lock (_gate)
        {
            if (_goAwayReceived) return;
            _goAwayReceived = true;
        }
        _accept.Writer.TryComplete();
        StartGoAwayTimer();
        CheckDrained();
    }

    /// <summary>A stream reset or finished both ways: it leaves the session.</summary>
    internal void OnStreamDead(YamuxStream stream)
    {
        lock (_gate)
        {
            if (!_streams.TryGetValue(stream.Id, out var s) || !ReferenceEquals(s, stream)) return;
            _streams.Remove(stream.Id);
            if (stream.IsOutbound) _outboundCount--;
            else _inboundCount--;
        }
        CheckDrained();
    }

    private void CheckDrained()
    {
        lock (_gate)
        {
            if (_closing || !(_goAwaySent || _goAwayReceived) || _streams.Count > 0) return;
        }
        Close(null, null, graceful: true, "GoAway and all streams finished");
    }

    private void StartGoAwayTimer()
    {
        var timer = Time.CreateTimer(static s => ((YamuxSession)s!).Close(null, null, graceful: false, "GoAway timeout"), this, Options.GoAwayTimeout, Timeout.InfiniteTimeSpan);
        if (Interlocked.CompareExchange(ref _goAwayTimer, timer, null) is not null || _closing) timer.Dispose();
    }

    // ================================================================== pings

    private sealed class PendingPing(long start, TaskCompletionSource<TimeSpan>? tcs, bool keepAlive)
    {
        public long Start { get; } = start;
        public TaskCompletionSource<TimeSpan>? Tcs { get; } = tcs;
        public bool KeepAlive { get; } = keepAlive;
    }

    private uint SendPing(bool keepAlive, TaskCompletionSource<TimeSpan>? tcs)
    {
        uint id;
        lock (_pings)
        {
            if (_closing) throw new YamuxException("the yamux session is closed");
            id = ++_nextPingId;
            _pings[id] = new PendingPing(Time.GetTimestamp(), tcs, keepAlive);
            if (keepAlive) _keepAlivePingId = id;
        }
        if (!EnqueueControl(YamuxHeader.Ping(YamuxFlags.Syn, id)))
        {
            lock (_pings) _pings.Remove(id);
            throw new YamuxException("the yamux session is closed");
        }
        return id;
    }

    private void OnPong(uint id)
    {
        PendingPing? ping;
        lock (_pings)
        {
            if (!_pings.Remove(id, out ping)) return;
            if (ping.KeepAlive && _keepAlivePingId == id) _keepAlivePingId = null;
        }
        var ticks = Time.GetTimestamp() - ping.Start;
        Interlocked.Exchange(ref _rttTicks, Math.Max(ticks, 0));
        if (ping.KeepAlive) _keepAliveTimeoutTimer?.Change(Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        ping.Tcs?.TrySetResult(Time.GetElapsedTime(ping.Start, ping.Start + Math.Max(ticks, 0)));
    }

    private void OnKeepAliveTick()
    {
        if (_closing) return;
        lock (_pings)
        {
            if (_keepAlivePingId is not null) return; // the previous one is still out; its timeout decides
        }
        try
        {
            SendPing(keepAlive: true, tcs: null);
            _keepAliveTimeoutTimer?.Change(Options.KeepAliveTimeout, Timeout.InfiniteTimeSpan);
        }
        catch (YamuxException)
        {
            // closing
        }
    }

    private void OnKeepAliveTimeout()
    {
        lock (_pings)
        {
            if (_keepAlivePingId is null) return;
        }
        Log.KeepAliveTimeout(Logger, Options.KeepAliveTimeout);
        Close(new YamuxException($"yamux keep-alive ping unanswered within {Options.KeepAliveTimeout.TotalSeconds:0.###} s"),
            YamuxGoAwayCode.InternalError, graceful: false, "keep-alive timeout");
    }

    // ================================================================== teardown

    private YamuxException SessionClosedException()
    {
        Exception? cause;
        lock (_gate) cause = _closeError;
        return cause is null
            ? new YamuxException("the yamux session is closed")
            : new YamuxException("the yamux session failed: " + cause.Message, cause);
    }

    private void StopTimers()
    {
        _keepAliveTimer?.Dispose();
        _keepAliveTimeoutTimer?.Dispose();
        Interlocked.Exchange(ref _goAwayTimer, null)?.Dispose();
    }

    private void Close(Exception? error, YamuxGoAwayCode? goAway, bool graceful, string reason)
    {
        List<YamuxStream> streams;
        bool started;
        lock (_gate)
        {
            if (_closing) return;
            _closing = true;
            _closeError = error;
            _graceful = graceful;
            if (goAway is { } code && !_goAwaySent)
            {
                _goAwaySent = true;
                _finalGoAway = code;
            }
            streams = [.. _streams.Values];
            _streams.Clear();
            _inboundCount = _outboundCount = 0;
            _teardownStreams = streams;
            started = _started;
        }
        Log.SessionClosed(Logger, _isInitiator ? "initiator" : "responder", reason);
        StopTimers();
        _accept.Writer.TryComplete();
        while (_accept.Reader.TryRead(out _)) { }

        List<PendingPing> pings;
        lock (_pings)
        {
            pings = [.. _pings.Values];
            _pings.Clear();
            _keepAlivePingId = null;
        }
        var ex = SessionClosedException();
        foreach (var p in pings) p.Tcs?.TrySetException(ex);
        foreach (var s in streams) s.OnSessionClosed(ex);

        if (!started)
        {
            lock (_queueLock)
            {
                _writerGone = true;
                _ready.Clear();
                _control.Clear();
            }
            foreach (var s in streams) s.CompleteOutput(ex);
            try { _connection.Output.Complete(); } catch (Exception) { /* gone */ }
            try { _connection.Input.Complete(); } catch (Exception) { /* gone */ }
            _goAwayFlushed.TrySetResult();
            Complete();
            return;
        }

        _writerSignal.Set();
        if (!graceful)
        {
            try { _connection.Output.CancelPendingFlush(); } catch (Exception) { /* completed */ }
        }
        try { _connection.Input.CancelPendingRead(); } catch (Exception) { /* completed */ }
    }

    private async Task FinishAsync(Task read, Task write)
    {
        try { await Task.WhenAll(read, write).ConfigureAwait(false); } catch (Exception) { /* loops report through Close */ }
        Complete();
    }

    private void Complete()
    {
        Exception? error;
        lock (_gate) error = _closeError;
        if (error is null) _completion.TrySetResult();
        else _completion.TrySetException(error);
    }

    // ================================================================== frame output

    /// <summary>Writes frames straight into the connection's <see cref="PipeWriter"/> memory.</summary>
    internal sealed class FrameWriter(PipeWriter output)
    {
        public long Unflushed;

        public void WriteHeader(in YamuxHeader header)
        {
            header.Write(output.GetSpan(YamuxHeader.Size));
            output.Advance(YamuxHeader.Size);
            Unflushed += YamuxHeader.Size;
        }

        public void WriteData(uint streamId, YamuxFlags flags, in ReadOnlySequence<byte> payload)
        {
            var length = payload.Length;
            WriteHeader(YamuxHeader.Data(streamId, flags, (uint)length));
            var remaining = length;
            // Fill what is left of the current buffer first, then ask for one buffer for the rest.
            var dst = output.GetSpan();
            foreach (var seg in payload)
            {
                var src = seg.Span;
                while (!src.IsEmpty)
                {
                    if (dst.IsEmpty) dst = output.GetSpan((int)Math.Min(remaining, YamuxBufferPool.LargeBlockSize));
                    var n = Math.Min(dst.Length, src.Length);
                    src[..n].CopyTo(dst);
                    output.Advance(n);
                    remaining -= n;
                    src = src[n..];
                    dst = n < dst.Length ? output.GetSpan() : default;
                }
            }
            Unflushed += length;
        }
    }
}
