using System.Net;
using System.Net.Sockets;

namespace Weft.Lab.Services;

/// <summary>
/// A dnsmasq DNS server (Debian package dnsmasq-base) on a free port, UDP and TCP, serving only the fixed A records it is
/// given (no upstream, no /etc/hosts): the independent upstream an edge DNS server forwards to. Ready when it answers.
/// </summary>
public sealed class DnsmasqService : LabService
{
    private readonly string _program;
    private readonly List<string> _args;

    private DnsmasqService(IPAddress address, IReadOnlyDictionary<string, IPAddress> records) : base("dnsmasq", address)
    {
        _program = Require("dnsmasq", "dnsmasq-base");
        Port = FreePort(address);
        _args =
        [
            "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--no-poll", "--bind-interfaces",
            "--pid-file=", $"--listen-address={address}", $"--port={Port}", "--log-facility=-", "--user=" + Environment.UserName,
        ];
        foreach (var (name, ip) in records) _args.Add($"--address=/{name}/{ip}");
    }

    public int Port { get; }

    public IPEndPoint EndPoint => new(Address, Port);

    protected override string Program => _program;

    protected override IReadOnlyList<string> Arguments => _args;

    /// <summary>Starts dnsmasq answering each name (and its subdomains) with its address.</summary>
    public static Task<DnsmasqService> StartNewAsync(IReadOnlyDictionary<string, IPAddress> records, IPAddress? address = null, CancellationToken ct = default)
        => StartOrDisposeAsync(new DnsmasqService(address ?? IPAddress.Loopback, records), ct);

    /// <summary>Ready when a UDP query (for "ready.invalid", type A) gets any response with its ID.</summary>
    protected override async Task<bool> IsReadyAsync(CancellationToken ct)
    {
        byte[] query = [0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 5, (byte)'r', (byte)'e', (byte)'a', (byte)'d', (byte)'y', 7, (byte)'i', (byte)'n', (byte)'v', (byte)'a', (byte)'l', (byte)'i', (byte)'d', 0, 0, 1, 0, 1];
        using var s = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        using var wait = CancellationTokenSource.CreateLinkedTokenSource(ct);
        wait.CancelAfter(TimeSpan.FromMilliseconds(200));
        try
        {
            await s.ConnectAsync(EndPoint, wait.Token).ConfigureAwait(false);
            await s.SendAsync(query, SocketFlags.None, wait.Token).ConfigureAwait(false);
            var buffer = new byte[512];
            var n = await s.ReceiveAsync(buffer, SocketFlags.None, wait.Token).ConfigureAwait(false);
            return n >= 12 && buffer[0] == 0x12 && buffer[1] == 0x34;
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested) { return false; }
        catch (SocketException) { return false; }
    }
}
