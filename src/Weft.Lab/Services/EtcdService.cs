using System.Net;
using System.Net.Http;

namespace Weft.Lab.Services;

/// <summary>A one-member etcd (Debian package etcd-server) on free ports, data in its temp folder; ready when GET /health says true.</summary>
public sealed class EtcdService : LabService
{
    private readonly string _program;
    private readonly HttpClient _http = new() { Timeout = TimeSpan.FromSeconds(2) };

    private EtcdService(IPAddress address) : base("etcd", address)
    {
        _program = Require("etcd", "etcd-server");
        ClientPort = FreePort(address);
        PeerPort = FreePort(address);
    }

    public int ClientPort { get; }

    public int PeerPort { get; }

    /// <summary>The client URL (also the v3 JSON gateway).</summary>
    public Uri ClientUrl => new UriBuilder("http", Address.ToString(), ClientPort).Uri;

    protected override string Program => _program;

    protected override IReadOnlyList<string> Arguments =>
    [
        "--name", "weft-lab", "--data-dir", Path.Combine(Folder, "data"),
        "--listen-client-urls", ClientUrl.ToString().TrimEnd('/'), "--advertise-client-urls", ClientUrl.ToString().TrimEnd('/'),
        "--listen-peer-urls", $"http://{Address}:{PeerPort}", "--initial-advertise-peer-urls", $"http://{Address}:{PeerPort}",
        "--initial-cluster", $"weft-lab=http://{Address}:{PeerPort}", "--initial-cluster-state", "new",
        "--log-level", "warn", "--logger", "zap",
    ];

    /// <summary>Creates and starts etcd on <paramref name="address"/> (default 127.0.0.1).</summary>
    public static Task<EtcdService> StartNewAsync(IPAddress? address = null, CancellationToken ct = default)
        => StartOrDisposeAsync(new EtcdService(address ?? IPAddress.Loopback), ct);

    protected override async Task<bool> IsReadyAsync(CancellationToken ct)
    {
        try
        {
            var text = await _http.GetStringAsync(new Uri(ClientUrl, "/health"), ct).ConfigureAwait(false);
            return text.Contains("\"health\":\"true\"", StringComparison.Ordinal);
        }
        catch (HttpRequestException)
        {
            return false;
        }
        catch (TaskCanceledException) when (!ct.IsCancellationRequested)
        {
            return false;
        }
    }
}
