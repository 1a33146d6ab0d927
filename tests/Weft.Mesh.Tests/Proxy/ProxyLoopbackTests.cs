using System.Net;
using System.Net.Sockets;
using System.Text;
using Weft.Mesh.Proxy;
using Weft.Mesh.Tests.Agent;
using Xunit.Abstractions;

namespace Weft.Mesh.Tests.Proxy;

/// <summary>The service proxy of in-process agents over loopback: real sockets, real tunnel streams through a relay.</summary>
public sealed class ProxyLoopbackTests(ITestOutputHelper output)
{
    private static HttpClient Http(bool keepAlive = true) => new(new SocketsHttpHandler { PooledConnectionLifetime = keepAlive ? Timeout.InfiniteTimeSpan : TimeSpan.Zero })
    {
        Timeout = ProxyScene.Deadline,
        DefaultRequestHeaders = { ConnectionClose = !keepAlive },
    };

    private static async Task<Socket> ConnectAsync(IPEndPoint to, IPAddress? from = null)
    {
        var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        if (from is not null) s.Bind(new IPEndPoint(from, 0));
        await s.ConnectAsync(to).WaitAsync(ProxyScene.Deadline);
        return s;
    }

    private static async Task<byte[]> ReadToEndAsync(Socket s)
    {
        var all = new MemoryStream();
        var buffer = new byte[65536];
        int n;
        while ((n = await s.ReceiveAsync(buffer).WaitAsync(ProxyScene.Deadline)) > 0) all.Write(buffer, 0, n);
        return all.ToArray();
    }

    private static async Task<byte[]> ExchangeAsync(Socket s, int size, int seed)
    {
        var data = new byte[size];
        new Random(seed).NextBytes(data);
        await s.SendAsync(data);
        var back = new byte[size];
        for (var got = 0; got < size;)
        {
            var n = await s.ReceiveAsync(back.AsMemory(got)).AsTask().WaitAsync(ProxyScene.Deadline);
            Assert.True(n > 0, "the connection closed");
            got += n;
        }
        Assert.Equal(data, back);
        return back;
    }

    [Fact]
    public async Task Http_and_tcp_echo_reach_a_remote_nodes_endpoint_through_the_proxy()
    {
        await using var scene = new ProxyScene(output);
        var appB = await scene.DemoAsync("b");
        await scene.StartAsync(ProxyScene.Services(ProxyScene.Demo("demo", "", ProxyScene.Endpoint("b", appB))), null, "b");

        var view = scene.Service("demo");
        Assert.StartsWith("http://127.", view.Url, StringComparison.Ordinal);
        Assert.True(scene.Range.Contains(IPAddress.Parse(view.Address!)));
        Assert.All(view.Ports, p => Assert.True(p.Listening, p.Error));
        Assert.Equal("tunnel", Assert.Single(view.Endpoints).Path);

        using var http = Http();
        Assert.Equal("b", await http.GetStringAsync(view.Url));
        var bytes = await http.GetByteArrayAsync(view.Url + "bytes/1048579");
        Assert.Equal(1048579, bytes.Length);
        for (var i = 0; i < bytes.Length; i++) if (bytes[i] != i % 251) Assert.Fail($"byte {i} is {bytes[i]}");
        var body = new byte[300_000];
        new Random(1).NextBytes(body);
        using (var echoed = await http.PostAsync(view.Url + "echo", new ByteArrayContent(body)))
            Assert.Equal(body, await echoed.Content.ReadAsByteArrayAsync());
        using (var bad = await http.GetAsync(view.Url + "bytes/lots")) Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);

        // TCP echo: 4 MiB up, half-close, everything back, then the far side's close.
        using (var s = await ConnectAsync(scene.Address("demo", 7007)))
        {
            var data = new byte[4 << 20];
            new Random(2).NextBytes(data);
            var reading = ReadToEndAsync(s);
            await s.SendAsync(data);
            s.Shutdown(SocketShutdown.Send);
            Assert.Equal(data, await reading);
        }

        var after = scene.Service("demo");
        Assert.Equal(0, after.Ports.Sum(p => p.Failures));
        Assert.True(after.Ports.Single(p => p.Name == "echo").Connections >= 1);
        Assert.True(after.BytesFromClients >= (4 << 20) + body.Length, $"{after.BytesFromClients}");
        Assert.True(after.BytesToClients >= (4 << 20) + body.Length + bytes.Length, $"{after.BytesToClients}");
        Assert.True(scene.Caller.Tunnel.PerPeer[scene["b"].Host.PeerId].RelayedBytes + scene.Caller.Tunnel.PerPeer[scene["b"].Host.PeerId].DirectBytes >= 2 * (4 << 20));
        Assert.Equal("file", scene.Caller.Status().Proxy!.Source);
        Assert.Empty(scene.Proxy.Warnings());
    }

    [Fact]
    public async Task Udp_echo_keeps_datagram_boundaries_for_single_queries_and_a_ten_thousand_datagram_stream()
    {
        await using var scene = new ProxyScene(output);
        var appB = await scene.DemoAsync("b");
        var appA = await scene.DemoAsync("a");
        await scene.StartAsync(ProxyScene.Services(
            ProxyScene.Demo("remote", "", ProxyScene.Endpoint("b", appB)),
            ProxyScene.Demo("local", "", ProxyScene.Endpoint("a", appA))), null, "b");

        foreach (var name in (string[])["remote", "local"])
        {
            var service = scene.Address(name, 7007);

            // 1-packet queries, each from a new socket (a new flow), of sizes up to the largest datagram.
            int[] sizes = [0, 1, 100, 512, 1400, 9000, 65000, ProxyLimits.MaxDatagram];
            var (queries, answered) = await DemoClient.UdpQueriesAsync(service, 40, sizes, TimeSpan.FromSeconds(5));
            output.WriteLine($"{name}: {answered} of {queries} single-datagram queries answered");
            Assert.Equal(queries, answered);

            // A stream of 10,000 datagrams on one flow, at most 64 unanswered at a time; the same stream straight to the
            // echo server (no proxy, no tunnel) is the baseline of what UDP on loopback loses here.
            var direct = await DemoClient.UdpStreamAsync(new IPEndPoint(IPAddress.Loopback, (name == "local" ? appA : appB).UdpEcho!.Port), 10_000, window: 64);
            var stream = await DemoClient.UdpStreamAsync(service, 10_000, window: 64);
            output.WriteLine($"{name}: stream of {stream.Sent} datagrams: {stream.Received} echoed intact, {stream.Lost} lost in {stream.Seconds:0.00} s (direct to the echo server: {direct.Lost} lost)");
            Assert.Equal(0, stream.Corrupt); // every echo is one whole datagram that was sent...
            Assert.Equal(0, stream.Duplicates); // ...once
            Assert.True(stream.Lost <= Math.Max(direct.Lost, stream.Sent / 1000), $"{stream.Lost} of {stream.Sent} lost through the proxy, {direct.Lost} directly");
        }
        var status = scene.Caller.Status().Services;
        Assert.All(status, s => Assert.Equal(0, s.Ports.Single(p => p.Protocol == "UDP").UdpDropped));
        Assert.Equal("local", status.Single(s => s.Name == "local").Endpoints.Single().Path);
    }

    [Fact]
    public async Task A_catalogue_update_leaves_an_open_connection_intact()
    {
        await using var scene = new ProxyScene(output);
        var appB = await scene.DemoAsync("b");
        var appLocal = await scene.DemoAsync("a-local");
        await scene.StartAsync(ProxyScene.Services(ProxyScene.Demo("demo", "", ProxyScene.Endpoint("b", appB))), null, "b");
        var echo = scene.Address("demo", 7007);
        using var http = Http(keepAlive: false);
        var url = scene.Service("demo").Url!;
        Assert.Equal("b", await http.GetStringAsync(url));

        using var open = await ConnectAsync(echo);
        await ExchangeAsync(open, 100_000, 1);

        // New endpoints and policy: the open connection keeps its endpoint; new connections take the new one.
        await scene.UpdateAsync(ProxyScene.Services(ProxyScene.Demo("demo", "policy: random", ProxyScene.Endpoint("a", appLocal))));
        await ExchangeAsync(open, 100_000, 2);
        Assert.Equal("a-local", await http.GetStringAsync(url));
        Assert.Equal(url, scene.Service("demo").Url); // same address and port
        Assert.Equal("random", scene.Service("demo").Policy);

        // A bad edit is rejected: the running catalogue stays and the problem is reported.
        var problem = await scene.RejectedAsync("services: [{name: demo, ports: [{port: 0}]}]\n");
        Assert.Contains("services[0].ports[0].port (line 1): 0 is out of range", problem);
        Assert.Contains(scene.Caller.Status().Warnings, w => w.Contains("services file", StringComparison.Ordinal));
        Assert.Equal("a-local", await http.GetStringAsync(url));
        await ExchangeAsync(open, 1000, 3);

        // The service goes away: its listener closes, the open connection still works to its end.
        await scene.UpdateAsync(ProxyScene.Services(ProxyScene.Demo("other", "", ProxyScene.Endpoint("a", appLocal))));
        await Assert.ThrowsAnyAsync<SocketException>(async () => { using var s = await ConnectAsync(echo); });
        await ExchangeAsync(open, 100_000, 4);
        open.Shutdown(SocketShutdown.Send);
        Assert.Empty(await ReadToEndAsync(open));
        Assert.Equal(3, scene.Caller.Status().Proxy!.CatalogVersion);
    }

    [Fact]
    public async Task An_endpoint_that_goes_down_loses_its_traffic_within_one_retry()
    {
        await using var scene = new ProxyScene(output);
        var b1 = await scene.DemoAsync("b1");
        var b2 = await scene.DemoAsync("b2");
        var local = await scene.DemoAsync("a-local");
        await scene.StartAsync(ProxyScene.Services(ProxyScene.Demo("demo", "",
            ProxyScene.Endpoint("b", b1), ProxyScene.Endpoint("b", b2).Replace("127.0.0.1", "127.0.0.2", StringComparison.Ordinal), ProxyScene.Endpoint("a", local))), null, "b");
        // b2 listens on 127.0.0.1 only, so its endpoint 127.0.0.2 is refused by b's kernel: it is down from the start.
        using var http = Http(keepAlive: false);
        var url = scene.Service("demo").Url!;
        var answers = new Dictionary<string, int>();
        for (var i = 0; i < 60; i++)
        {
            var who = await http.GetStringAsync(url); // every request succeeds: a failed endpoint is retried on the next one
            answers[who] = answers.GetValueOrDefault(who) + 1;
        }
        Assert.Equal(["a-local", "b1"], answers.Keys.Order());
        Assert.InRange(answers["b1"], 25, 35);
        var view = scene.Service("demo");
        Assert.Equal(1, view.Ports.Single(p => p.Name == "http").Failures); // only the first request met the dead endpoint
        Assert.True(view.Endpoints.Single(e => e.Ip == "127.0.0.2").CoolingDown);

        // Now b1 dies under load too: its traffic moves within one retry per connection, and no request fails.
        await scene.StopDemoAsync(b1);
        var before = view.Ports.Single(p => p.Name == "http").Failures;
        for (var i = 0; i < 30; i++) Assert.Equal("a-local", await http.GetStringAsync(url));
        Assert.Equal(before + 1, scene.Service("demo").Ports.Single(p => p.Name == "http").Failures);

        // With nothing reachable the client's connection is reset (after at most maxAttempts tries), not left hanging.
        await scene.StopDemoAsync(local);
        await Assert.ThrowsAsync<HttpRequestException>(() => http.GetStringAsync(url));
    }

    [Fact]
    public async Task A_single_endpoint_that_comes_back_within_the_retry_delay_still_gets_the_connection()
    {
        await using var scene = new ProxyScene(output);
        var port = LoopbackMesh.FreePort(); // nothing listens there yet
        await scene.StartAsync(ProxyScene.Services("""
            - name: late
              ports: [{port: 7007}]
            """ + $"\n  endpoints: [{{nodeName: a, ip: 127.0.0.1, port: {port}}}]"));
        var connecting = ConnectAsync(scene.Address("late", 7007)).ContinueWith(async c =>
        {
            using var s = await c;
            return await ExchangeAsync(s, 1000, 9);
        }).Unwrap();
        await scene.WaitAsync(() => scene.Service("late").Ports[0].Failures > 0, "a failed attempt on the late endpoint");
        Assert.Equal(1, scene.Service("late").Ports[0].Failures);
        // The endpoint comes up now, before the retry (ProxyLimits.RetryDelay, 250 ms, after the failure).
        using var listener = new TcpListener(IPAddress.Loopback, port);
        listener.Start();
        var serving = Task.Run(async () =>
        {
            using var c = await listener.AcceptSocketAsync();
            var buffer = new byte[4096];
            int n;
            while ((n = await c.ReceiveAsync(buffer)) > 0) await c.SendAsync(buffer.AsMemory(0, n));
        });
        Assert.Equal(1000, (await connecting.WaitAsync(ProxyScene.Deadline)).Length);
        Assert.Equal(1, scene.Service("late").Ports[0].Connections);
    }

    [Fact]
    public async Task Consistent_hash_follows_the_real_source_ip_not_the_port()
    {
        await using var scene = new ProxyScene(output);
        var apps = new[] { await scene.DemoAsync("e1"), await scene.DemoAsync("e2"), await scene.DemoAsync("e3") };
        await scene.StartAsync(ProxyScene.Services(ProxyScene.Demo("demo", "policy: consistentHash", apps.Select(a => ProxyScene.Endpoint("a", a)).ToArray())));
        var url = new Uri(scene.Service("demo").Url!);
        async Task<string> AskFrom(IPAddress source)
        {
            using var s = await ConnectAsync(new IPEndPoint(IPAddress.Parse(url.Host), url.Port), source);
            await s.SendAsync(Encoding.ASCII.GetBytes("GET / HTTP/1.1\r\nHost: demo\r\nConnection: close\r\n\r\n"));
            var text = Encoding.ASCII.GetString(await ReadToEndAsync(s));
            return text[(text.IndexOf("\r\n\r\n", StringComparison.Ordinal) + 4)..];
        }
        var byClient = new Dictionary<int, string>();
        for (var i = 1; i <= 24; i++) byClient[i] = await AskFrom(new IPAddress([127, 0, 0, (byte)i]));
        for (var round = 0; round < 2; round++)
            for (var i = 1; i <= 24; i++)
                Assert.Equal(byClient[i], await AskFrom(new IPAddress([127, 0, 0, (byte)i]))); // new source port each time, same endpoint
        Assert.True(byClient.Values.Distinct().Count() >= 2, string.Join(",", byClient.Values)); // and the clients spread
    }

    [Fact]
    public async Task Connections_over_the_per_service_limit_are_reset_and_a_port_that_cannot_be_bound_is_reported_and_retried()
    {
        await using var scene = new ProxyScene(output);
        var app = await scene.DemoAsync("a-local");
        // Another process (here: a socket) holds what would be the service's UDP port.
        await scene.StartAsync(ProxyScene.Services(ProxyScene.Demo("demo", "", ProxyScene.Endpoint("a", app))), new ProxyLimits { MaxConnectionsPerService = 2 });
        var echo = scene.Address("demo", 7007);
        using var first = await ConnectAsync(echo);
        using var second = await ConnectAsync(echo);
        await ExchangeAsync(first, 10, 1);
        await ExchangeAsync(second, 10, 2);
        using var third = await ConnectAsync(echo);
        await Assert.ThrowsAnyAsync<SocketException>(async () =>
        {
            await third.SendAsync(new byte[10]);
            var n = await third.ReceiveAsync(new byte[10]).WaitAsync(ProxyScene.Deadline);
            if (n == 0) throw new SocketException((int)SocketError.ConnectionReset);
        });
        first.Dispose();
        // The slot comes back once the first connection's end has been seen.
        await scene.WaitAsync(() => scene.Proxy.Active.Connections <= 1, "the first connection's end");
        using var fourth = await ConnectAsync(echo);
        await ExchangeAsync(fourth, 10, 4);

        // A new service whose port is taken: reported in status, and served once the port is free.
        var address = ProxyServiceAddress(scene, "held");
        using var holder = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        holder.Bind(new IPEndPoint(address, 8080));
        holder.Listen();
        await scene.UpdateAsync(ProxyScene.Services(ProxyScene.Demo("demo", "", ProxyScene.Endpoint("a", app)), ProxyScene.Demo("held", "", ProxyScene.Endpoint("a", app))));
        var held = scene.Service("held").Ports.Single(p => p.Name == "http");
        Assert.False(held.Listening);
        Assert.Contains("cannot listen", Assert.Single(scene.Proxy.Warnings()), StringComparison.Ordinal);
        holder.Close();
        await scene.WaitAsync(() => scene.Service("held").Ports.Single(p => p.Name == "http").Listening, "the held port listening", ProxyLimits.ListenRetryInterval + ProxyScene.Deadline);
        using var http = Http();
        Assert.Equal("a-local", await http.GetStringAsync(scene.Service("held").Url));
    }

    private static IPAddress ProxyServiceAddress(ProxyScene scene, string name) => new ServiceAddresses(scene.Range).Derive(new ServiceName("default", name));
}
