using Weft.P2P.Dcutr;
using Xunit.Abstractions;
using Weft.P2P.Host;
using Weft.P2P.IO;
using Weft.P2P.Relay;
using Weft.Wire.Dcutr;
using Weft.Wire.Multiformats;
using static Weft.P2P.Tests.Host.Hosts;

namespace Weft.P2P.Tests.Dcutr;

public class DcutrTests(ITestOutputHelper output)
{
    private readonly Support.ListLoggerProvider _logs = new();

    private void Dump()
    {
        foreach (var (cat, level, msg) in _logs.Entries) output.WriteLine($"{level} {cat}: {msg}");
    }

    private sealed class Scene : IAsyncDisposable
    {
        public required Libp2pHost R { get; init; }
        public required Libp2pHost A { get; init; }
        public required Libp2pHost B { get; init; }
        public required DcutrService DA { get; init; }
        public required DcutrService DB { get; init; }
        public required RelayServer Server { get; init; }
        public required Multiaddr CircuitToB { get; init; }

        public async ValueTask DisposeAsync()
        {
            DA.Dispose();
            DB.Dispose();
            Server.Dispose();
            await A.DisposeAsync();
            await B.DisposeAsync();
            await R.DisposeAsync();
        }
    }

    /// <summary>R relays; B reserves on R; A will dial B through R. <paramref name="aListens"/> false leaves A without a listener.</summary>
    private async Task<Scene> StartAsync(bool aListens = true, DcutrOptions? options = null)
    {
        var r = await Weft.P2P.Tests.Host.Hosts.StartAsync();
        var server = RelayServer.Register(r, new RelayServerOptions { Limit = RelayLimitPolicy.Off });
        var a = await Weft.P2P.Tests.Host.Hosts.StartAsync(o => aListens ? o : o with { ListenAddresses = [] }, _logs);
        var b = await Weft.P2P.Tests.Host.Hosts.StartAsync(logs: _logs);
        RelayClient.Register(a);
        RelayClient.Register(b);
        var da = DcutrService.Register(a, options);
        var db = DcutrService.Register(b, options);
        var res = await RelayClient.ReserveAsync(b, AddressOf(r)).WaitAsync(Deadline);
        if (!aListens) await a.DialAsync(AddressOf(r)).WaitAsync(Deadline);
        return new Scene { R = r, A = a, B = b, DA = da, DB = db, Server = server, CircuitToB = res.CircuitAddresses[0].WithPeerId(b.PeerId) };
    }

    private static Task<DcutrResult> NextResult(DcutrService svc)
    {
        var tcs = new TaskCompletionSource<DcutrResult>(TaskCreationOptions.RunContinuationsAsynchronously);
        svc.Completed += r => tcs.TrySetResult(r);
        return tcs.Task.WaitAsync(Deadline);
    }

    [Fact]
    public async Task A_relayed_connection_is_upgraded_to_a_direct_one_and_new_streams_use_it()
    {
        await using var s = await StartAsync();
        var result = NextResult(s.DB);
        var relayed = await s.A.DialAsync(s.CircuitToB).WaitAsync(Deadline);
        Assert.True(relayed.IsRelayed);

        var r = await result;
        if (!r.Succeeded) Dump();
        Assert.True(r.Succeeded, r.Error);
        Assert.Equal(1, r.Attempts);
        Assert.Equal(s.A.PeerId, r.Peer);
        Assert.False(r.Direct!.IsRelayed);

        // Both sides now prefer the direct connection; the relayed one stays open as a fallback.
        var direct = await WaitForDirect(s.A, s.B.PeerId);
        Assert.False(direct.IsRelayed);
        Assert.Same(direct, s.A.GetConnection(s.B.PeerId));
        Assert.False(relayed.IsClosed);
        Assert.Contains(relayed, s.A.ConnectionsTo(s.B.PeerId));
        var payload = Pattern(300_000);
        Assert.Equal(payload, await EchoAsync(s.A.GetConnection(s.B.PeerId)!, payload));
        Assert.Equal(payload, await EchoAsync(relayed, payload));
    }

    [Fact]
    public async Task When_no_punch_can_work_it_tries_three_times_and_stays_relayed()
    {
        // A has no listener: its only address is the relay's view of an ephemeral dial port, where nothing listens.
        await using var s = await StartAsync(aListens: false, new DcutrOptions { PunchTimeout = TimeSpan.FromSeconds(2) });
        var result = NextResult(s.DB);
        var relayed = await s.A.DialAsync(s.CircuitToB).WaitAsync(Deadline);

        var r = await result;
        Assert.False(r.Succeeded);
        Assert.Equal(3, r.Attempts);
        Assert.NotNull(r.Error);
        Assert.Null(s.A.GetDirectConnection(s.B.PeerId));
        Assert.Same(relayed, s.A.GetConnection(s.B.PeerId));
        var payload = Pattern(50_000);
        Assert.Equal(payload, await EchoAsync(relayed, payload));
    }

    [Fact]
    public async Task A_DCUtR_stream_on_a_direct_connection_is_reset()
    {
        await using var s = await StartAsync();
        var conn = await s.A.DialAsync(AddressOf(s.B)).WaitAsync(Deadline);
        // The handler resets the stream at once: negotiation, the write or the read fails.
        await Assert.ThrowsAnyAsync<Exception>(async () =>
        {
            var stream = await conn.OpenStreamAsync(HolePunchMessage.ProtocolId, CancellationToken.None).WaitAsync(Deadline);
            new HolePunchMessage { Type = HolePunchType.Connect, ObsAddrs = [Multiaddr.Parse("/ip4/127.0.0.1/tcp/1")] }.WriteLengthPrefixedTo(stream.Output);
            await stream.Output.FlushAsync();
            while (true)
            {
                var r = await stream.Input.ReadAsync().AsTask().WaitAsync(Deadline);
                if (r.IsCompleted) throw new EndOfStreamException();
                stream.Input.AdvanceTo(r.Buffer.End);
            }
        });
        Assert.False(conn.IsClosed);
        Assert.Equal(Pattern(10), await EchoAsync(conn, Pattern(10)));
    }

    [Fact]
    public async Task A_malformed_DCUtR_message_fails_that_stream_only()
    {
        await using var s = await StartAsync(options: new DcutrOptions { AutoUpgrade = false });
        var relayed = await s.A.DialAsync(s.CircuitToB).WaitAsync(Deadline);
        var stream = await relayed.OpenStreamAsync(HolePunchMessage.ProtocolId, CancellationToken.None).WaitAsync(Deadline);
        await stream.Output.WriteAsync(new byte[] { 0x05, 0x08, 0x64, 0x12, 0x02, 0xff });
        await Assert.ThrowsAnyAsync<Exception>(async () =>
        {
            while (true)
            {
                var r = await stream.Input.ReadAsync().AsTask().WaitAsync(Deadline);
                if (r.IsCompleted) throw new EndOfStreamException();
                stream.Input.AdvanceTo(r.Buffer.End);
            }
        });
        Assert.False(relayed.IsClosed);
        Assert.Equal(Pattern(10), await EchoAsync(relayed, Pattern(10)));
    }

    private static async Task<Connection> WaitForDirect(Libp2pHost host, Wire.Identity.PeerId peer)
    {
        var tcs = new TaskCompletionSource<Connection>(TaskCreationOptions.RunContinuationsAsynchronously);
        void On(Connection c) { if (c.RemotePeer == peer && !c.IsRelayed) tcs.TrySetResult(c); }
        host.ConnectionOpened += On;
        try
        {
            if (host.GetDirectConnection(peer) is { } c) return c;
            return await tcs.Task.WaitAsync(Deadline);
        }
        finally { host.ConnectionOpened -= On; }
    }
}
