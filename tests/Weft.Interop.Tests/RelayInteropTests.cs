using System.Text.Json;
using System.Text.RegularExpressions;
using Weft.P2P.Echo;
using Weft.P2P.Host;
using Weft.P2P.IO;
using Weft.P2P.Relay;
using Weft.Wire.Identity;
using Weft.Wire.Multiformats;
using Weft.Wire.Relay;
using Xunit.Abstractions;

namespace Weft.Interop.Tests;

/// <summary>
/// Circuit relay v2 between Weft and js-libp2p 3.x: js relays carrying Weft circuits, Weft relays carrying js
/// circuits, and the limits each side announces and enforces (js puts Limit.duration in milliseconds on the wire).
/// </summary>
[Collection("js")]
public partial class RelayInteropTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Deadline = JsPeer.Deadline;

    /// <summary>js's default relay limits (constants.js): 2 minutes, 1 &lt;&lt; 17 bytes over both directions.</summary>
    private const uint JsDefaultDurationOnWire = 120_000;
    private const ulong DefaultDataLimit = 1 << 17;

    /// <summary>Well under the 128 KiB limit even with handshakes and identify (the echo counts twice).</summary>
    private const int SmallEcho = 16 * 1024;

    /// <summary>Well over the 128 KiB limit.</summary>
    private const int LargeEcho = 1 << 20;

    private const int BigEcho = 64 << 20;

    private sealed record JsNode(JsPeer Js, Multiaddr Addr, PeerId Id) : IAsyncDisposable
    {
        public ValueTask DisposeAsync() => Js.DisposeAsync();
    }

    private static async Task<Libp2pHost> StartWeft(CapturedLogs? logs = null, bool relayClient = true)
    {
        var host = new Libp2pHost(new HostOptions
        {
            Key = Ed25519PrivateKey.Generate(),
            ListenAddresses = [Multiaddr.Parse("/ip4/127.0.0.1/tcp/0")],
            Timeouts = new HostTimeouts { HandshakeStep = TimeSpan.FromSeconds(5) },
        }, logs);
        EchoService.Register(host);
        if (relayClient) RelayClient.Register(host);
        await host.StartAsync();
        return host;
    }

    private static Multiaddr WeftAddr(Libp2pHost h) => h.ListenAddresses[0].WithPeerId(h.PeerId);

    /// <summary>A js relay (<c>peer.mjs relay</c>) with js's default limits or none.</summary>
    private static async Task<JsNode> StartJsRelay(string limits)
    {
        var js = JsPeer.Start("relay", "--relay-limits", limits, "--seed", "weft-relay-" + Guid.NewGuid());
        try
        {
            var addr = Multiaddr.Parse((await js.WaitLine("LISTEN")).Trim());
            var ready = await js.WaitJson("READY");
            Assert.Equal(limits, ready.GetProperty("relay").GetString());
            Assert.Contains(RelayProtocol.HopProtocolId, Strings(ready, "protocols"));
            return new JsNode(js, addr, addr.PeerId!);
        }
        catch
        {
            await js.DisposeAsync();
            throw;
        }
    }

    /// <summary>
    /// A js listener that reserves on <paramref name="relay"/> and listens on its circuit address; js printing
    /// <c>CIRCUIT</c> means the relay granted the reservation and js accepted the answer.
    /// </summary>
    private static async Task<JsNode> StartJsListenerOnRelay(Multiaddr relay)
    {
        var js = JsPeer.Start("listen", "--reserve", relay.ToString(), "--seed", "weft-relayed-" + Guid.NewGuid());
        try
        {
            var id = PeerId.Parse((await js.WaitLine("PEER_ID")).Trim());
            var circuit = Multiaddr.Parse((await js.WaitLine("CIRCUIT")).Trim());
            Assert.True(circuit.IsCircuit);
            Assert.Equal(relay.Encapsulate("/p2p-circuit").WithPeerId(id), circuit);
            return new JsNode(js, circuit, id);
        }
        catch
        {
            await js.DisposeAsync();
            throw;
        }
    }

    private static List<string> Strings(JsonElement e, string name) =>
        e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Array ? v.EnumerateArray().Select(x => x.GetString()!).ToList() : [];

    private static Task<Connection> WaitForConnection(Libp2pHost host, Func<Connection, bool> match)
    {
        var tcs = new TaskCompletionSource<Connection>(TaskCreationOptions.RunContinuationsAsynchronously);
        host.ConnectionOpened += c => { if (match(c)) tcs.TrySetResult(c); };
        return tcs.Task;
    }

    private static byte[] Pattern(int n)
    {
        var data = new byte[n];
        for (var i = 0; i < n; i++) data[i] = (byte)(i % 251);
        return data;
    }

    /// <summary>
    /// Echoes <paramref name="n"/> pattern bytes on a new /echo/1.0.0 stream, checking every byte as it comes
    /// back; throws if the echo is short, differs, or the stream fails.
    /// </summary>
    private static async Task EchoAsync(Connection conn, int n, CancellationToken ct)
    {
        var data = Pattern(n);
        var s = await conn.OpenStreamAsync(EchoService.ProtocolId, ct);
        var send = Task.Run(async () =>
        {
            await s.Output.WriteAsync(data, ct);
            await s.Output.CompleteAsync();
        }, ct);
        try
        {
            long got = 0;
            while (true)
            {
                var r = await s.Input.ReadAsync(ct);
                foreach (var seg in r.Buffer)
                {
                    if (got + seg.Length > n) throw new InvalidDataException($"echo returned more than the {n} bytes sent");
                    if (!seg.Span.SequenceEqual(data.AsSpan((int)got, seg.Length)))
                        throw new InvalidDataException($"echo differs within the {seg.Length} bytes from offset {got}");
                    got += seg.Length;
                }
                s.Input.AdvanceTo(r.Buffer.End);
                if (r.IsCompleted) break;
            }
            if (got != n) throw new EndOfStreamException($"echo ended after {got} of {n} bytes");
            await send.WaitAsync(ct);
        }
        finally
        {
            _ = send.ContinueWith(static t => _ = t.Exception, TaskScheduler.Default);
            await s.DisposeAsync();
        }
    }

    private static async Task EchoOk(Connection conn, int n)
    {
        using var cts = new CancellationTokenSource(Deadline);
        await EchoAsync(conn, n, cts.Token);
    }

    /// <summary>One hop request on a new stream to the relay, answered by one hop message (as decoded from the wire).</summary>
    private static async Task<HopMessage> RawHopAsync(Libp2pHost host, Multiaddr relay, HopMessage request)
    {
        using var cts = new CancellationTokenSource(Deadline);
        var conn = await host.DialAsync(relay, cts.Token);
        var s = await conn.OpenStreamAsync(RelayProtocol.HopProtocolId, cts.Token);
        try
        {
            request.WriteLengthPrefixedTo(s.Output);
            await s.Output.FlushAsync(cts.Token);
            return (await s.Input.ReadAsync<HopMessage?>(HopMessage.TryRead, cts.Token))!;
        }
        finally
        {
            // For CONNECT this tears the circuit down again: only the relay's answer is wanted.
            s.Reset();
        }
    }

    /// <summary>The limit in the peer's RELAY_MSG lines of the given kind (hop STATUS / stop CONNECT).</summary>
    private static List<JsonElement> RelayLimits(JsPeer js, string proto) =>
        js.JsonLines("RELAY_MSG").Where(m => m.GetProperty("proto").GetString() == proto).Select(m => m.GetProperty("limit")).ToList();

    private static void AssertWireLimit(JsonElement limit, uint duration, ulong data)
    {
        Assert.Equal(JsonValueKind.Object, limit.ValueKind);
        Assert.Equal(duration, limit.GetProperty("duration").GetUInt32());
        Assert.Equal(data, limit.GetProperty("data").GetUInt64());
    }

    [GeneratedRegex(@"closed after (\d+) bytes: (.*)$")]
    private static partial Regex CircuitClosed();

    // ---------------------------------------------------------------- js relay, Weft clients

    [Fact]
    public async Task A_js_relay_without_limits_carries_a_weft_to_weft_circuit()
    {
        await using var relay = await StartJsRelay("off");
        await using var a = await StartWeft();
        await using var b = await StartWeft();

        var before = DateTimeOffset.UtcNow;
        var res = await RelayClient.ReserveAsync(b, relay.Addr).WaitAsync(Deadline);
        Assert.Equal(relay.Id, res.Relay);
        // js reservations last 2 h (reservationTtl 7200000 ms); the expiry is in whole seconds.
        Assert.InRange(res.Expire, before.AddHours(2).AddSeconds(-2), DateTimeOffset.UtcNow.AddHours(2).AddSeconds(2));
        Assert.Null(res.Limit);
        Assert.NotNull(res.Voucher); // signed by js and checked by Weft
        Assert.Equal(relay.Id, res.Voucher!.Relay);
        Assert.Equal(b.PeerId, res.Voucher.Peer);
        Assert.NotEmpty(res.CircuitAddresses);
        Assert.All(res.CircuitAddresses, c =>
        {
            Assert.True(c.IsCircuit);
            Assert.Contains("/p2p/" + relay.Id + "/p2p-circuit", c.ToString());
        });
        Assert.Equal(relay.Addr.Encapsulate("/p2p-circuit"), res.CircuitAddresses[0]);

        var accepted = WaitForConnection(b, c => c.RemotePeer == a.PeerId);
        var conn = await a.DialAsync(res.CircuitAddresses[0].WithPeerId(b.PeerId)).WaitAsync(Deadline);
        Assert.Equal(b.PeerId, conn.RemotePeer);
        Assert.True(conn.IsRelayed);
        var back = await accepted.WaitAsync(Deadline);
        Assert.True(back.IsRelayed);
        Assert.Equal(Direction.Inbound, back.Direction);

        await EchoOk(conn, 1 << 20);
    }

    [Fact]
    public async Task A_js_relay_with_default_limits_announces_them_in_ms_and_cuts_a_large_transfer()
    {
        await using var relay = await StartJsRelay("default");
        await using var a = await StartWeft();
        await using var b = await StartWeft();

        // What js puts on the wire: duration in MILLISECONDS (spec: seconds), data in bytes.
        var rawReserve = await RawHopAsync(a, relay.Addr, new HopMessage { Type = HopMessageType.Reserve });
        Assert.Equal(HopMessageType.Status, rawReserve.Type);
        Assert.Equal(RelayStatus.Ok, rawReserve.Status);
        Assert.Equal(JsDefaultDurationOnWire, rawReserve.Limit?.Duration);
        Assert.Equal(DefaultDataLimit, rawReserve.Limit?.Data);

        // How Weft reads it: 120000 is taken as milliseconds, i.e. 2 minutes.
        var res = await RelayClient.ReserveAsync(b, relay.Addr).WaitAsync(Deadline);
        Assert.Equal(new RelayCircuitLimit(TimeSpan.FromMinutes(2), DefaultDataLimit), res.Limit);

        // CONNECT is answered with the same limit.
        var rawConnect = await RawHopAsync(a, relay.Addr, new HopMessage { Type = HopMessageType.Connect, Peer = new RelayPeer(b.PeerId) });
        Assert.Equal(RelayStatus.Ok, rawConnect.Status);
        Assert.Equal(JsDefaultDurationOnWire, rawConnect.Limit?.Duration);
        Assert.Equal(DefaultDataLimit, rawConnect.Limit?.Data);
        Assert.Equal(TimeSpan.FromMinutes(2), RelayClient.DurationFromWire(rawConnect.Limit!.Duration!.Value));
        output.WriteLine($"js relay, default limits: RESERVE and CONNECT answers carry Limit.duration={rawConnect.Limit.Duration} Limit.data={rawConnect.Limit.Data}; Weft reads {res.Limit}");

        var circuit = res.CircuitAddresses[0].WithPeerId(b.PeerId);
        var conn = await a.DialAsync(circuit).WaitAsync(Deadline);
        Assert.True(conn.IsRelayed);
        await EchoOk(conn, SmallEcho);

        // Past 128 KiB (both directions together) js resets the circuit: the echo fails, promptly.
        using var cts = new CancellationTokenSource(Deadline);
        var ex = await Record.ExceptionAsync(() => EchoAsync(conn, LargeEcho, cts.Token));
        Assert.NotNull(ex);
        Assert.False(cts.IsCancellationRequested, "the echo hung instead of being cut: " + ex);
        await conn.Completion.ContinueWith(_ => { }).WaitAsync(Deadline);
        Assert.True(conn.IsClosed);
        output.WriteLine($"1 MiB echo through the js relay failed as expected: {ex!.GetType().Name}: {ex.Message}");
    }

    [Fact]
    public async Task A_js_relay_carries_weft_to_js_and_js_to_weft_circuits()
    {
        await using var relay = await StartJsRelay("off");
        await using var weft = await StartWeft();

        // Weft -> js: the js listener holds a reservation on the js relay.
        await using (var listener = await StartJsListenerOnRelay(relay.Addr))
        {
            var conn = await weft.DialAsync(listener.Addr).WaitAsync(Deadline);
            Assert.Equal(listener.Id, conn.RemotePeer);
            Assert.True(conn.IsRelayed);
            await EchoOk(conn, 1 << 20);
            var seen = await listener.Js.WaitJson("CONNECTION_OPEN", e => e.GetProperty("remotePeer").GetString() == weft.PeerId.ToString());
            Assert.True(seen.GetProperty("relayed").GetBoolean());
            Assert.Equal("inbound", seen.GetProperty("direction").GetString());
        }

        // js -> Weft: Weft holds a reservation on the js relay and serves /echo/1.0.0.
        var res = await RelayClient.ReserveAsync(weft, relay.Addr).WaitAsync(Deadline);
        var opened = WaitForConnection(weft, c => c.IsRelayed && c.Direction == Direction.Inbound);
        await using var dialer = JsPeer.Start("dial", res.CircuitAddresses[0].WithPeerId(weft.PeerId).ToString(), "echo", "--bytes", (1 << 20).ToString());
        var r = await dialer.WaitJson("RESULT");
        Assert.True(r.GetProperty("ok").GetBoolean());
        Assert.Equal(1 << 20, r.GetProperty("bytes").GetInt64());
        Assert.True(r.GetProperty("relayed").GetBoolean());
        Assert.Equal(JsonValueKind.Null, r.GetProperty("limits").ValueKind);
        Assert.Equal(0, await dialer.WaitExit());
        var inbound = await opened.WaitAsync(Deadline);
        Assert.Equal(dialer.Lines.First(l => l.StartsWith("PEER_ID ", StringComparison.Ordinal))[8..], inbound.RemotePeer.ToString());
        Assert.Equal(weft.PeerId.ToString(), Assert.Single(dialer.JsonLines("CONNECTED")).GetProperty("remotePeer").GetString());
    }

    // ---------------------------------------------------------------- Weft relay, js clients

    [Fact]
    public async Task A_weft_relay_without_limits_carries_64_MiB_between_js_peers()
    {
        var logs = new CapturedLogs();
        await using var relayHost = await StartWeft(logs, relayClient: false);
        using var server = RelayServer.Register(relayHost, new RelayServerOptions { Limit = RelayLimitPolicy.Off });
        var relayAddr = WeftAddr(relayHost);

        // js accepted Weft's reservation (and voucher): it listens on the circuit address.
        await using var listener = await StartJsListenerOnRelay(relayAddr);
        Assert.Equal(1, server.ReservationCount);
        var reserved = Assert.Single(RelayLimits(listener.Js, "hop"));
        Assert.Equal(JsonValueKind.Null, reserved.ValueKind);

        await using var dialer = JsPeer.Start("dial", listener.Addr.ToString(), "echo", "--bytes", BigEcho.ToString(), "--deadline-s", "90");
        var r = await dialer.WaitJson("RESULT", TimeSpan.FromSeconds(90));
        Assert.True(r.GetProperty("ok").GetBoolean(), r.ToString()); // js checked every byte and the length
        Assert.Equal(BigEcho, r.GetProperty("bytes").GetInt64());
        Assert.True(r.GetProperty("relayed").GetBoolean());
        Assert.Equal(JsonValueKind.Null, r.GetProperty("limits").ValueKind);
        Assert.Equal(JsonValueKind.Null, Assert.Single(RelayLimits(dialer, "hop")).ValueKind);
        Assert.Equal(0, await dialer.WaitExit());
        output.WriteLine($"64 MiB echo js -> Weft relay (limits off) -> js: {r.GetProperty("mibPerSec").GetDouble():0.0} MiB/s each way, {r.GetProperty("seconds").GetDouble():0.000} s");

        // The dialer is gone, so the circuit ends; the relay carried both directions.
        var closed = CircuitClosed().Match(await logs.WaitFor("closed after").WaitAsync(Deadline));
        Assert.True(closed.Success);
        Assert.True(long.Parse(closed.Groups[1].Value) >= 2L * BigEcho, closed.Value);
        output.WriteLine("Weft relay: circuit " + closed.Value);
    }

    [Fact]
    public async Task A_weft_relay_with_default_limits_announces_seconds_to_js_and_cuts_a_large_transfer()
    {
        var logs = new CapturedLogs();
        await using var relayHost = await StartWeft(logs, relayClient: false);
        using var server = RelayServer.Register(relayHost, new RelayServerOptions { Limit = RelayLimitPolicy.Default });
        var relayAddr = WeftAddr(relayHost);

        await using var listener = await StartJsListenerOnRelay(relayAddr);
        Assert.Equal(1, server.ReservationCount);
        // Weft sends the spec's seconds: 120, and 131072 bytes.
        AssertWireLimit(Assert.Single(RelayLimits(listener.Js, "hop")), 120, DefaultDataLimit);

        JsonElement dialerLimits, listenerLimits;
        await using (var small = JsPeer.Start("dial", listener.Addr.ToString(), "echo", "--bytes", SmallEcho.ToString()))
        {
            var connected = await small.WaitJson("CONNECTED");
            var r = await small.WaitJson("RESULT");
            Assert.True(r.GetProperty("ok").GetBoolean());
            Assert.True(r.GetProperty("relayed").GetBoolean());
            Assert.Equal(0, await small.WaitExit());
            AssertWireLimit(Assert.Single(RelayLimits(small, "hop")), 120, DefaultDataLimit);

            // js reads 120 as seconds (LimitTracker: duration * 1000 ms) and counts the data budget down.
            dialerLimits = connected.GetProperty("limits");
            Assert.InRange(dialerLimits.GetProperty("seconds").GetInt32(), 100, 120);
            Assert.InRange(dialerLimits.GetProperty("bytes").GetInt64(), 100_000, (long)DefaultDataLimit);
            var used = dialerLimits.GetProperty("bytes").GetInt64() - r.GetProperty("limits").GetProperty("bytes").GetInt64();
            Assert.True(used >= 2 * SmallEcho, $"js counted {used} bytes for a {SmallEcho}-byte echo");

            var inbound = await listener.Js.WaitJson("CONNECTION_OPEN", e => e.GetProperty("relayed").GetBoolean() && e.GetProperty("direction").GetString() == "inbound");
            listenerLimits = inbound.GetProperty("limits");
            Assert.InRange(listenerLimits.GetProperty("seconds").GetInt32(), 100, 120);
            AssertWireLimit(Assert.Single(RelayLimits(listener.Js, "stop")), 120, DefaultDataLimit);
        }
        output.WriteLine($"Weft relay, default limits: js reads Limit.duration=120 Limit.data=131072 as dialer limits {dialerLimits} and listener limits {listenerLimits} (seconds and bytes left)");

        // Past 128 KiB the Weft relay resets the circuit and the js echo fails.
        await using var large = JsPeer.Start("dial", listener.Addr.ToString(), "echo", "--bytes", LargeEcho.ToString(), "--deadline-s", "30");
        var error = await large.WaitLine("ERROR");
        Assert.DoesNotContain("Deadline", error);
        Assert.Equal(1, await large.WaitExit());
        Assert.Empty(large.JsonLines("RESULT"));
        var cut = await logs.WaitFor("data limit").WaitAsync(Deadline);
        output.WriteLine($"1 MiB js echo through the Weft relay failed as expected: {error}; relay: {cut}");
    }
}
