using System.Buffers;
using Weft.P2P.AutoNat;
using Weft.P2P.Host;
using Weft.P2P.IO;
using Weft.P2P.Relay;
using Weft.P2P.Tests.Support;
using Weft.P2P.Yamux;
using Weft.Wire.AutoNat;
using Weft.Wire.Identity;
using Weft.Wire.Multiformats;
using static Weft.P2P.Tests.AutoNat.AutoNatScene;
using static Weft.P2P.Tests.Host.Hosts;

namespace Weft.P2P.Tests.AutoNat;

public class AutoNatServerTests
{
    [Fact]
    public async Task A_listening_peer_is_dialled_back_on_its_listen_address()
    {
        await using var s = await StartAsync();
        using var server = AutoNatServer.Register(s, LoopbackServer);
        await using var c = await StartAsync();
        var dialledBack = new TaskCompletionSource<Connection>(TaskCreationOptions.RunContinuationsAsynchronously);
        c.ConnectionOpened += conn => { if (conn.RemotePeer == s.PeerId && conn.Direction == Direction.Inbound) dialledBack.TrySetResult(conn); };
        var conn = await ConnectAsync(c, s);

        var answer = await RequestAsync(conn, AutoNatMessage.DialRequest(c.PeerId, [c.ListenAddresses[0]]));
        Assert.Equal(AutoNatResponseStatus.Ok, answer.Status);
        Assert.Equal(c.ListenAddresses[0], answer.Addr);
        var back = await dialledBack.Task.WaitAsync(Deadline);
        Assert.False(back.IsRelayed);
        await back.Completion.ContinueWith(_ => { }).WaitAsync(Deadline); // the dial-back is closed again
        Assert.False(conn.IsClosed);
        Assert.Equal(0, server.ActiveDialBacks);
    }

    [Fact]
    public async Task A_peer_that_accepts_nothing_gets_dial_error()
    {
        await using var s = await StartAsync();
        using var server = AutoNatServer.Register(s, LoopbackServer);
        await using var c = await StartAsync(o => o with { ListenAddresses = [] });
        var conn = await ConnectAsync(c, s);
        // Its observed address (the ephemeral dial port) is tried too: nothing listens there either.
        var answer = await RequestAsync(conn, AutoNatMessage.DialRequest(c.PeerId, [DeadAddress()]));
        Assert.Equal(AutoNatResponseStatus.DialError, answer.Status);
        Assert.Null(answer.Addr);
    }

    [Fact]
    public async Task Addresses_at_another_ip_are_never_dialled()
    {
        await using var s = await StartAsync();
        using var server = AutoNatServer.Register(s, LoopbackServer);
        await using var c = await StartAsync();
        var (third, thirdAddr) = Silent("127.0.0.2");
        try
        {
            var conn = await ConnectAsync(c, s);
            var ok = await RequestAsync(conn, AutoNatMessage.DialRequest(c.PeerId, [thirdAddr, c.ListenAddresses[0]]));
            Assert.Equal(AutoNatResponseStatus.Ok, ok.Status);
            Assert.Equal(c.ListenAddresses[0], ok.Addr);

            var onlyThird = await RequestAsync(conn, AutoNatMessage.DialRequest(c.PeerId, [thirdAddr]));
            Assert.Equal(AutoNatResponseStatus.DialError, onlyThird.Status); // only the observed address was tried
            Assert.False(third.Pending());
        }
        finally
        {
            third.Stop();
        }
    }

    [Fact]
    public async Task Addresses_with_another_peer_id_or_not_tcp_are_not_dialled()
    {
        await using var s = await StartAsync();
        using var server = AutoNatServer.Register(s, LoopbackServer);
        await using var c = await StartAsync(o => o with { ListenAddresses = [] });
        var (silent, silentAddr) = Silent();
        try
        {
            var conn = await ConnectAsync(c, s);
            var other = Ed25519PrivateKey.Generate().PeerId;
            var answer = await RequestAsync(conn, AutoNatMessage.DialRequest(c.PeerId,
            [
                silentAddr.WithPeerId(other),
                Multiaddr.Parse($"/ip4/127.0.0.1/udp/{silentAddr.Components[1].Port}/quic-v1"),
                Multiaddr.Parse($"/dns4/localhost/tcp/{silentAddr.Components[1].Port}"),
            ]));
            Assert.Equal(AutoNatResponseStatus.DialError, answer.Status);
            Assert.False(silent.Pending());
        }
        finally
        {
            silent.Stop();
        }
    }

    [Fact]
    public async Task A_request_over_a_relayed_connection_is_refused_and_nothing_is_dialled()
    {
        await using var r = await StartAsync();
        using var relay = RelayServer.Register(r, new RelayServerOptions { Limit = RelayLimitPolicy.Off });
        await using var s = await StartAsync();
        RelayClient.Register(s);
        using var server = AutoNatServer.Register(s, LoopbackServer);
        var reservation = await RelayClient.ReserveAsync(s, AddressOf(r)).WaitAsync(Deadline);
        await using var c = await StartAsync();
        var dialsFromServer = 0;
        c.ConnectionOpened += conn => { if (conn.RemotePeer == s.PeerId && !conn.IsRelayed) Interlocked.Increment(ref dialsFromServer); };
        var (third, thirdAddr) = Silent("127.0.0.2");
        try
        {
            var relayed = await RelayClient.DialViaRelayAsync(c, reservation.CircuitAddresses[0].WithPeerId(s.PeerId)).WaitAsync(Deadline);
            Assert.True(relayed.IsRelayed);
            var answer = await RequestAsync(relayed, AutoNatMessage.DialRequest(c.PeerId, [thirdAddr, c.ListenAddresses[0]]));
            Assert.Equal(AutoNatResponseStatus.DialRefused, answer.Status);
            Assert.False(third.Pending());
            Assert.Equal(0, Volatile.Read(ref dialsFromServer));
        }
        finally
        {
            third.Stop();
        }
    }

    [Fact]
    public async Task Loopback_and_private_addresses_follow_the_options()
    {
        await using var s = await StartAsync();
        using var server = AutoNatServer.Register(s); // loopback not allowed by default
        await using var c = await StartAsync();
        var conn = await ConnectAsync(c, s);
        var answer = await RequestAsync(conn, AutoNatMessage.DialRequest(c.PeerId, [c.ListenAddresses[0]]));
        Assert.Equal(AutoNatResponseStatus.DialRefused, answer.Status);

        Assert.True(AddressPolicy.IsPrivate(System.Net.IPAddress.Parse("10.250.0.7")));
        Assert.True(AddressPolicy.IsPrivate(System.Net.IPAddress.Parse("172.20.1.1")));
        Assert.True(AddressPolicy.IsPrivate(System.Net.IPAddress.Parse("192.168.1.1")));
        Assert.True(AddressPolicy.IsPrivate(System.Net.IPAddress.Parse("100.64.0.1")));
        Assert.True(AddressPolicy.IsPrivate(System.Net.IPAddress.Parse("fd00::1")));
        Assert.True(AddressPolicy.IsPrivate(System.Net.IPAddress.Parse("::ffff:10.0.0.1")));
        Assert.False(AddressPolicy.IsPrivate(System.Net.IPAddress.Parse("172.32.0.1")));
        Assert.False(AddressPolicy.IsPrivate(System.Net.IPAddress.Parse("8.8.8.8")));
        Assert.False(AddressPolicy.IsPrivate(System.Net.IPAddress.Parse("2001:db8::1")));
        Assert.True(AddressPolicy.IsUnusable(System.Net.IPAddress.Parse("0.0.0.0")));
        Assert.True(AddressPolicy.IsUnusable(System.Net.IPAddress.Parse("224.0.0.1")));
        Assert.True(AddressPolicy.IsUnusable(System.Net.IPAddress.Parse("ff02::1")));
        Assert.False(AddressPolicy.IsUnusable(System.Net.IPAddress.Parse("10.0.0.1")));
        Assert.True(new AutoNatServerOptions().AllowPrivateAddresses);
    }

    [Fact]
    public async Task The_per_peer_rate_limit_refuses_and_other_peers_still_get_served()
    {
        await using var s = await StartAsync();
        using var server = AutoNatServer.Register(s, LoopbackServer with { PeerRequestsPerMinute = 2 });
        await using var c = await StartAsync();
        await using var d = await StartAsync();
        var conn = await ConnectAsync(c, s);
        var request = AutoNatMessage.DialRequest(c.PeerId, [c.ListenAddresses[0]]);
        Assert.Equal(AutoNatResponseStatus.Ok, (await RequestAsync(conn, request)).Status);
        Assert.Equal(AutoNatResponseStatus.Ok, (await RequestAsync(conn, request)).Status);
        var refused = await RequestAsync(conn, request);
        Assert.Equal(AutoNatResponseStatus.DialRefused, refused.Status);
        Assert.Equal("too many dials", refused.StatusText);

        var other = await ConnectAsync(d, s);
        Assert.Equal(AutoNatResponseStatus.Ok, (await RequestAsync(other, AutoNatMessage.DialRequest(d.PeerId, [d.ListenAddresses[0]]))).Status);
    }

    [Fact]
    public async Task The_global_rate_limit_refuses_and_resets_after_the_window()
    {
        var clock = new ManualTimeProvider();
        await using var s = new Libp2pHost(new HostOptions
        {
            Key = Ed25519PrivateKey.Generate(),
            ListenAddresses = [Multiaddr.Parse("/ip4/127.0.0.1/tcp/0")],
            Yamux = new YamuxOptions { KeepAliveInterval = TimeSpan.Zero },
        }, time: clock);
        await s.StartAsync();
        using var server = AutoNatServer.Register(s, LoopbackServer with { GlobalRequestsPerMinute = 1 });
        await using var c = await StartAsync();
        await using var d = await StartAsync();
        var cs = await ConnectAsync(c, s);
        var ds = await ConnectAsync(d, s);
        var fromD = AutoNatMessage.DialRequest(d.PeerId, [d.ListenAddresses[0]]);
        Assert.Equal(AutoNatResponseStatus.Ok, (await RequestAsync(cs, AutoNatMessage.DialRequest(c.PeerId, [c.ListenAddresses[0]]))).Status);
        Assert.Equal(AutoNatResponseStatus.DialRefused, (await RequestAsync(ds, fromD)).Status);
        clock.Advance(AutoNatServer.ThrottleWindow);
        Assert.Equal(AutoNatResponseStatus.Ok, (await RequestAsync(ds, fromD)).Status);
    }

    [Fact]
    public async Task Dial_backs_are_capped_bounded_in_time_and_in_addresses()
    {
        await using var s = await StartAsync();
        using var server = AutoNatServer.Register(s, LoopbackServer with
        {
            MaxConcurrentDialBacks = 1,
            MaxAddressesPerRequest = 2,
            DialTimeout = TimeSpan.FromSeconds(1),
        });
        await using var c = await StartAsync(o => o with { ListenAddresses = [] });
        await using var d = await StartAsync();
        var silent = Enumerable.Range(0, 4).Select(_ => Silent()).ToList();
        try
        {
            var conn = await ConnectAsync(c, s);
            var accepted = silent[0].Listener.AcceptTcpClientAsync();
            var started = DateTime.UtcNow;
            // Observed address + the first listed one make the two allowed; the other three are never tried.
            var hanging = RequestAsync(conn, AutoNatMessage.DialRequest(c.PeerId, silent.Select(x => x.Address).ToList()));
            using var first = await accepted.WaitAsync(Deadline);
            Assert.Equal(1, server.ActiveDialBacks);

            var other = await ConnectAsync(d, s);
            var busy = await RequestAsync(other, AutoNatMessage.DialRequest(d.PeerId, [d.ListenAddresses[0]]));
            Assert.Equal(AutoNatResponseStatus.DialRefused, busy.Status);

            var timedOut = await hanging;
            Assert.Equal(AutoNatResponseStatus.DialError, timedOut.Status);
            Assert.True(DateTime.UtcNow - started >= TimeSpan.FromSeconds(0.9));
            Assert.All(silent.Skip(1), x => Assert.False(x.Listener.Pending()));
            Assert.Equal(0, server.ActiveDialBacks);
            Assert.Equal(AutoNatResponseStatus.Ok, (await RequestAsync(other, AutoNatMessage.DialRequest(d.PeerId, [d.ListenAddresses[0]]))).Status);
        }
        finally
        {
            foreach (var x in silent) x.Listener.Stop();
        }
    }

    [Fact]
    public async Task Malformed_and_wrong_requests_get_bad_request_and_the_connection_keeps_serving()
    {
        await using var s = await StartAsync();
        using var server = AutoNatServer.Register(s, LoopbackServer);
        await using var c = await StartAsync();
        var conn = await ConnectAsync(c, s);

        // A group wire type, and a frame longer than the limit.
        Assert.Equal(AutoNatResponseStatus.BadRequest, (await RawAsync(conn, [0x02, 0x0b, 0x00])).Status);
        Assert.Equal(AutoNatResponseStatus.BadRequest, (await RawAsync(conn, Varint.Encode(AutoNatMessage.MaxMessageLength + 1))).Status);

        var other = Ed25519PrivateKey.Generate().PeerId;
        var wrongPeer = await RequestAsync(conn, AutoNatMessage.DialRequest(other, [c.ListenAddresses[0]]));
        Assert.Equal(AutoNatResponseStatus.BadRequest, wrongPeer.Status);
        Assert.Equal(AutoNatResponseStatus.BadRequest, (await RequestAsync(conn, new AutoNatMessage { Type = AutoNatMessageType.Dial })).Status);
        Assert.Equal(AutoNatResponseStatus.BadRequest, (await RequestAsync(conn, new AutoNatMessage { Type = AutoNatMessageType.Dial, Dial = new AutoNatDial() })).Status);
        Assert.Equal(AutoNatResponseStatus.BadRequest, (await RequestAsync(conn, AutoNatMessage.Response(AutoNatResponseStatus.Ok))).Status);

        Assert.False(conn.IsClosed);
        // No id is fine (it is optional): the connection's peer is dialled.
        var noId = new AutoNatMessage { Type = AutoNatMessageType.Dial, Dial = new AutoNatDial { Peer = new AutoNatPeerInfo { Addrs = [c.ListenAddresses[0]] } } };
        var ok = await RequestAsync(conn, noId);
        Assert.Equal(AutoNatResponseStatus.Ok, ok.Status);
        Assert.Same(conn, c.GetDirectConnection(s.PeerId));
    }

    [Fact]
    public async Task No_dialable_address_is_refused()
    {
        await using var s = await StartAsync();
        using var server = AutoNatServer.Register(s, LoopbackServer);
        await using var c = await StartAsync();
        // c dialled by s: the connection is outbound for s, so no observed address is added.
        var conn = await s.DialAsync(AddressOf(c)).WaitAsync(Deadline);
        var back = await WaitForConnection(c, s.PeerId);
        await back.Identified.WaitAsync(Deadline);
        var answer = await RequestAsync(back, AutoNatMessage.DialRequest(c.PeerId, [Multiaddr.Parse("/ip4/127.0.0.2/tcp/4001")]));
        Assert.Equal(AutoNatResponseStatus.DialRefused, answer.Status);
        Assert.Equal("no dialable addresses", answer.StatusText);
        Assert.False(conn.IsClosed);
    }

    private static async Task<AutoNatDialResponse> RawAsync(Connection conn, byte[] bytes)
    {
        var stream = await conn.OpenStreamAsync(AutoNatMessage.ProtocolId, CancellationToken.None).WaitAsync(Deadline);
        await stream.Output.WriteAsync(bytes);
        var answer = await stream.Input.ReadAsync<AutoNatMessage?>(AutoNatMessage.TryRead, CancellationToken.None).AsTask().WaitAsync(Deadline);
        await stream.DisposeAsync();
        return answer!.DialResponse!;
    }
}
