using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text.RegularExpressions;
using Microsoft.Extensions.Logging.Abstractions;
using Weft.Lab.Services;
using Weft.Mesh.Dns;
using Weft.Wire.Dns;
using Xunit.Abstractions;

namespace Weft.Lab.Tests;

/// <summary>
/// The edge DNS server on real sockets, asked by dig (bind9-dnsutils) and forwarding to dnsmasq (dnsmasq-base): both
/// independent implementations. Skipped, saying so, when either is not installed.
/// </summary>
public sealed partial class EdgeDnsServerTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(20);
    private static readonly IPAddress DemoAddress = IPAddress.Parse("127.10.3.4");

    private static ServiceLookup Lookup(string ns, string name) =>
        (ns, name) == ("default", "demo") ? new ServiceLookup(true, DemoAddress) : ServiceLookup.Unknown;

    private static void NeedTools()
    {
        Skip.If(NatLab.FindExecutable("dig") is null, "skipped: dig is not installed (apt-get install bind9-dnsutils)");
        Skip.If(NatLab.FindExecutable("dnsmasq") is null, "skipped: dnsmasq is not installed (apt-get install dnsmasq-base)");
    }

    private static async Task<EdgeDnsServer> StartAsync(IReadOnlyList<IPEndPoint> upstreams, EdgeDnsLimits? limits = null)
    {
        var server = EdgeDnsServer.Start(new EdgeDnsConfig
        {
            Enable = true, ListenAddress = IPAddress.Loopback, ListenPort = 0, Upstreams = upstreams, Limits = limits ?? new EdgeDnsLimits(),
        }, Lookup, NullLoggerFactory.Instance);
        await server.Ready.WaitAsync(Deadline);
        return server;
    }

    private static Task<DnsmasqService> UpstreamAsync() => DnsmasqService.StartNewAsync(new Dictionary<string, IPAddress>
    {
        ["upstream.test"] = IPAddress.Parse("192.0.2.7"),
        ["kubernetes.default.svc.cluster.local"] = IPAddress.Parse("10.96.0.1"),
    });

    private sealed record DigResult(string Status, IReadOnlyList<string> Addresses, string Text);

    /// <summary>Asks with dig (one try, its own timeout), returning the status and the A records of the answer section.</summary>
    private async Task<DigResult> DigAsync(EdgeDnsServer server, string name, bool tcp = false, string type = "A")
    {
        IReadOnlyList<string> args = ["@" + server.EndPoint!.Address, "-p", server.EndPoint.Port.ToString(System.Globalization.CultureInfo.InvariantCulture),
            "+tries=1", "+time=5", tcp ? "+tcp" : "+notcp", "-t", type, name];
        var psi = new ProcessStartInfo(NatLab.FindExecutable("dig")!) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var reading = p.StandardOutput.ReadToEndAsync();
        var stderr = await p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync().WaitAsync(Deadline);
        var stdout = await reading;
        var code = p.ExitCode;
        Assert.True(code == 0, $"dig {string.Join(' ', args)} exited {code}: {stdout}{stderr}");
        var status = StatusLine().Match(stdout);
        Assert.True(status.Success, "no status in dig's output:\n" + stdout);
        var addresses = AnswerLine().Matches(stdout).Select(m => m.Groups[1].Value).ToList();
        return new DigResult(status.Groups[1].Value, addresses, stdout);
    }

    [GeneratedRegex(@"status: (\w+)")]
    private static partial Regex StatusLine();

    [GeneratedRegex(@"^\S+\s+\d+\s+IN\s+A\s+(\S+)$", RegexOptions.Multiline)]
    private static partial Regex AnswerLine();

    [SkippableFact]
    public async Task Dig_gets_service_names_here_and_every_other_name_from_dnsmasq_over_udp_and_tcp()
    {
        NeedTools();
        await using var upstream = await UpstreamAsync();
        await using var server = await StartAsync([upstream.EndPoint]);
        foreach (var tcp in (bool[])[false, true])
        {
            var demo = await DigAsync(server, "demo.default.svc.cluster.local", tcp);
            Assert.Equal("NOERROR", demo.Status);
            Assert.Equal([DemoAddress.ToString()], demo.Addresses);
            Assert.Contains(" aa ", demo.Text.Split('\n').First(l => l.Contains("flags:", StringComparison.Ordinal)) + " ", StringComparison.Ordinal);
            Assert.Equal(["192.0.2.7"], (await DigAsync(server, "upstream.test", tcp)).Addresses);
            Assert.Equal(["10.96.0.1"], (await DigAsync(server, "kubernetes.default.svc.cluster.local", tcp)).Addresses); // not ours: the cluster's DNS knows it
            var aaaa = await DigAsync(server, "demo.default.svc.cluster.local", tcp, "AAAA");
            Assert.Equal("NOERROR", aaaa.Status);
            Assert.Empty(aaaa.Addresses);
        }
        var view = server.View();
        Assert.Equal(8, view.Queries);
        Assert.Equal(4, view.Forwarded);
        Assert.Equal(0, view.Failed);
    }

    [SkippableFact]
    public async Task Without_an_upstream_dig_gets_nxdomain_in_the_domain_and_refused_outside_it()
    {
        NeedTools();
        await using var server = await StartAsync([]);
        Assert.Equal("NXDOMAIN", (await DigAsync(server, "nope.default.svc.cluster.local")).Status);
        Assert.Equal("REFUSED", (await DigAsync(server, "example.com", tcp: true)).Status);
    }

    [SkippableFact]
    public async Task A_silent_upstream_is_passed_over_after_its_timeout_and_with_none_left_the_answer_is_servfail()
    {
        NeedTools();
        await using var upstream = await UpstreamAsync();
        using var silent = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp); // bound, never answers
        silent.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        var limits = new EdgeDnsLimits { UpstreamTimeout = TimeSpan.FromMilliseconds(300) };

        await using (var server = await StartAsync([(IPEndPoint)silent.LocalEndPoint!, upstream.EndPoint], limits))
        {
            var sw = Stopwatch.StartNew();
            Assert.Equal(["192.0.2.7"], (await DigAsync(server, "upstream.test")).Addresses);
            Assert.InRange(sw.Elapsed, limits.UpstreamTimeout, Deadline);
            output.WriteLine($"answered by the second upstream after {sw.Elapsed.TotalMilliseconds:0} ms");
        }
        await using (var server = await StartAsync([(IPEndPoint)silent.LocalEndPoint!], limits))
        {
            Assert.Equal("SERVFAIL", (await DigAsync(server, "upstream.test")).Status);
            Assert.Equal("SERVFAIL", (await DigAsync(server, "upstream.test", tcp: true)).Status); // TCP to a port nobody listens on
            Assert.Equal(2, server.View().Failed);
            Assert.Equal([DemoAddress.ToString()], (await DigAsync(server, "demo.default.svc.cluster.local")).Addresses); // ours need no upstream
        }
    }

    [SkippableFact]
    public async Task Forwarded_queries_beyond_the_limit_get_servfail_at_once()
    {
        NeedTools();
        using var silent = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        silent.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        await using var server = await StartAsync([(IPEndPoint)silent.LocalEndPoint!], new EdgeDnsLimits { MaxForwarding = 2, UpstreamTimeout = TimeSpan.FromSeconds(3) });
        var sw = Stopwatch.StartNew();
        var answers = await Task.WhenAll(Enumerable.Range(0, 6).Select(i => Ask(server.EndPoint!, $"n{i}.example.com")));
        // Two wait out the silent upstream (3 s); the other four are refused service at once.
        Assert.Equal(6, answers.Count(a => a.ResponseCode == DnsResponseCode.ServerFailure));
        output.WriteLine($"all 6 answered within {sw.Elapsed.TotalMilliseconds:0} ms");
        Assert.Equal(4, answers.Count(a => a.Elapsed < TimeSpan.FromSeconds(1.5)));
    }

    private sealed record Timed(DnsResponseCode ResponseCode, TimeSpan Elapsed);

    private static async Task<Timed> Ask(IPEndPoint server, string name)
    {
        var sw = Stopwatch.StartNew();
        var m = await UdpAskAsync(server, new DnsMessage { Id = 1, RecursionDesired = true, Questions = [new DnsQuestion(DnsName.Parse(name), DnsType.A)] }.ToArray());
        return new Timed(DnsMessage.Parse(m).ResponseCode, sw.Elapsed);
    }

    private static async Task<byte[]> UdpAskAsync(IPEndPoint server, byte[] datagram)
    {
        using var s = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        using var cts = new CancellationTokenSource(Deadline);
        await s.ConnectAsync(server, cts.Token);
        await s.SendAsync(datagram, SocketFlags.None, cts.Token);
        var buffer = new byte[65535];
        var n = await s.ReceiveAsync(buffer, SocketFlags.None, cts.Token);
        return buffer[..n];
    }

    [SkippableFact]
    public async Task Malformed_queries_get_formerr_or_a_closed_connection_and_the_server_keeps_serving()
    {
        NeedTools();
        await using var server = await StartAsync([], new EdgeDnsLimits { TcpIdleTimeout = TimeSpan.FromMilliseconds(300) });
        var at = server.EndPoint!;

        // UDP: a header promising a question that is not there.
        byte[] garbage = [0xAB, 0xCD, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0x3F, 1, 2];
        var formerr = DnsMessage.Parse(await UdpAskAsync(at, garbage));
        Assert.Equal(0xABCD, formerr.Id);
        Assert.Equal(DnsResponseCode.FormatError, formerr.ResponseCode);

        // TCP: a stalled half query is closed after the idle timeout; a zero length frame at once.
        using (var stalled = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp))
        {
            await stalled.ConnectAsync(at);
            await stalled.SendAsync(new byte[] { 0, 40, 1, 2, 3 }, SocketFlags.None);
            var sw = Stopwatch.StartNew();
            using var cts = new CancellationTokenSource(Deadline);
            Assert.Equal(0, await stalled.ReceiveAsync(new byte[16], SocketFlags.None, cts.Token));
            Assert.InRange(sw.Elapsed, TimeSpan.FromMilliseconds(200), TimeSpan.FromSeconds(5));
        }
        using (var zero = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp))
        {
            await zero.ConnectAsync(at);
            await zero.SendAsync(new byte[] { 0, 0 }, SocketFlags.None);
            using var cts = new CancellationTokenSource(Deadline);
            Assert.Equal(0, await zero.ReceiveAsync(new byte[16], SocketFlags.None, cts.Token));
        }

        Assert.Equal([DemoAddress.ToString()], (await DigAsync(server, "demo.default.svc.cluster.local")).Addresses);
        Assert.Equal([DemoAddress.ToString()], (await DigAsync(server, "demo.default.svc.cluster.local", tcp: true)).Addresses);
    }

    [SkippableFact]
    public async Task A_burst_of_twenty_thousand_queries_from_fifty_clients_is_answered_in_full()
    {
        NeedTools();
        await using var server = await StartAsync([]);
        var query = new DnsMessage { Id = 9, Questions = [new DnsQuestion(DnsName.Parse("demo.default.svc.cluster.local"), DnsType.A)] }.ToArray();
        const int Clients = 50, PerClient = 400;
        var sw = Stopwatch.StartNew();
        var answered = await Task.WhenAll(Enumerable.Range(0, Clients).Select(async _ =>
        {
            var ok = 0;
            for (var i = 0; i < PerClient; i++)
                if (DnsMessage.Parse(await UdpAskAsync(server.EndPoint!, query)).Answers.Count == 1) ok++;
            return ok;
        }));
        sw.Stop();
        Assert.Equal(Clients * PerClient, answered.Sum());
        output.WriteLine($"{Clients * PerClient} queries in {sw.Elapsed.TotalMilliseconds:0} ms: {Clients * PerClient / sw.Elapsed.TotalSeconds:0} queries/s (one socket per query)");
    }
}
