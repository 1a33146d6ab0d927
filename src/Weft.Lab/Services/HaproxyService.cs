using System.Globalization;
using System.Net;
using System.Text;

namespace Weft.Lab.Services;

/// <summary>One frontend of <see cref="HaproxyService"/>: a port spread round-robin over <see cref="Backends"/>.</summary>
public sealed record HaproxyFrontend(string Name, IReadOnlyList<IPEndPoint> Backends)
{
    /// <summary>tcp (default: WebSockets and anything else pass through) or http.</summary>
    public string Mode { get; init; } = "tcp";
}

/// <summary>
/// haproxy (Debian package haproxy) in the foreground with one frontend per <see cref="HaproxyFrontend"/> on free
/// ports, backends health-checked every 200 ms (one failure takes a backend out), and a refused connection sent
/// to another backend (redispatch), so a dead replica costs a client one fast retry. Ready when every
/// frontend accepts TCP.
/// </summary>
public sealed class HaproxyService : LabService
{
    private readonly string _program;

    private HaproxyService(IPAddress address, IReadOnlyList<HaproxyFrontend> frontends) : base("haproxy", address)
    {
        _program = Require("haproxy", "haproxy");
        var ports = frontends.ToDictionary(f => f.Name, _ => FreePort(address), StringComparer.Ordinal);
        Ports = ports;
        WriteFile("haproxy.cfg", Render(frontends, address, ports));
    }

    /// <summary>
    /// The haproxy.cfg for <paramref name="frontends"/> bound on <paramref name="address"/> at the given ports (also
    /// used by <c>weft lab</c>, which runs haproxy in its own namespace).
    /// </summary>
    public static string Render(IReadOnlyList<HaproxyFrontend> frontends, IPAddress address, IReadOnlyDictionary<string, int> ports)
    {
        var cfg = new StringBuilder();
        cfg.Append("global\n  maxconn 4000\n\ndefaults\n  timeout connect 1s\n  timeout client 1h\n  timeout server 1h\n  timeout tunnel 1h\n")
           .Append("  retries 3\n  option redispatch 1\n\n");
        foreach (var f in frontends)
        {
            cfg.Append(CultureInfo.InvariantCulture, $"frontend fe_{f.Name}\n  mode {f.Mode}\n  bind {address}:{ports[f.Name]}\n  default_backend be_{f.Name}\n\n");
            cfg.Append(CultureInfo.InvariantCulture, $"backend be_{f.Name}\n  mode {f.Mode}\n  balance roundrobin\n");
            for (var i = 0; i < f.Backends.Count; i++)
                cfg.Append(CultureInfo.InvariantCulture, $"  server s{i} {f.Backends[i]} check inter 200ms fall 1 rise 1\n");
            cfg.Append('\n');
        }
        return cfg.ToString();
    }

    /// <summary>Frontend name → port.</summary>
    public IReadOnlyDictionary<string, int> Ports { get; }

    public IPEndPoint EndPoint(string frontend) => new(Address, Ports[frontend]);

    protected override string Program => _program;

    protected override IReadOnlyList<string> Arguments => ["-db", "-f", Path.Combine(Folder, "haproxy.cfg")];

    public static Task<HaproxyService> StartNewAsync(IReadOnlyList<HaproxyFrontend> frontends, IPAddress? address = null, CancellationToken ct = default)
        => StartOrDisposeAsync(new HaproxyService(address ?? IPAddress.Loopback, frontends), ct);

    protected override async Task<bool> IsReadyAsync(CancellationToken ct)
    {
        foreach (var port in Ports.Values)
            if (!await CanConnectAsync(new IPEndPoint(Address, port), ct).ConfigureAwait(false)) return false;
        return true;
    }
}
