using System.Buffers;
using System.IO.Pipelines;
using Microsoft.Extensions.Logging.Abstractions;
using Weft.P2P.Transport;
using Weft.P2P.Yamux;
using Weft.Wire.Yamux;

namespace Weft.P2P.Tests.Yamux;

/// <summary>Shared helpers: session pairs over in-memory pipes, a hand-driven raw peer, deadlines.</summary>
internal static class YamuxTestKit
{
    public static readonly TimeSpan Deadline = TimeSpan.FromSeconds(20);

    public static YamuxOptions NoKeepAlive(YamuxOptions? o = null) => new()
    {
        InitialStreamWindow = o?.InitialStreamWindow ?? YamuxHeader.InitialStreamWindow,
        MaxStreamWindow = o?.MaxStreamWindow ?? 16 * 1024 * 1024,
        MaxInboundStreams = o?.MaxInboundStreams ?? 1000,
        MaxOutboundStreams = o?.MaxOutboundStreams ?? 1000,
        MaxFrameDataLength = o?.MaxFrameDataLength ?? 1024 * 1024,
        AcceptBacklog = o?.AcceptBacklog ?? 256,
        KeepAliveInterval = TimeSpan.Zero,
        StreamCloseTimeout = o?.StreamCloseTimeout ?? TimeSpan.FromMinutes(1),
        GoAwayTimeout = o?.GoAwayTimeout ?? TimeSpan.FromSeconds(30),
    };

    /// <summary>Two started sessions joined by in-memory pipes: <c>Client</c> is the initiator.</summary>
    public static (YamuxSession Client, YamuxSession Server) Pair(YamuxOptions? client = null, YamuxOptions? server = null, TimeProvider? time = null)
    {
        var (a, b) = DuplexPipePair.Create();
        var c = new YamuxSession(a, true, client ?? NoKeepAlive(), NullLogger.Instance, time ?? TimeProvider.System);
        var s = new YamuxSession(b, false, server ?? NoKeepAlive(), NullLogger.Instance, time ?? TimeProvider.System);
        c.Start();
        s.Start();
        return (c, s);
    }

    /// <summary>A started session whose other end is a <see cref="RawPeer"/> the test drives frame by frame.</summary>
    public static (YamuxSession Session, RawPeer Peer) WithRawPeer(bool sessionIsInitiator = true, YamuxOptions? options = null, TimeProvider? time = null, bool answerPings = true)
    {
        var (a, b) = DuplexPipePair.Create();
        var s = new YamuxSession(a, sessionIsInitiator, options ?? NoKeepAlive(), NullLogger.Instance, time ?? TimeProvider.System);
        s.Start();
        return (s, new RawPeer(b, answerPings));
    }

    public static byte[] Pattern(int length, int seed = 0)
    {
        var b = new byte[length];
        for (var i = 0; i < length; i++) b[i] = (byte)((i + seed) % 251);
        return b;
    }

    public static async Task WriteAllAsync(PipeWriter output, ReadOnlyMemory<byte> data, int chunk = 64 * 1024)
    {
        for (var off = 0; off < data.Length; off += chunk)
        {
            var n = Math.Min(chunk, data.Length - off);
            await output.WriteAsync(data.Slice(off, n));
        }
    }

    public static async Task<byte[]> ReadToEndAsync(PipeReader input)
    {
        var ms = new MemoryStream();
        while (true)
        {
            var r = await input.ReadAsync();
            foreach (var seg in r.Buffer) ms.Write(seg.Span);
            input.AdvanceTo(r.Buffer.End);
            if (r.IsCompleted) return ms.ToArray();
        }
    }

    public static async Task<byte[]> ReadExactlyAsync(PipeReader input, int count)
    {
        var r = await input.ReadAtLeastAsync(count);
        var bytes = r.Buffer.Slice(0, count).ToArray();
        input.AdvanceTo(r.Buffer.GetPosition(count));
        return bytes;
    }

    public static Task<T> Within<T>(this Task<T> t) => t.WaitAsync(Deadline);
    public static Task Within(this Task t) => t.WaitAsync(Deadline);
    public static Task<T> Within<T>(this ValueTask<T> t) => t.AsTask().WaitAsync(Deadline);
    public static Task Within(this ValueTask t) => t.AsTask().WaitAsync(Deadline);
}

/// <summary>One yamux frame as seen on the wire.</summary>
internal readonly record struct RawFrame(YamuxHeader Header, byte[] Payload);

/// <summary>
/// The far end of a session's connection, driven by hand: writes exact bytes, reads exact frames. A background
/// pump reads every frame; ping requests are answered at once unless the peer was made with
/// <c>answerPings: false</c>, and <see cref="NextAsync"/> hides ping frames unless asked for them.
/// </summary>
internal sealed class RawPeer
{
    private readonly System.Threading.Channels.Channel<RawFrame> _frames = System.Threading.Channels.Channel.CreateUnbounded<RawFrame>();
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private readonly bool _answerPings;

    public RawPeer(IDuplexPipe pipe, bool answerPings = true)
    {
        Pipe = pipe;
        _answerPings = answerPings;
        _ = Task.Run(PumpAsync);
    }

    public IDuplexPipe Pipe { get; }

    public async Task WriteAsync(YamuxHeader header, ReadOnlyMemory<byte> payload = default)
    {
        await _writeLock.WaitAsync();
        try
        {
            header.Write(Pipe.Output);
            if (!payload.IsEmpty) Pipe.Output.Write(payload.Span);
            await Pipe.Output.FlushAsync();
        }
        finally
        {
            _writeLock.Release();
        }
    }

    public async Task WriteRawAsync(byte[] bytes)
    {
        await _writeLock.WaitAsync();
        try { await Pipe.Output.WriteAsync(bytes); }
        finally { _writeLock.Release(); }
    }

    /// <summary>The next frame (ping frames only when <paramref name="includePings"/>), or null at the end of the connection.</summary>
    public async Task<RawFrame?> ReadFrameAsync(bool includePings = false)
    {
        var reader = _frames.Reader;
        while (await reader.WaitToReadAsync().AsTask().WaitAsync(YamuxTestKit.Deadline))
        {
            if (!reader.TryRead(out var f)) continue;
            if (!includePings && f.Header.Type == YamuxFrameType.Ping) continue;
            return f;
        }
        return null;
    }

    /// <summary>The next frame, which must exist.</summary>
    public async Task<RawFrame> NextAsync(bool includePings = false) =>
        await ReadFrameAsync(includePings) ?? throw new Xunit.Sdk.XunitException("the session closed the connection");

    /// <summary>Reads until the session completes its output; returns every frame seen (pings included).</summary>
    public async Task<List<RawFrame>> ReadUntilEndAsync()
    {
        var list = new List<RawFrame>();
        while (await ReadFrameAsync(includePings: true) is { } f) list.Add(f);
        return list;
    }

    private async Task PumpAsync()
    {
        var input = Pipe.Input;
        try
        {
            while (true)
            {
                var r = await input.ReadAsync();
                var buf = r.Buffer;
                while (true)
                {
                    var probe = buf;
                    if (!YamuxHeader.TryRead(ref probe, out var h)) break;
                    var len = h.Type == YamuxFrameType.Data ? h.Length : 0;
                    if (probe.Length < len) break;
                    var frame = new RawFrame(h, probe.Slice(0, len).ToArray());
                    buf = probe.Slice(len);
                    if (_answerPings && h.Type == YamuxFrameType.Ping && h.Has(YamuxFlags.Syn))
                        await WriteAsync(YamuxHeader.Ping(YamuxFlags.Ack, h.Length));
                    _frames.Writer.TryWrite(frame);
                }
                input.AdvanceTo(buf.Start, buf.End);
                if (r.IsCompleted) break;
            }
        }
        catch (Exception ex)
        {
            _frames.Writer.TryComplete(ex);
            return;
        }
        _frames.Writer.TryComplete();
    }
}
