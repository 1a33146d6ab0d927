using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using Weft.Mesh.Dns;
using Weft.Mesh.Tests.Proxy;
using Weft.Wire.Dns;
using Xunit.Abstractions;

namespace Weft.Mesh.Tests.Dns;

/// <summary>A plain DNS client over our codec: one query, UDP or TCP, with a deadline.</summary>
internal static class DnsProbe
{
    public static readonly TimeSpan Deadline = TimeSpan.FromSeconds(10);

    public static async Task<DnsMessage> AskAsync(IPEndPoint server, string name, DnsType type = DnsType.A, bool tcp = false)
    {
        var id = (ushort)Random.Shared.Next(65536);
        var query = new DnsMessage { Id = id, RecursionDesired = true, Questions = [new DnsQuestion(DnsName.Parse(name), type)] };
        using var cts = new CancellationTokenSource(Deadline);
        DnsMessage answer;
        if (tcp)
        {
            using var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            await s.ConnectAsync(server, cts.Token);
            await s.SendAsync(query.ToTcpFrame(), SocketFlags.None, cts.Token);
            var prefix = new byte[2];
            await ReadExactlyAsync(s, prefix, cts.Token);
            var body = new byte[BinaryPrimitives.ReadUInt16BigEndian(prefix)];
            await ReadExactlyAsync(s, body, cts.Token);
            answer = DnsMessage.Parse(body);
        }
        else
        {
            using var s = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
            await s.ConnectAsync(server, cts.Token);
            await s.SendAsync(query.ToArray(), SocketFlags.None, cts.Token);
            var buffer = new byte[65535];
            var n = await s.ReceiveAsync(buffer, SocketFlags.None, cts.Token);
            answer = DnsMessage.Parse(buffer.AsSpan(0, n));
        }
        Assert.Equal(id, answer.Id);
        Assert.True(answer.IsResponse);
        return answer;
    }

    public static async Task ReadExactlyAsync(Socket s, Memory<byte> into, CancellationToken ct)
    {
        for (var read = 0; read < into.Length;)
        {
            var n = await s.ReceiveAsync(into[read..], SocketFlags.None, ct);
            if (n == 0) throw new EndOfStreamException("the server closed the connection");
            read += n;
        }
    }

    public static IPAddress AddressOf(DnsMessage m) => Assert.IsType<ARecord>(Assert.Single(m.Answers)).Address;
}

public sealed class EdgeDnsAgentTests(ITestOutputHelper output)
{
    [Fact]
    public async Task A_service_name_resolves_to_the_proxy_address_that_reaches_the_remote_endpoint()
    {
        await using var scene = new ProxyScene(output);
        var appB = await scene.DemoAsync("b");
        var dns = new EdgeDnsConfig { Enable = true, ListenAddress = IPAddress.Loopback, ListenPort = 0 };
        await scene.StartAsync(ProxyScene.Services(ProxyScene.Demo("demo", "", ProxyScene.Endpoint("b", appB))), null, dns, "b");
        var server = scene.Caller.Dns!;
        await server.Ready.WaitAsync(ProxyScene.Deadline);
        var at = server.EndPoint!;

        var udp = await DnsProbe.AskAsync(at, "demo.default.svc.cluster.local");
        var tcp = await DnsProbe.AskAsync(at, "demo.default.svc.cluster.local", tcp: true);
        var address = DnsProbe.AddressOf(udp);
        Assert.Equal(address, DnsProbe.AddressOf(tcp));
        Assert.Equal(scene.Service("demo").Address, address.ToString());

        // The name is the way in: HTTP to the resolved address reaches b's demo app through the tunnel.
        using var http = new HttpClient { Timeout = ProxyScene.Deadline };
        Assert.Equal("b", await http.GetStringAsync($"http://{address}:8080/"));

        Assert.Equal(DnsResponseCode.NameError, (await DnsProbe.AskAsync(at, "gone.default.svc.cluster.local")).ResponseCode);
        Assert.Equal(DnsResponseCode.Refused, (await DnsProbe.AskAsync(at, "example.com")).ResponseCode);

        // A service added to the catalogue resolves as soon as it is applied.
        await scene.UpdateAsync(ProxyScene.Services(ProxyScene.Demo("demo", "", ProxyScene.Endpoint("b", appB)), ProxyScene.Demo("second", "", ProxyScene.Endpoint("b", appB))));
        Assert.Equal(scene.Service("second").Address, DnsProbe.AddressOf(await DnsProbe.AskAsync(at, "second.default.svc.cluster.local")).ToString());

        var view = scene.Caller.Status().Dns!;
        Assert.True(view.Listening);
        Assert.Equal(5, view.Queries);
        Assert.Equal(4, view.Answered); // the refused one is not an answer
        Assert.Empty(scene.Caller.Status().Warnings);
    }

    [Fact]
    public async Task A_port_that_cannot_be_bound_is_reported_and_the_agent_keeps_serving()
    {
        using var squatter = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        squatter.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        var port = ((IPEndPoint)squatter.LocalEndPoint!).Port;
        await using var scene = new ProxyScene(output);
        var appB = await scene.DemoAsync("b");
        var dns = new EdgeDnsConfig { Enable = true, ListenAddress = IPAddress.Loopback, ListenPort = port };
        await scene.StartAsync(ProxyScene.Services(ProxyScene.Demo("demo", "", ProxyScene.Endpoint("b", appB))), null, dns, "b");

        await scene.Caller.Dns!.FirstAttempt.WaitAsync(ProxyScene.Deadline);
        Assert.Contains(scene.Caller.Status().Warnings, w => w.Contains($"edge DNS cannot listen at 127.0.0.1:{port}", StringComparison.Ordinal) && w.Contains("in use", StringComparison.Ordinal));
        Assert.False(scene.Caller.Status().Dns!.Listening);
        using var http = new HttpClient { Timeout = ProxyScene.Deadline };
        Assert.Equal("b", await http.GetStringAsync(scene.Service("demo").Url));
    }
}
