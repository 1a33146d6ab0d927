using System.Buffers;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Threading.Channels;
using Microsoft.Extensions.Logging.Abstractions;
using Weft.Edge.Mqtt;
using Weft.Lab.Services;
using Weft.Wire.Mqtt;

namespace Weft.Edge.Tests;

public class MqttClientTests
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(20);

    private static async Task<MosquittoService> Broker()
    {
        try
        {
            return await MosquittoService.StartNewAsync();
        }
        catch (ServiceUnavailableException ex)
        {
            throw new SkipException("skipped: " + ex.Message);
        }
    }

    private static MqttClient Client(IPEndPoint broker, string id, TimeSpan? keepalive = null) => new(new MqttClientOptions
    {
        Broker = broker, ClientId = id, Keepalive = keepalive ?? TimeSpan.FromSeconds(30), ReconnectInitialDelay = TimeSpan.FromMilliseconds(50), ReconnectMaxDelay = TimeSpan.FromMilliseconds(300),
    }, NullLogger.Instance);

    private static async Task WaitSubscribed(MqttClient c, string filter)
    {
        var tcs = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        c.Subscribed += () => { if (c.Subscriptions.Contains(filter)) tcs.TrySetResult(); };
        if (c.Subscriptions.Contains(filter)) return;
        await tcs.Task.WaitAsync(Deadline);
    }

    [SkippableFact]
    public async Task Publishes_at_qos_0_and_1_and_receives_on_a_subscription()
    {
        await using var broker = await Broker();
        await using var sub = Client(broker.EndPoint, "sub");
        var got = Channel.CreateUnbounded<MqttMessage>();
        sub.MessageReceived = m => got.Writer.WriteAsync(m).AsTask();
        sub.Start();
        using var cts = new CancellationTokenSource(Deadline);
        await sub.SubscribeAsync("a/+", cts.Token);
        await WaitSubscribed(sub, "a/+");
        await using var pub = Client(broker.EndPoint, "pub");
        pub.Start();
        await pub.PublishAsync("a/one", "first"u8.ToArray(), 0, cts.Token);
        var big = new byte[200_000];
        Random.Shared.NextBytes(big);
        await pub.PublishAsync("a/two", big, 1, cts.Token);
        var m1 = await got.Reader.ReadAsync(cts.Token);
        var m2 = await got.Reader.ReadAsync(cts.Token);
        Assert.Equal(("a/one", "first"), (m1.Topic, Encoding.UTF8.GetString(m1.Payload.Span)));
        Assert.Equal("a/two", m2.Topic);
        Assert.Equal(big, m2.Payload.ToArray());
        Assert.Equal(1, m2.Qos);
    }

    [SkippableFact]
    public async Task Reconnects_after_the_broker_restarts_and_renews_subscriptions()
    {
        await using var broker = await Broker();
        await using var sub = Client(broker.EndPoint, "sub2");
        var got = Channel.CreateUnbounded<MqttMessage>();
        sub.MessageReceived = m => got.Writer.WriteAsync(m).AsTask();
        sub.Start();
        using var cts = new CancellationTokenSource(Deadline);
        await sub.SubscribeAsync("r/#", cts.Token);
        await WaitSubscribed(sub, "r/#");
        var down = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        sub.ConnectionChanged += () => { if (!sub.IsConnected) down.TrySetResult(); };
        await broker.StopAsync();
        await down.Task.WaitAsync(Deadline);
        await broker.StartAsync();
        await WaitSubscribed(sub, "r/#");
        await using var pub = Client(broker.EndPoint, "pub2");
        pub.Start();
        await pub.PublishAsync("r/x", "after"u8.ToArray(), 1, cts.Token);
        Assert.Equal("after", Encoding.UTF8.GetString((await got.Reader.ReadAsync(cts.Token)).Payload.Span));
        Assert.True(sub.Reconnects >= 1);
    }

    /// <summary>A scripted broker: accepts connections and hands each to the test.</summary>
    private sealed class FakeBroker : IAsyncDisposable
    {
        private readonly TcpListener _l = new(IPAddress.Loopback, 0);
        public FakeBroker() => _l.Start();
        public IPEndPoint EndPoint => (IPEndPoint)_l.LocalEndpoint;
        public async Task<(NetworkStream Stream, MqttConnect Connect)> AcceptAsync(CancellationToken ct)
        {
            var c = await _l.AcceptTcpClientAsync(ct);
            var s = c.GetStream();
            return (s, (MqttConnect)await ReadAsync(s, ct));
        }
        public static async Task<MqttPacket> ReadAsync(NetworkStream s, CancellationToken ct)
        {
            var buf = new List<byte>();
            var one = new byte[1];
            while (true)
            {
                var seq = new ReadOnlySequence<byte>(buf.ToArray());
                if (MqttPacket.TryRead(ref seq, 1 << 20, out var p)) return p;
                if (await s.ReadAsync(one, ct) == 0) throw new EndOfStreamException();
                buf.Add(one[0]);
            }
        }
        public ValueTask DisposeAsync()
        {
            _l.Stop();
            return ValueTask.CompletedTask;
        }
    }

    [Fact]
    public async Task Sends_pingreq_at_half_the_keepalive_and_drops_a_silent_broker()
    {
        await using var fake = new FakeBroker();
        await using var c = Client(fake.EndPoint, "pinger", TimeSpan.FromSeconds(1));
        c.Start();
        using var cts = new CancellationTokenSource(Deadline);
        var (s, connect) = await fake.AcceptAsync(cts.Token);
        Assert.Equal(("pinger", false, (ushort)1), (connect.ClientId, connect.CleanSession, connect.KeepAliveSeconds));
        await s.WriteAsync(new MqttConnAck(false, 0).ToArray(), cts.Token);
        Assert.Equal(MqttPacketType.PingReq, (await FakeBroker.ReadAsync(s, cts.Token)).Type);
        // never answer: the client gives up on the link after 1.5 keepalives and dials again
        var (s2, _) = await fake.AcceptAsync(cts.Token);
        await s2.WriteAsync(new MqttConnAck(false, 0).ToArray(), cts.Token);
        Assert.Contains("nothing from the broker", c.LastError, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_malformed_or_refusing_broker_is_reported_and_dialled_again()
    {
        await using var fake = new FakeBroker();
        await using var c = Client(fake.EndPoint, "x");
        c.Start();
        using var cts = new CancellationTokenSource(Deadline);
        var (s, _) = await fake.AcceptAsync(cts.Token);
        await s.WriteAsync(new byte[] { 0x20, 0x02, 0x00, 0x09 }, cts.Token); // CONNACK with a reserved return code
        var (s2, _) = await fake.AcceptAsync(cts.Token);
        Assert.Contains("reserved", c.LastError, StringComparison.Ordinal);
        await s2.WriteAsync(new MqttConnAck(false, 5).ToArray(), cts.Token);
        var (s3, _) = await fake.AcceptAsync(cts.Token);
        Assert.Contains("not authorized", c.LastError, StringComparison.Ordinal);
        await s3.WriteAsync(new MqttConnAck(false, 0).ToArray(), cts.Token);
        // QoS 1 publish waits for PUBACK; an unacknowledged one is sent again with DUP after a reconnect
        var publish = c.PublishAsync("t/1", "v"u8.ToArray(), 1, cts.Token);
        var p1 = (MqttPublish)await FakeBroker.ReadAsync(s3, cts.Token);
        Assert.False(p1.Dup);
        s3.Close();
        var (s4, _) = await fake.AcceptAsync(cts.Token);
        await s4.WriteAsync(new MqttConnAck(true, 0).ToArray(), cts.Token);
        var p2 = (MqttPublish)await FakeBroker.ReadAsync(s4, cts.Token);
        Assert.True(p2.Dup);
        Assert.Equal(p1.PacketId, p2.PacketId);
        Assert.False(publish.IsCompleted, $"{publish.Status} {publish.Exception}");
        await s4.WriteAsync(new MqttPacketId(MqttPacketType.PubAck, p2.PacketId).ToArray(), cts.Token);
        await publish.WaitAsync(Deadline);
    }
}
