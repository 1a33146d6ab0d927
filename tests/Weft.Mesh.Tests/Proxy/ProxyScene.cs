using System.Net;
using Microsoft.Extensions.Logging.Abstractions;
using Weft.Mesh.Agent;
using Weft.Mesh.Config;
using Weft.Mesh.Proxy;
using Weft.Mesh.Relays;
using Weft.Mesh.Tests.Agent;

namespace Weft.Mesh.Tests.Proxy;

/// <summary>
/// In-process agents on 127.0.0.1 (a relay "r1", endpoint nodes, and the caller "a" whose service proxy is on) and
/// demo apps as endpoints. Each scene gets its own loopback service range, so scenes running at the same time never
/// share a service address.
/// </summary>
internal sealed class ProxyScene(Xunit.Abstractions.ITestOutputHelper? output = null) : IAsyncDisposable
{
    public static readonly TimeSpan Deadline = TimeSpan.FromSeconds(20);

    private static int nextRange = 100;

    private readonly LoopbackMesh _mesh = new();
    private readonly string _dir = Directory.CreateTempSubdirectory("weft-proxy-").FullName;
    private readonly List<DemoApp> _apps = [];
    private MeshAgent? _caller;

    public IPNetwork Range { get; } = new(new IPAddress([127, (byte)(Interlocked.Increment(ref nextRange) % 150 + 100), 0, 0]), 16);

    public string ServicesPath => Path.Combine(_dir, "services.yaml");

    public MeshAgent Caller => _caller!;

    public ServiceProxy Proxy => _caller!.Proxy!;

    /// <summary>Waits until <paramref name="condition"/> holds, re-checking each time the proxy's state changes.</summary>
    public async Task WaitAsync(Func<bool> condition, string what, TimeSpan? deadline = null)
    {
        using var changed = new SemaphoreSlim(0);
        void On() => changed.Release();
        Proxy.Changed += On; // before the first check, so no change is missed
        try
        {
            var until = DateTime.UtcNow + (deadline ?? Deadline);
            while (!condition())
            {
                var left = until - DateTime.UtcNow;
                if (left <= TimeSpan.Zero || !await changed.WaitAsync(left)) throw new TimeoutException($"{what} did not happen within {(deadline ?? Deadline).TotalSeconds:0} s");
            }
        }
        finally
        {
            Proxy.Changed -= On;
        }
    }

    public MeshAgent this[string node] => node == "a" ? Caller : _mesh[node];

    /// <summary>Relay liveness that a loaded 2-core machine does not trip (LoopbackMesh's defaults are tuned for failover tests).</summary>
    private static TunnelConfig Tolerant(TunnelConfig t) => t with { RelayManager = t.RelayManager with { DeadAfter = TimeSpan.FromSeconds(5) } };

    private static bool AllReserved(IReadOnlyList<RelayLinkState> links) => links.Count > 0 && links.All(l => l.Status == RelayLinkStatus.Up && l.Reserved);

    /// <summary>Starts r1, the endpoint nodes, and "a" with the proxy reading <paramref name="services"/>.</summary>
    public Task StartAsync(string services, ProxyLimits? limits = null, params string[] endpointNodes) => StartAsync(services, limits, null, endpointNodes);

    /// <summary>As above, with edge DNS on "a" when <paramref name="dns"/> is given.</summary>
    public async Task StartAsync(string services, ProxyLimits? limits, Weft.Mesh.Dns.EdgeDnsConfig? dns, params string[] endpointNodes)
    {
        File.WriteAllText(ServicesPath, services);
        _mesh.DeclareRelays("r1");
        await _mesh.StartAsync("r1", Tolerant);
        foreach (var n in endpointNodes) await _mesh.StartAsync(n, Tolerant);
        var config = _mesh.Config("a", Tolerant) with
        {
            Proxy = new EdgeProxyConfig { Enable = true, ServicesFile = ServicesPath, ServiceCidr = Range, Limits = limits ?? new ProxyLimits() },
            Dns = dns ?? new Weft.Mesh.Dns.EdgeDnsConfig(),
        };
        _caller = await MeshAgent.StartAsync(config, output is null ? NullLoggerFactory.Instance : new TestOutputLoggers(output, "a"));
        await LoopbackMesh.WaitRelays(_caller, AllReserved, "a reservation on r1");
        foreach (var n in endpointNodes) await LoopbackMesh.WaitRelays(_mesh[n], AllReserved, "a reservation on r1");
    }

    /// <summary>A demo app (HTTP, TCP echo, UDP echo on free ports of 127.0.0.1) answering with <paramref name="name"/>.</summary>
    public async Task<DemoApp> DemoAsync(string name)
    {
        var any = new IPEndPoint(IPAddress.Loopback, 0);
        var app = await DemoApp.StartAsync(new DemoAppOptions(name, any) { TcpEcho = any, UdpEcho = any });
        _apps.Add(app);
        return app;
    }

    public async Task StopDemoAsync(DemoApp app)
    {
        _apps.Remove(app);
        await app.DisposeAsync();
    }

    /// <summary>An endpoint line for <paramref name="app"/> on <paramref name="node"/>, all three demo ports.</summary>
    public static string Endpoint(string node, DemoApp app) =>
        $"{{nodeName: {node}, ip: 127.0.0.1, ports: [{{name: http, port: {app.HttpUrl.Port}}}, {{name: echo, port: {app.TcpEcho!.Port}}}, {{name: echo-udp, port: {app.UdpEcho!.Port}}}]}}";

    /// <summary>The demo service: HTTP 8080, TCP echo 7007, UDP echo 7007.</summary>
    public static string Demo(string name, string extra, params string[] endpoints) => $$"""
        - name: {{name}}
          ports:
          - {name: http, port: 8080}
          - {name: echo, port: 7007}
          - {name: echo-udp, port: 7007, protocol: UDP}
        {{string.Join("", extra.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => "  " + l.Trim() + "\n"))}}  endpoints:
        {{string.Join("\n", endpoints.Select(e => "  - " + e))}}
        """;

    public static string Services(params string[] services) => "services:\n" + string.Join("\n", services) + "\n";

    /// <summary>Writes the services file and waits until the proxy applied it.</summary>
    public Task UpdateAsync(string services) =>
        WriteAndWaitAsync(services, done => { void On(int _) => done(); Proxy.Applied += On; return () => Proxy.Applied -= On; });

    /// <summary>Writes a services file that must be rejected; returns the problems the proxy reports.</summary>
    public async Task<string> RejectedAsync(string services)
    {
        await WriteAndWaitAsync(services, done => { void On(bool changed) { if (changed) done(); } Proxy.FileChecked += On; return () => Proxy.FileChecked -= On; });
        return Proxy.View().LastError ?? throw new Xunit.Sdk.XunitException("the bad services file was not reported");
    }

    /// <summary>Subscribes (<paramref name="subscribe"/> returns the unsubscribe), writes the file, waits for the signal.</summary>
    private async Task WriteAndWaitAsync(string services, Func<Action, Action> subscribe)
    {
        var signalled = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var unsubscribe = subscribe(() => signalled.TrySetResult());
        try
        {
            Write(services);
            await signalled.Task.WaitAsync(Deadline);
        }
        finally
        {
            unsubscribe();
        }
    }

    private void Write(string services)
    {
        var tmp = ServicesPath + ".tmp";
        File.WriteAllText(tmp, services);
        File.Move(tmp, ServicesPath, overwrite: true);
    }

    public ServiceView Service(string name) => Caller.Status().Services.Single(s => s.Name == name);

    public IPEndPoint Address(string name, int port) => new(IPAddress.Parse(Service(name).Address!), port);

    public async ValueTask DisposeAsync()
    {
        if (_caller is not null) await _caller.DisposeAsync();
        await _mesh.DisposeAsync();
        foreach (var app in _apps) await app.DisposeAsync();
        Directory.Delete(_dir, recursive: true);
    }
}
