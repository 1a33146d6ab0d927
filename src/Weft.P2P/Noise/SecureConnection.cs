using System.Buffers;
using System.IO.Pipelines;
using Microsoft.Extensions.Logging;
using Weft.Wire;
using Weft.Wire.Identity;
using Weft.Wire.Noise;

namespace Weft.P2P.Noise;

/// <summary>
/// A Noise transport session over a raw connection. <see cref="Output"/> takes plaintext, which a pump cuts into
/// frames of at most 65519 bytes and encrypts straight into the transport's buffers; a second pump parses frames
/// from the transport and decrypts them straight into <see cref="Input"/>'s buffers. Both plaintext pipes push back
/// at about 1 MiB. The connection owns the transport's pipes from here on and completes them when done.
/// A frame that fails to decrypt closes both directions: <see cref="Input"/> then throws the
/// <see cref="ProtocolViolationException"/> and writes fail.
/// </summary>
public sealed class SecureConnection : IDuplexPipe, IAsyncDisposable
{
    /// <summary>Plaintext a pump processes before it flushes (keeps both sides of a pipe busy at once).</summary>
    internal const int MaxBatchBytes = 256 * 1024;

    /// <summary>Plaintext buffered per direction before writers wait.</summary>
    internal const int PauseThreshold = 1024 * 1024;

    private const int TagLength = CipherState.TagLength;
    private const int FrameOverhead = NoiseFrame.HeaderLength + CipherState.TagLength;

    /// <summary>Smallest frame made just to use up the room left in the transport's current buffer.</summary>
    private const int MinPackedFrame = 4096;

    /// <summary>Buffer size asked of the transport for full frames: four frames of 64 KiB.</summary>
    private const int TransportBufferHint = 256 * 1024;

    /// <summary>
    /// Frames at least this long that arrive in pieces are assembled in a buffer of their own as the pieces come,
    /// so the transport gets its (small, pooled) blocks back at once instead of holding a whole frame's worth.
    /// </summary>
    private const int MinAssembledFrame = 8 * 1024;

    private static readonly PipeOptions PlainPipeOptions = new(
        pool: FramePool.Instance,
        pauseWriterThreshold: PauseThreshold,
        resumeWriterThreshold: PauseThreshold / 2,
        minimumSegmentSize: NoiseFrame.MaxPlaintextLength,
        useSynchronizationContext: false);

    private readonly IDuplexPipe _transport;
    private readonly CipherState _send;
    private readonly CipherState _receive;
    private readonly Pipe _plainOut = new(PlainPipeOptions);
    private readonly Pipe _plainIn = new(PlainPipeOptions);
    private readonly ILogger _logger;
    private readonly Task _outbound;
    private readonly Task _inbound;
    private int _transportRoom; // bytes left in the transport buffer the last frame went into (outbound pump only)
    private byte[]? _partial;   // frame being assembled (inbound pump only)
    private int _partialLength;
    private int _partialFilled;
    private Exception? _abortError;
    private volatile bool _disposing;
    private int _disposed;

    internal SecureConnection(IDuplexPipe transport, CipherState send, CipherState receive, PeerId remotePeer, PublicKey remoteKey,
        string? earlyMuxer, ILogger logger)
    {
        _transport = transport;
        _send = send;
        _receive = receive;
        RemotePeer = remotePeer;
        RemotePublicKey = remoteKey;
        EarlyMuxer = earlyMuxer;
        _logger = logger;
        _outbound = Task.Run(OutboundPumpAsync);
        _inbound = Task.Run(InboundPumpAsync);
    }

    /// <summary>Decrypted data from the peer.</summary>
    public PipeReader Input => _plainIn.Reader;

    /// <summary>Plaintext to send; completing it sends what is buffered, then completes the transport's output.</summary>
    public PipeWriter Output => _plainOut.Writer;

    public PeerId RemotePeer { get; }

    public PublicKey RemotePublicKey { get; }

    /// <summary>The muxer agreed in the handshake, or null when either side offered none (negotiate with multistream).</summary>
    public string? EarlyMuxer { get; }

    /// <summary>Completes when both pumps have stopped (the transport's pipes are then completed).</summary>
    public Task Completion => Task.WhenAll(_outbound, _inbound);

    /// <summary>For tests: moves the send counter (to reach the end of the nonce space).</summary>
    internal void SetSendNonce(ulong nonce) => _send.SetNonce(nonce);

    // ---- plaintext -> frames ----

    private async Task OutboundPumpAsync()
    {
        var plain = _plainOut.Reader;
        var transport = _transport.Output;
        Exception? error = null;
        try
        {
            while (true)
            {
                var result = await plain.ReadAsync().ConfigureAwait(false);
                if (Volatile.Read(ref _abortError) is { } abort)
                {
                    plain.AdvanceTo(result.Buffer.Start);
                    throw abort;
                }
                var buffer = result.Buffer;
                long batch = 0;
                while (!buffer.IsEmpty && batch < MaxBatchBytes)
                {
                    // One frame per block piece: frames never straddle blocks, so nothing is copied first.
                    var first = buffer.FirstSpan;
                    int n;
                    if (first.IsEmpty)
                    {
                        n = (int)Math.Min(buffer.Length, NoiseFrame.MaxPlaintextLength);
                        EncryptFrame(buffer.Slice(0, n), transport);
                    }
                    else
                    {
                        n = EncryptFrame(first, transport);
                    }
                    buffer = buffer.Slice(n);
                    batch += n;
                }
                // Leftover plaintext (batch limit): mark it unexamined so the next read returns at once.
                var done = result.IsCompleted && buffer.IsEmpty;
                plain.AdvanceTo(buffer.Start);
                // While disposing, encrypt what is left without waiting for the peer; Complete commits it.
                if (batch > 0 && !_disposing)
                {
                    var flush = await transport.FlushAsync().ConfigureAwait(false);
                    if (Volatile.Read(ref _abortError) is { } abortAfterFlush) throw abortAfterFlush;
                    if (flush.IsCompleted) break; // the transport is closed: nobody takes our data any more
                }
                if (done) break;
            }
        }
        catch (Exception e)
        {
            error = e;
            Abort(e);
        }
        finally
        {
            transport.Complete(error);
            plain.Complete(error);
            _send.Dispose();
        }
    }

    /// <summary>
    /// Encrypts a prefix of <paramref name="plaintext"/> as one frame straight into the transport's buffer and
    /// returns its length. Frames are sized to fill the transport's current buffer when it has room for a
    /// reasonable frame, and a full frame asks for a buffer of several frames: a pipe then fills each buffer it
    /// rents completely instead of renting a 128 KiB array per 64 KiB frame (socket pipes use 4 KiB blocks, so
    /// every full frame would otherwise be an oversized rent).
    /// </summary>
    private int EncryptFrame(ReadOnlySpan<byte> plaintext, PipeWriter transport)
    {
        var n = Math.Min(plaintext.Length, NoiseFrame.MaxPlaintextLength);
        Span<byte> span;
        if (_transportRoom >= FrameOverhead + Math.Min(n, MinPackedFrame))
        {
            n = Math.Min(n, _transportRoom - FrameOverhead);
            span = transport.GetSpan(FrameOverhead + n);
        }
        else
        {
            span = transport.GetSpan(n == NoiseFrame.MaxPlaintextLength ? TransportBufferHint : FrameOverhead + n);
        }
        NoiseFrame.WriteHeader(span, n + TagLength);
        _send.Encrypt(plaintext[..n], span.Slice(NoiseFrame.HeaderLength, n), span.Slice(NoiseFrame.HeaderLength + n, TagLength));
        transport.Advance(FrameOverhead + n);
        _transportRoom = span.Length - (FrameOverhead + n);
        return n;
    }

    /// <summary>The rare frame whose plaintext is spread over several segments: copied into place, encrypted in place.</summary>
    private void EncryptFrame(ReadOnlySequence<byte> plaintext, PipeWriter transport)
    {
        var n = (int)plaintext.Length;
        var span = transport.GetSpan(FrameOverhead + n);
        NoiseFrame.WriteHeader(span, n + TagLength);
        var body = span.Slice(NoiseFrame.HeaderLength, n);
        plaintext.CopyTo(body);
        _send.Encrypt(body, body, span.Slice(NoiseFrame.HeaderLength + n, TagLength));
        transport.Advance(FrameOverhead + n);
        _transportRoom = span.Length - (FrameOverhead + n);
    }

    // ---- frames -> plaintext ----

    private async Task InboundPumpAsync()
    {
        var transport = _transport.Input;
        var plain = _plainIn.Writer;
        Exception? error = null;
        try
        {
            while (true)
            {
                var result = await transport.ReadAsync().ConfigureAwait(false);
                long leftover = 0; // bytes not consumed, measured before AdvanceTo hands the segments back
                if (Volatile.Read(ref _abortError) is { } abort)
                {
                    transport.AdvanceTo(result.Buffer.Start);
                    throw abort;
                }
                if (result.IsCanceled && _disposing)
                {
                    transport.AdvanceTo(result.Buffer.Start);
                    break;
                }
                var buffer = result.Buffer;
                long batch = 0;
                var more = false;
                try
                {
                    while (true)
                    {
                        if (batch >= MaxBatchBytes)
                        {
                            more = !buffer.IsEmpty;
                            break;
                        }
                        if (_partial is not null)
                        {
                            // Assembling a frame that arrived in pieces: take what is there, give the transport its buffers back.
                            var take = (int)Math.Min(buffer.Length, _partialLength - _partialFilled);
                            buffer.Slice(0, take).CopyTo(_partial.AsSpan(_partialFilled));
                            _partialFilled += take;
                            buffer = buffer.Slice(take);
                            if (_partialFilled < _partialLength) break;
                            batch += DecryptAssembled(plain);
                            continue;
                        }
                        if (!NoiseFrame.TryReadLength(buffer, out var length)) break;
                        if (length < TagLength)
                            throw new ProtocolViolationException("noise", $"transport message of {length} bytes is shorter than the {TagLength}-byte tag");
                        if (buffer.Length < NoiseFrame.HeaderLength + length)
                        {
                            if (length < MinAssembledFrame) break; // small: wait for the rest in place
                            _partial = ArrayPool<byte>.Shared.Rent(length);
                            _partialLength = length;
                            _partialFilled = 0;
                            buffer = buffer.Slice(NoiseFrame.HeaderLength);
                            continue;
                        }
                        var message = buffer.Slice(NoiseFrame.HeaderLength, length);
                        DecryptFrame(message, plain);
                        buffer = buffer.Slice(message.End);
                        batch += length - TagLength;
                    }
                }
                finally
                {
                    // Complete frames left over (batch limit): examine only what was consumed so the next read returns at once.
                    leftover = buffer.Length;
                    if (more) transport.AdvanceTo(buffer.Start);
                    else transport.AdvanceTo(buffer.Start, buffer.End);
                }
                if (batch > 0)
                {
                    var flush = await plain.FlushAsync().ConfigureAwait(false);
                    if (Volatile.Read(ref _abortError) is { } abortAfterFlush) throw abortAfterFlush;
                    if (flush.IsCompleted || (flush.IsCanceled && _disposing)) break; // nobody reads any more
                }
                if (result.IsCompleted && !more)
                {
                    if (leftover > 0 || _partial is not null)
                    {
                        var received = leftover + (_partial is null ? 0 : NoiseFrame.HeaderLength + _partialFilled);
                        throw new ProtocolViolationException("noise", $"the peer closed the connection in the middle of a transport message ({received} bytes received)");
                    }
                    break;
                }
            }
        }
        catch (Exception e)
        {
            error = e;
            Abort(e);
        }
        finally
        {
            plain.Complete(error);
            transport.Complete(error);
            _receive.Dispose();
            if (_partial is not null) ArrayPool<byte>.Shared.Return(_partial);
            _partial = null;
        }
    }

    /// <summary>Decrypts a whole frame that is in the transport's buffer.</summary>
    private void DecryptFrame(ReadOnlySequence<byte> message, PipeWriter plain)
    {
        var n = (int)message.Length - TagLength;
        if (message.IsSingleSegment)
        {
            var span = message.FirstSpan;
            var destination = n == 0 ? Span<byte>.Empty : plain.GetSpan(n)[..n];
            _receive.Decrypt(span[..n], span[n..], destination);
            if (n > 0) plain.Advance(n);
        }
        else
        {
            // Copy the ciphertext into the plaintext buffer and decrypt it there in place.
            Span<byte> tag = stackalloc byte[TagLength];
            message.Slice(n).CopyTo(tag);
            var destination = n == 0 ? Span<byte>.Empty : plain.GetSpan(n)[..n];
            message.Slice(0, n).CopyTo(destination);
            _receive.Decrypt(destination, tag, destination);
            if (n > 0) plain.Advance(n);
        }
    }

    /// <summary>Decrypts the frame assembled in <see cref="_partial"/> and releases that buffer. Returns the plaintext length.</summary>
    private int DecryptAssembled(PipeWriter plain)
    {
        var message = _partial.AsSpan(0, _partialLength);
        var n = _partialLength - TagLength;
        var destination = n == 0 ? Span<byte>.Empty : plain.GetSpan(n)[..n];
        _receive.Decrypt(message[..n], message[n..], destination);
        if (n > 0) plain.Advance(n);
        ArrayPool<byte>.Shared.Return(_partial!);
        _partial = null;
        return n;
    }

    // ---- shutdown ----

    /// <summary>Closes both directions after a failure in either pump.</summary>
    private void Abort(Exception error)
    {
        if (_disposing && error is OperationCanceledException) return;
        if (Interlocked.CompareExchange(ref _abortError, error, null) is not null) return;
        if (error is ProtocolViolationException && _logger.IsEnabled(LogLevel.Debug))
            Log.ConnectionFailed(_logger, RemotePeer.ToString(), error.Message);
        WakeAll();
    }

    /// <summary>Wakes both pumps wherever they wait, so they notice an abort or the disposal.</summary>
    private void WakeAll()
    {
        // Either end may already be completed by the other pump; waking it is then pointless but harmless.
        Try(_plainOut.Reader.CancelPendingRead);
        Try(_plainIn.Writer.CancelPendingFlush);
        Try(_transport.Input.CancelPendingRead);
        Try(_transport.Output.CancelPendingFlush);

        static void Try(Action wake)
        {
            try
            {
                wake();
            }
            catch (Exception e) when (e is InvalidOperationException or ObjectDisposedException)
            {
            }
        }
    }

    /// <summary>
    /// Completes both plaintext ends, sends what was already written (without waiting for the peer to take it),
    /// stops reading, and waits for the pumps to finish. Errors of the pumps are not rethrown here.
    /// </summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            _disposing = true;
            _plainOut.Writer.Complete();
            _plainIn.Reader.Complete();
            WakeAll();
        }
        try
        {
            await Completion.ConfigureAwait(false);
        }
        catch (Exception)
        {
            // the pumps already reported their errors through the pipes
        }
    }
}
