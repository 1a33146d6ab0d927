using System.Buffers;
using System.Collections.Concurrent;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Weft.Wire;
using Weft.Wire.Mqtt;
using ProtocolViolationException = Weft.Wire.ProtocolViolationException;

namespace Weft.Edge.Mqtt;

/// <summary>A message the broker delivered on a subscribed topic.</summary>
public sealed record MqttMessage(string Topic, ReadOnlyMemory<byte> Payload, byte Qos);

/// <summary>Settings of <see cref="MqttClient"/>.</summary>
public sealed record MqttClientOptions
{
    public required IPEndPoint Broker { get; init; }
    public required string ClientId { get; init; }
    public string? Username { get; init; }
    public string? Password { get; init; }
    public TimeSpan Keepalive { get; init; } = TimeSpan.FromSeconds(30);
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(5);
    public TimeSpan ReconnectInitialDelay { get; init; } = TimeSpan.FromMilliseconds(200);
    public TimeSpan ReconnectMaxDelay { get; init; } = TimeSpan.FromSeconds(5);
    public int MaxPacketBytes { get; init; } = (1024 + 64) * 1024;
    public int MaxInflight { get; init; } = 64;
}

/// <summary>
/// An MQTT 3.1.1 client: CONNECT (persistent session, so the broker keeps our subscriptions and QoS 1
/// messages while we are away), PUBLISH at QoS 0 and 1 (QoS 1 waits for PUBACK; unacknowledged publishes are
/// sent again with DUP after a reconnect), SUBSCRIBE (every subscription is renewed on reconnect), PINGREQ at
/// half the keepalive, and reconnect with jittered backoff. Incoming QoS 1 messages are acknowledged after
/// <see cref="MessageReceived"/> returns.
/// </summary>
public sealed class MqttClient : IAsyncDisposable
{
    private readonly MqttClientOptions _o;
    private readonly ILogger _log;
    private readonly TimeProvider _time;
    private readonly CancellationTokenSource _stop = new();
    private readonly ConcurrentDictionary<string, byte> _subscriptions = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, byte> _acked = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<ushort, Inflight> _inflight = new();
    private readonly ConcurrentDictionary<ushort, TaskCompletionSource<MqttSubAck>> _subacks = new();
    private readonly SemaphoreSlim _writeGate = new(1, 1);
    private readonly SemaphoreSlim _inflightSlots;
    private volatile Stream? _stream;
    private TaskCompletionSource _connected = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private Task _loop = Task.CompletedTask;
    private int _nextId;

    private sealed class Inflight(MqttPublish packet)
    {
        public MqttPublish Packet { get; } = packet;
        public TaskCompletionSource Acked { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        /// <summary>The connection it was last written on (0: never written); DUP is set on every later copy.</summary>
        public int Generation;
    }

    private int _generation;

    public MqttClient(MqttClientOptions options, ILogger log, TimeProvider? time = null)
    {
        _o = options;
        _log = log;
        _time = time ?? TimeProvider.System;
        _inflightSlots = new SemaphoreSlim(options.MaxInflight, options.MaxInflight);
    }

    /// <summary>Handles a delivered message (QoS 1 is acknowledged to the broker after it returns).</summary>
    public Func<MqttMessage, Task>? MessageReceived { get; set; }

    public bool IsConnected => _stream is not null;

    public long Reconnects { get; private set; }

    public string? LastError { get; private set; }

    public void Start() => _loop = Task.Run(RunAsync, CancellationToken.None);

    /// <summary>Subscribes now if connected, and on every later connection.</summary>
    public async Task SubscribeAsync(string filter, CancellationToken ct)
    {
        if (!_subscriptions.TryAdd(filter, 0)) return;
        if (_stream is { } s) await SendSubscribeAsync(s, [filter], ct).ConfigureAwait(false);
    }

    /// <summary>Topic filters the broker has acknowledged on the current connection.</summary>
    public IReadOnlyCollection<string> Subscriptions => _acked.Keys.ToArray();

    /// <summary>Raised after the broker acknowledged a SUBSCRIBE.</summary>
    public event Action? Subscribed;

    /// <summary>Raised when the broker link comes up or goes down.</summary>
    public event Action? ConnectionChanged;

    /// <summary>Publishes; at QoS 1 returns once the broker's PUBACK came (waiting through reconnects until <paramref name="ct"/>).</summary>
    public async Task PublishAsync(string topic, ReadOnlyMemory<byte> payload, int qos, CancellationToken ct)
    {
        if (qos == 0)
        {
            var s = await WaitConnectedAsync(ct).ConfigureAwait(false);
            await WriteAsync(s, new MqttPublish { Topic = topic, Payload = payload }, ct).ConfigureAwait(false);
            return;
        }
        await _inflightSlots.WaitAsync(ct).ConfigureAwait(false);
        ushort id = 0;
        try
        {
            id = NextId();
            var entry = new Inflight(new MqttPublish { Topic = topic, Payload = payload, Qos = 1, PacketId = id });
            _inflight[id] = entry;
            if (_stream is { } s)
            {
                try { await TransmitAsync(s, entry, Volatile.Read(ref _generation), ct).ConfigureAwait(false); }
                catch (IOException) { /* sent again with DUP after the reconnect */ }
            }
            await entry.Acked.Task.WaitAsync(ct).ConfigureAwait(false);
        }
        finally
        {
            _inflight.TryRemove(id, out _);
            _inflightSlots.Release();
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        if (_stream is { } s)
        {
            try
            {
                using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(500));
                await WriteAsync(s, MqttEmpty.Disconnect, cts.Token).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is IOException or OperationCanceledException or ObjectDisposedException) { }
            await s.DisposeAsync().ConfigureAwait(false);
        }
        try { await _loop.ConfigureAwait(false); } catch (OperationCanceledException) { }
        _stop.Dispose();
    }

    private ushort NextId()
    {
        while (true)
        {
            var id = (ushort)(Interlocked.Increment(ref _nextId) % 65535 + 1);
            if (!_inflight.ContainsKey(id) && !_subacks.ContainsKey(id)) return id;
        }
    }

    private async Task<Stream> WaitConnectedAsync(CancellationToken ct)
    {
        while (true)
        {
            if (_stream is { } s) return s;
            await _connected.Task.WaitAsync(ct).ConfigureAwait(false);
        }
    }

    /// <summary>Writes a QoS 1 publish once per connection: the first copy ever without DUP, every later one with it.</summary>
    private Task TransmitAsync(Stream s, Inflight entry, int generation, CancellationToken ct)
    {
        var previous = Interlocked.Exchange(ref entry.Generation, generation);
        if (previous == generation) return Task.CompletedTask;
        return WriteAsync(s, previous == 0 ? entry.Packet : entry.Packet with { Dup = true }, ct);
    }

    private async Task WriteAsync(Stream s, MqttPacket p, CancellationToken ct)
    {
        var bytes = p.ToArray();
        await _writeGate.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            await s.WriteAsync(bytes, ct).ConfigureAwait(false);
        }
        catch (ObjectDisposedException ex)
        {
            throw new IOException("the broker connection is closed", ex);
        }
        finally
        {
            _writeGate.Release();
        }
    }

    private async Task SendSubscribeAsync(Stream s, IReadOnlyList<string> filters, CancellationToken ct)
    {
        var id = NextId();
        var tcs = new TaskCompletionSource<MqttSubAck>(TaskCreationOptions.RunContinuationsAsynchronously);
        _subacks[id] = tcs;
        try
        {
            await WriteAsync(s, new MqttSubscribe(id, filters.Select(f => (f, (byte)1)).ToList()), ct).ConfigureAwait(false);
            using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
            cts.CancelAfter(_o.ConnectTimeout);
            var ack = await tcs.Task.WaitAsync(cts.Token).ConfigureAwait(false);
            if (ack.ReturnCodes.Any(c => c == MqttSubAck.Failure)) throw new IOException($"the broker refused a subscription to {string.Join(", ", filters)}");
            foreach (var f in filters) _acked[f] = 0;
            Subscribed?.Invoke();
        }
        finally
        {
            _subacks.TryRemove(id, out _);
        }
    }

    private async Task RunAsync()
    {
        var delay = _o.ReconnectInitialDelay;
        while (!_stop.IsCancellationRequested)
        {
            var connectedAt = _time.GetTimestamp();
            try
            {
                await SessionAsync().ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (_stop.IsCancellationRequested)
            {
                break;
            }
            catch (Exception ex) when (ex is IOException or SocketException or ProtocolViolationException or OperationCanceledException or TimeoutException)
            {
                LastError = ex.Message;
                Log.MqttDown(_log, _o.Broker.ToString(), ex.Message);
            }
            Reconnects++;
            if (_time.GetElapsedTime(connectedAt) > TimeSpan.FromSeconds(10)) delay = _o.ReconnectInitialDelay;
            var wait = TimeSpan.FromMilliseconds(delay.TotalMilliseconds * (0.5 + Random.Shared.NextDouble()));
            try { await Task.Delay(wait, _time, _stop.Token).ConfigureAwait(false); } catch (OperationCanceledException) { break; }
            delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, _o.ReconnectMaxDelay.Ticks));
        }
    }

    private async Task SessionAsync()
    {
        using var tcp = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        using (var cts = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token))
        {
            cts.CancelAfter(_o.ConnectTimeout);
            await tcp.ConnectAsync(_o.Broker, cts.Token).ConfigureAwait(false);
        }
        var stream = new NetworkStream(tcp, ownsSocket: false);
        await using var _ = stream.ConfigureAwait(false);
        var reader = PipeReader.Create(stream, new StreamPipeReaderOptions(leaveOpen: true));
        using var life = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
        var lastReceived = _time.GetTimestamp();
        await WriteAsync(stream, new MqttConnect
        {
            ClientId = _o.ClientId, CleanSession = false, KeepAliveSeconds = (ushort)_o.Keepalive.TotalSeconds,
            Username = _o.Username, Password = _o.Password is null ? null : System.Text.Encoding.UTF8.GetBytes(_o.Password),
        }, life.Token).ConfigureAwait(false);
        using (var cts = CancellationTokenSource.CreateLinkedTokenSource(life.Token))
        {
            cts.CancelAfter(_o.ConnectTimeout);
            var first = await ReadPacketAsync(reader, cts.Token).ConfigureAwait(false);
            if (first is not MqttConnAck ack) throw new ProtocolViolationException("mqtt", $"expected CONNACK, got {first.Type}");
            if (ack.ReturnCode != 0) throw new IOException("the broker refused the connection: " + ack.Describe());
        }
        var pinger = PingLoopAsync(stream, () => lastReceived, life);
        var readLoop = ReadLoopAsync(stream, reader, () => lastReceived = _time.GetTimestamp(), life.Token);
        var generation = Interlocked.Increment(ref _generation);
        _stream = stream;
        try
        {
            if (!_subscriptions.IsEmpty) await SendSubscribeAsync(stream, _subscriptions.Keys.ToArray(), life.Token).ConfigureAwait(false);
            foreach (var p in _inflight.Values.OrderBy(i => i.Packet.PacketId))
                await TransmitAsync(stream, p, generation, life.Token).ConfigureAwait(false);
            _connected.TrySetResult();
            ConnectionChanged?.Invoke();
            Log.MqttUp(_log, _o.Broker.ToString());
            await Task.WhenAny(readLoop, pinger).ConfigureAwait(false);
        }
        finally
        {
            _stream = null;
            _acked.Clear();
            ConnectionChanged?.Invoke();
            _connected = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            await life.CancelAsync().ConfigureAwait(false);
            tcp.Close();
            try { await Task.WhenAll(readLoop, pinger).ConfigureAwait(false); }
            catch (Exception ex) when (ex is IOException or SocketException or OperationCanceledException or ObjectDisposedException or ProtocolViolationException) { }
            await reader.CompleteAsync().ConfigureAwait(false);
        }
        await readLoop.ConfigureAwait(false);
    }

    private async Task PingLoopAsync(Stream s, Func<long> lastReceived, CancellationTokenSource life)
    {
        while (!life.IsCancellationRequested)
        {
            await Task.Delay(_o.Keepalive / 2, _time, life.Token).ConfigureAwait(false);
            if (_time.GetElapsedTime(lastReceived()) > _o.Keepalive * 1.5) throw new TimeoutException($"nothing from the broker for {_o.Keepalive.TotalSeconds * 1.5:0.#} s");
            await WriteAsync(s, MqttEmpty.PingReq, life.Token).ConfigureAwait(false);
        }
    }

    private async Task<MqttPacket> ReadPacketAsync(PipeReader reader, CancellationToken ct)
    {
        while (true)
        {
            var r = await reader.ReadAsync(ct).ConfigureAwait(false);
            var buf = r.Buffer;
            if (MqttPacket.TryRead(ref buf, _o.MaxPacketBytes, out var p))
            {
                reader.AdvanceTo(buf.Start);
                return p;
            }
            if (r.IsCompleted) throw new IOException("the broker closed the connection");
            reader.AdvanceTo(buf.Start, buf.End);
        }
    }

    private async Task ReadLoopAsync(Stream s, PipeReader reader, Action received, CancellationToken ct)
    {
        while (true)
        {
            var p = await ReadPacketAsync(reader, ct).ConfigureAwait(false);
            received();
            switch (p)
            {
                case MqttPacketId { PacketType: MqttPacketType.PubAck } a:
                    if (_inflight.TryGetValue(a.PacketId, out var i)) i.Acked.TrySetResult();
                    break;
                case MqttSubAck sa:
                    if (_subacks.TryGetValue(sa.PacketId, out var t)) t.TrySetResult(sa);
                    break;
                case MqttPublish pub:
                    if (MessageReceived is { } h) await h(new MqttMessage(pub.Topic, pub.Payload, pub.Qos)).ConfigureAwait(false);
                    if (pub.Qos == 1) await WriteAsync(s, new MqttPacketId(MqttPacketType.PubAck, pub.PacketId), ct).ConfigureAwait(false);
                    else if (pub.Qos == 2) await WriteAsync(s, new MqttPacketId(MqttPacketType.PubRec, pub.PacketId), ct).ConfigureAwait(false);
                    break;
                case MqttPacketId { PacketType: MqttPacketType.PubRel } rel:
                    await WriteAsync(s, new MqttPacketId(MqttPacketType.PubComp, rel.PacketId), ct).ConfigureAwait(false);
                    break;
                case MqttEmpty { PacketType: MqttPacketType.PingResp }:
                case MqttPacketId { PacketType: MqttPacketType.UnsubAck }:
                    break;
                default:
                    throw new ProtocolViolationException("mqtt", $"a broker does not send {p.Type}");
            }
        }
    }
}
