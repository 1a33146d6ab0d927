using System.Text.Json;
using Weft.P2P.Echo;
using Weft.P2P.Host;
using Weft.P2P.Perf;
using Weft.P2P.Ping;
using Weft.Wire.Identity;
using Weft.Wire.Multiformats;

namespace Weft.Interop.Tests;

/// <summary>Weft against js-libp2p 3.x (an independent implementation), both directions.</summary>
[Collection("js")]
public class JsInteropTests
{
    private static readonly TimeSpan Deadline = JsPeer.Deadline;

    private static async Task<Libp2pHost> StartWeft(byte[]? psk = null)
    {
        var host = new Libp2pHost(new HostOptions
        {
            Key = Ed25519PrivateKey.Generate(),
            ListenAddresses = [Multiaddr.Parse("/ip4/127.0.0.1/tcp/0")],
            PrivateNetworkKey = psk,
            Timeouts = new HostTimeouts { HandshakeStep = TimeSpan.FromSeconds(5) },
        });
        PingService.Register(host);
        EchoService.Register(host);
        PerfService.Register(host);
        await host.StartAsync();
        return host;
    }

    private static Multiaddr WeftAddr(Libp2pHost h) => h.ListenAddresses[0].Encapsulate("/p2p/" + h.PeerId);

    private static async Task<(JsPeer Js, Multiaddr Addr)> StartJsListener(params string[] extra)
    {
        var js = JsPeer.Start(["listen", "--port", "0", "--seed", "weft-interop-" + Guid.NewGuid(), .. extra]);
        var line = await js.WaitLine("LISTEN");
        return (js, Multiaddr.Parse(line.Trim()));
    }

    private static List<string> Strings(JsonElement e, string name) =>
        e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Array ? v.EnumerateArray().Select(x => x.GetString()!).ToList() : [];

    [Fact]
    public async Task Weft_dials_js_and_identify_is_right_both_ways()
    {
        await using var weft = await StartWeft();
        var (js, addr) = await StartJsListener();
        await using (js)
        {
            var conn = await weft.DialAsync(addr).WaitAsync(Deadline);
            Assert.Equal(addr.PeerId, conn.RemotePeer);

            // What Weft learned about js.
            var id = await conn.Identified.WaitAsync(Deadline);
            Assert.NotNull(id);
            Assert.StartsWith("js-libp2p/", id!.AgentVersion);
            Assert.Contains("/ipfs/ping/1.0.0", id.Protocols);
            Assert.Contains("/echo/1.0.0", id.Protocols);
            Assert.Contains("/perf/1.0.0", id.Protocols);
            Assert.Contains(addr.WithoutPeerId(), id.ListenAddrs);
            Assert.Equal(conn.LocalAddress, id.ObservedAddr?.WithoutPeerId());
            Assert.True(conn.RemotePeer.Matches(PublicKey.FromProtobuf(id.PublicKey)));

            // What js learned about Weft.
            var seen = await js.WaitJson("IDENTIFY");
            Assert.Equal(weft.PeerId.ToString(), seen.GetProperty("peerId").GetString());
            Assert.StartsWith("weft/", seen.GetProperty("agentVersion").GetString());
            Assert.Equal("ipfs/0.1.0", seen.GetProperty("protocolVersion").GetString());
            Assert.Contains("/ipfs/ping/1.0.0", Strings(seen, "protocols"));
            Assert.Contains("/ipfs/id/push/1.0.0", Strings(seen, "protocols"));
            Assert.Contains(weft.ListenAddresses[0].ToString(), Strings(seen, "listenAddrs").Select(a => Multiaddr.Parse(a).WithoutPeerId().ToString()));
            Assert.Equal(Convert.ToHexString(weft.Options.Key.PublicKey.ToProtobuf()).ToLowerInvariant(), seen.GetProperty("publicKey").GetString()!.ToLowerInvariant());
            if (seen.TryGetProperty("observedAddr", out var obs) && obs.ValueKind == JsonValueKind.String)
                Assert.Equal(conn.RemoteAddress, Multiaddr.Parse(obs.GetString()!).WithoutPeerId());
        }
    }

    [Fact]
    public async Task Js_dials_weft_and_identify_is_right_both_ways()
    {
        await using var weft = await StartWeft();
        var opened = new TaskCompletionSource<Connection>(TaskCreationOptions.RunContinuationsAsynchronously);
        weft.ConnectionOpened += c => opened.TrySetResult(c);
        await using var js = JsPeer.Start("dial", WeftAddr(weft).ToString(), "identify");
        var seen = await js.WaitJson("IDENTIFY");
        Assert.Equal(weft.PeerId.ToString(), seen.GetProperty("peerId").GetString());
        Assert.StartsWith("weft/", seen.GetProperty("agentVersion").GetString());
        Assert.Contains("/echo/1.0.0", Strings(seen, "protocols"));
        Assert.Contains("/perf/1.0.0", Strings(seen, "protocols"));
        Assert.Contains(weft.ListenAddresses[0].ToString(), Strings(seen, "listenAddrs").Select(a => Multiaddr.Parse(a).WithoutPeerId().ToString()));
        Assert.Equal(Convert.ToHexString(weft.Options.Key.PublicKey.ToProtobuf()).ToLowerInvariant(), seen.GetProperty("publicKey").GetString()!.ToLowerInvariant());

        var conn = await opened.Task.WaitAsync(Deadline);
        var id = await conn.Identified.WaitAsync(Deadline);
        Assert.NotNull(id);
        Assert.StartsWith("js-libp2p/", id!.AgentVersion);
        Assert.Equal(conn.LocalAddress, id.ObservedAddr?.WithoutPeerId());
        // js reports the address Weft told it it was observed at: its own socket address.
        var self = await js.WaitLine("SELF_OBSERVED");
        Assert.Equal(conn.RemoteAddress, Multiaddr.Parse(self.Trim()).WithoutPeerId());
        Assert.Equal(0, await js.WaitExit());
    }

    [Fact]
    public async Task Ping_works_both_ways()
    {
        await using var weft = await StartWeft();
        var (js, addr) = await StartJsListener();
        await using (js)
        {
            var conn = await weft.DialAsync(addr).WaitAsync(Deadline);
            await using var ps = await PingService.OpenAsync(conn, default).WaitAsync(Deadline);
            for (var i = 0; i < 3; i++) Assert.True(await PingService.PingAsync(ps, weft.Time, default).WaitAsync(Deadline) > TimeSpan.Zero);
        }
        await using var dialer = JsPeer.Start("dial", WeftAddr(weft).ToString(), "ping", "--count", "3");
        var r = await dialer.WaitJson("RESULT");
        Assert.Equal(0, await dialer.WaitExit());
        Assert.True(r.ValueKind == JsonValueKind.Object);
    }

    [Fact]
    public async Task Echo_16_MiB_both_ways()
    {
        const int n = 16 << 20;
        await using var weft = await StartWeft();
        var (js, addr) = await StartJsListener();
        await using (js)
        {
            var conn = await weft.DialAsync(addr).WaitAsync(Deadline);
            var s = await conn.OpenStreamAsync(EchoService.ProtocolId, default).WaitAsync(Deadline);
            var data = new byte[n];
            for (var i = 0; i < n; i++) data[i] = (byte)(i % 251);
            var send = Task.Run(async () => { await s.Output.WriteAsync(data); await s.Output.CompleteAsync(); });
            var got = new MemoryStream();
            await s.Input.CopyToAsync(got).WaitAsync(Deadline);
            await send.WaitAsync(Deadline);
            Assert.Equal(n, got.Length);
            Assert.True(data.AsSpan().SequenceEqual(got.ToArray()));
            await s.DisposeAsync();
        }
        await using var dialer = JsPeer.Start("dial", WeftAddr(weft).ToString(), "echo", "--bytes", n.ToString());
        var r = await dialer.WaitJson("RESULT");
        Assert.True(r.GetProperty("ok").GetBoolean());
        Assert.Equal(n, r.GetProperty("bytes").GetInt64());
        Assert.Equal(0, await dialer.WaitExit());
    }

    [Fact]
    public async Task Perf_both_ways()
    {
        await using var weft = await StartWeft();
        var (js, addr) = await StartJsListener();
        await using (js)
        {
            var conn = await weft.DialAsync(addr).WaitAsync(Deadline);
            var r = await PerfService.RunAsync(conn, 32 << 20, 32 << 20, weft.Time, default).WaitAsync(Deadline);
            Assert.Equal(32 << 20, r.DownloadBytes);
            Assert.True(r.UploadSeconds > 0 && r.DownloadSeconds > 0);
        }
        await using var dialer = JsPeer.Start("dial", WeftAddr(weft).ToString(), "perf", "--upload", (32 << 20).ToString(), "--download", (32 << 20).ToString());
        var jr = await dialer.WaitJson("RESULT");
        Assert.Equal(32 << 20, jr.GetProperty("uploadBytes").GetInt64());
        Assert.Equal(32 << 20, jr.GetProperty("downloadBytes").GetInt64());
        Assert.Equal(0, await dialer.WaitExit());
    }

    [Fact]
    public async Task Muxer_is_negotiated_both_ways_in_the_handshake_and_by_multistream()
    {
        await using var weft = await StartWeft();
        var (inline, inlineAddr) = await StartJsListener();
        await using (inline)
        {
            var conn = await weft.DialAsync(inlineAddr).WaitAsync(Deadline);
            Assert.True(conn.MuxerInHandshake);
        }
        var (plain, plainAddr) = await StartJsListener("--muxer-inline", "off");
        await using (plain)
        {
            var conn = await weft.DialAsync(plainAddr).WaitAsync(Deadline);
            Assert.False(conn.MuxerInHandshake);
            Assert.Equal("/yamux/1.0.0", conn.Muxer);
            await using var ps = await PingService.OpenAsync(conn, default).WaitAsync(Deadline);
            await PingService.PingAsync(ps, weft.Time, default).WaitAsync(Deadline);
        }
        var opened = new TaskCompletionSource<Connection>(TaskCreationOptions.RunContinuationsAsynchronously);
        weft.ConnectionOpened += c => opened.TrySetResult(c);
        await using var dialer = JsPeer.Start("dial", WeftAddr(weft).ToString(), "echo", "--bytes", "1048576", "--muxer-inline", "off");
        Assert.True((await dialer.WaitJson("RESULT")).GetProperty("ok").GetBoolean());
        Assert.False((await opened.Task.WaitAsync(Deadline)).MuxerInHandshake);
        Assert.Equal(0, await dialer.WaitExit());
    }

    private static string WritePsk(string hex)
    {
        var path = Path.Combine(Path.GetTempPath(), "weft-psk-" + Guid.NewGuid() + ".key");
        File.WriteAllText(path, "/key/swarm/psk/1.0.0/\n/base16/\n" + hex);
        return path;
    }

    [Fact]
    public async Task Psk_on_both_sides_works_both_ways_and_a_mismatch_is_refused_on_both_sides()
    {
        var good = WritePsk(string.Concat(Enumerable.Range(0, 32).Select(i => i.ToString("x2"))));
        var bad = WritePsk(string.Concat(Enumerable.Range(100, 32).Select(i => i.ToString("x2"))));
        try
        {
            var key = Weft.Wire.Pnet.PskFile.ParseKey(File.ReadAllBytes(good));
            await using var weft = await StartWeft(key);
            var (js, addr) = await StartJsListener("--psk", good);
            await using (js)
            {
                var conn = await weft.DialAsync(addr).WaitAsync(Deadline);
                await using var ps = await PingService.OpenAsync(conn, default).WaitAsync(Deadline);
                await PingService.PingAsync(ps, weft.Time, default).WaitAsync(Deadline);
            }
            await using (var dialer = JsPeer.Start("dial", WeftAddr(weft).ToString(), "ping", "--count", "2", "--psk", good))
            {
                await dialer.WaitJson("RESULT");
                Assert.Equal(0, await dialer.WaitExit());
            }

            // Mismatch: Weft dialling js fails with a clear error, and so does js dialling Weft.
            var (js2, addr2) = await StartJsListener("--psk", bad);
            await using (js2)
            {
                var ex = await Assert.ThrowsAsync<DialFailedException>(() => weft.DialAsync(addr2)).WaitAsync(Deadline);
                Assert.True(ex.Message.Contains("PSK"), ex.Message);
            }
            var before = weft.ConnectionCount;
            await using (var dialer = JsPeer.Start("dial", WeftAddr(weft).ToString(), "ping", "--count", "1", "--psk", bad))
            {
                await dialer.WaitLine("ERROR");
                Assert.Equal(1, await dialer.WaitExit());
            }
            Assert.Equal(before, weft.ConnectionCount);
        }
        finally
        {
            File.Delete(good);
            File.Delete(bad);
        }
    }
}

[CollectionDefinition("js", DisableParallelization = true)]
public class JsCollection;
