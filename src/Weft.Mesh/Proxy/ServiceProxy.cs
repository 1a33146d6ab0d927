using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Globalization;
using System.Net;
using Microsoft.Extensions.Logging;

using Weft.Mesh.Tunnel;
using Weft.Wire.Identity;

using Weft.Mesh.Config;

namespace Weft.Mesh.Proxy;

/// <summary>
/// The service proxy: for every port of every service in the catalogue, a TCP or UDP listener on the service's
/// address (see <see cref="ServiceAddresses"/>); each new connection or UDP flow goes to an endpoint chosen by the
/// service's policy (<see cref="EndpointPicker"/>), dialled directly when it is on this node and through the tunnel
/// otherwise, failed endpoints skipped within <see cref="ProxyLimits.MaxAttempts"/>. A new catalogue
/// (<see cref="Apply"/>: from the watched services file, or pushed) changes listeners and endpoints without touching
/// open TCP connections; UDP flows end only when their endpoint or service is gone.
/// </summary>
public sealed class ServiceProxy : IAsyncDisposable
{
    /// <summary>The <see cref="Apply"/> source of catalogues read from the services file.</summary>
    public const string FileSource = "file";

    private readonly object _gate = new();
    private readonly CancellationTokenSource _lifetime = new();
    private readonly ConcurrentDictionary<long, Task> _work = new();
    private readonly ServiceAddresses _addresses;
    private readonly ProxyLimits _limits;
    private Dictionary<PortKey, PortRunner> _ports = [];
    private Dictionary<ServiceName, ServiceState> _services = [];
    private ServiceCatalog _catalog = ServiceCatalog.Empty;
    private string _source = "none";
    private int _version;
    private DateTimeOffset? _lastUpdate;
    private string? _lastError;
    private WatchedFile? _watch;
    private Task? _retry;
    private long _workIds;
    private int _active;
    private int _flows;
    private int _disposed;

    private ServiceProxy(EdgeProxyConfig config, string nodeName, Func<string, PeerId?> resolve, TunnelService? tunnel, Resume.ResumeService? resume, TimeProvider time, ILoggerFactory loggers, object? meterScope)
    {
        Config = config;
        _limits = config.Limits;
        Time = time;
        Upstreams = new Upstreams(nodeName, resolve, tunnel, resume);
        _addresses = new ServiceAddresses(config.ServiceCidr);
        LogTo = loggers.CreateLogger("Weft.Mesh.Proxy");
        Metrics = new ProxyMetrics(() => ByService(s => s.Active), () => ByService(s => s.Flows), meterScope);
    }

    public EdgeProxyConfig Config { get; }
    internal TimeProvider Time { get; }
    internal Upstreams Upstreams { get; }
    internal ILogger LogTo { get; }
    internal ProxyMetrics Metrics { get; }
    internal ProxyLimits Limits => _limits;
    internal CancellationToken Lifetime => _lifetime.Token;

    /// <summary>The catalogue in force.</summary>
    public ServiceCatalog Catalog { get { lock (_gate) return _catalog; } }

    /// <summary>Raised after each catalogue change was applied (for tests and status).</summary>
    public event Action<int>? Applied;

    /// <summary>Raised after each check of the services file (true when it had changed), for tests waiting on a reload.</summary>
    public event Action<bool>? FileChecked;

    /// <summary>
    /// Starts the proxy: reads the services file (a <see cref="ConfigException"/> lists its problems), opens the
    /// listeners and watches the file for changes.
    /// </summary>
    /// <param name="resume">When given, TCP to Weft nodes goes through the resumable tunnel (survives path failures);
    /// nodes that do not speak it (EdgeMesh agents) get the plain tunnel.</param>
    public static ServiceProxy Start(EdgeProxyConfig config, string nodeName, Func<string, PeerId?> resolve, TunnelService? tunnel, TimeProvider time, ILoggerFactory loggers, Resume.ResumeService? resume = null, object? meterScope = null)
    {
        var proxy = new ServiceProxy(config, nodeName, resolve, tunnel, resume, time, loggers, meterScope);
        try
        {
            if (config.ServicesFile is { } path)
            {
                proxy.Apply(ServicesFile.Load(path, config.ServiceCidr), FileSource);
                proxy._watch = new WatchedFile(path, ServicesFile.MaxFileBytes, proxy.ReloadFileAsync, proxy.LogTo);
                proxy._watch.Checked += changed => proxy.FileChecked?.Invoke(changed);
            }
            proxy._retry = Task.Run(proxy.RetryListenersAsync);
            return proxy;
        }
        catch
        {
            proxy.DisposeAsync().AsTask().GetAwaiter().GetResult();
            throw;
        }
    }

    private Task ReloadFileAsync()
    {
        var path = Config.ServicesFile!;
        string source;
        lock (_gate) source = _source;
        if (source != FileSource)
        {
            Log.ServicesFileIgnored(LogTo, path, source);
            return Task.CompletedTask;
        }
        try
        {
            Apply(ServicesFile.Load(path, Config.ServiceCidr), FileSource);
        }
        catch (ConfigException ex)
        {
            var problems = string.Join("\n", ex.Problems);
            lock (_gate) _lastError = problems;
            Log.ServicesRejected(LogTo, path, problems);
        }
        return Task.CompletedTask;
    }

    /// <summary>
    /// Replaces the catalogue (the services file calls it with <see cref="FileSource"/>; a pushed catalogue names its
    /// own source, and from then on changes of the file are not applied). Listeners of services and ports that stay
    /// keep running with their new endpoints and policy; new ones open; those of removed ones close, while their open
    /// TCP connections continue. Returns the catalogue version.
    /// </summary>
    public int Apply(ServiceCatalog catalog, string source)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        int version, listening, total;
        List<PortRunner> started = [];
        lock (_gate)
        {
            var placed = _addresses.Assign(catalog);
            var services = new Dictionary<ServiceName, ServiceState>();
            var ports = new Dictionary<PortKey, PortRunner>();
            foreach (var spec in catalog.Services)
            {
                var (address, error) = placed[spec.Name];
                var state = _services.GetValueOrDefault(spec.Name) ?? new ServiceState(spec.Name);
                state.Spec = spec;
                state.Address = address;
                state.Error = error;
                state.Runners = [];
                services[spec.Name] = state;
                if (address is null)
                {
                    Log.NotPlaced(LogTo, spec.Name.ToString(), error!);
                    continue;
                }
                foreach (var port in spec.Ports)
                {
                    var key = new PortKey(address, port.Port, port.Protocol);
                    if (_ports.TryGetValue(key, out var runner) && runner.Service.Name == spec.Name) runner.Update(state, port);
                    else
                    {
                        runner = port.Protocol == ServiceProtocol.Tcp ? new TcpPortRunner(this, state, port, address) : new UdpPortRunner(this, state, port, address);
                        started.Add(runner);
                    }
                    ports[key] = runner;
                    state.Runners.Add(runner);
                }
            }
            foreach (var (key, runner) in _ports)
                if (!ports.TryGetValue(key, out var now) || now != runner) runner.StopListening();
            foreach (var r in started) r.TryListen();
            _ports = ports;
            _services = services;
            _catalog = catalog;
            _source = source;
            _lastUpdate = Time.GetUtcNow();
            _lastError = null;
            version = ++_version;
            listening = ports.Values.Count(r => r.Listening);
            total = ports.Count;
        }
        Log.CatalogApplied(LogTo, source, catalog.Services.Count, listening, total);
        try { Applied?.Invoke(version); } catch (Exception) { /* a test's handler */ }
        return version;
    }

    private async Task RetryListenersAsync()
    {
        var ct = _lifetime.Token;
        while (!ct.IsCancellationRequested)
        {
            try { await Task.Delay(ProxyLimits.ListenRetryInterval, Time, ct).ConfigureAwait(false); }
            catch (OperationCanceledException) { return; }
            List<PortRunner> idle;
            lock (_gate) idle = _ports.Values.Where(r => !r.Listening).ToList();
            foreach (var r in idle) r.TryListen();
        }
    }

    // ------------------------------------------------------------------ limits and bookkeeping

    /// <summary>Counts a new TCP connection against the limits; null when it may proceed, else the limit it hits.</summary>
    internal string? EnterConnection(ServiceState service)
    {
        if (Interlocked.Increment(ref _active) > _limits.MaxConnections)
        {
            Interlocked.Decrement(ref _active);
            return $"maxConnections ({_limits.MaxConnections})";
        }
        if (Interlocked.Increment(ref service.Active) > _limits.MaxConnectionsPerService)
        {
            Interlocked.Decrement(ref service.Active);
            Interlocked.Decrement(ref _active);
            return $"maxConnectionsPerService ({_limits.MaxConnectionsPerService})";
        }
        return null;
    }

    internal void LeaveConnection(ServiceState service)
    {
        Interlocked.Decrement(ref service.Active);
        Interlocked.Decrement(ref _active);
        NotifyChanged();
    }

    /// <summary>
    /// Raised (on the thread that made it) after a listener starts or stops, an endpoint attempt fails, or a connection
    /// ends: for whoever waits on the proxy's state (tests, status pushers) instead of polling it.
    /// </summary>
    public event Action? Changed;

    internal void NotifyChanged()
    {
        try { Changed?.Invoke(); } catch (Exception) { /* a watcher's fault is not the proxy's */ }
    }

    internal bool EnterFlow(ServiceState service)
    {
        if (Interlocked.Increment(ref _flows) > _limits.MaxUdpFlows)
        {
            Interlocked.Decrement(ref _flows);
            return false;
        }
        Interlocked.Increment(ref service.Flows);
        return true;
    }

    internal void LeaveFlow(ServiceState service)
    {
        Interlocked.Decrement(ref service.Flows);
        Interlocked.Decrement(ref _flows);
    }

    /// <summary>Runs a connection or flow as tracked work: it ends with the proxy at the latest. False once the proxy stops.</summary>
    internal bool Track(Func<Task> work)
    {
        if (_lifetime.IsCancellationRequested) return false;
        var id = Interlocked.Increment(ref _workIds);
        var task = Task.Run(work);
        _work[id] = task;
        task.ContinueWith(_ => _work.TryRemove(id, out Task? _), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        return true;
    }

    private IEnumerable<Measurement<long>> ByService(Func<ServiceState, int> value)
    {
        List<ServiceState> services;
        lock (_gate) services = _services.Values.ToList();
        foreach (var s in services) yield return new Measurement<long>(value(s), new KeyValuePair<string, object?>("service", s.Label));
    }

    // ------------------------------------------------------------------ status

    /// <summary>TCP connections open now and UDP flows tracked now, all services together.</summary>
    /// <summary>The service namespace/name as edge DNS sees it: unknown, known without an address, or at its address.</summary>
    public Dns.ServiceLookup Lookup(string ns, string name)
    {
        lock (_gate)
            return _services.TryGetValue(new ServiceName(ns, name), out var s) ? new Dns.ServiceLookup(true, s.Address) : Dns.ServiceLookup.Unknown;
    }

    public (int Connections, int Flows) Active => (Volatile.Read(ref _active), Volatile.Read(ref _flows));

    public ProxyView View()
    {
        lock (_gate)
            return new ProxyView(true, Config.ServiceCidr.ToString(), Config.ServicesFile, _source, _version,
                _lastUpdate?.ToString("O", CultureInfo.InvariantCulture), _lastError, Volatile.Read(ref _active), Volatile.Read(ref _flows));
    }

    /// <summary>What an operator should know: services without an address or listener, a rejected services file.</summary>
    public IReadOnlyList<string> Warnings()
    {
        var list = new List<string>();
        lock (_gate)
        {
            foreach (var s in _services.Values.OrderBy(s => s.Name))
            {
                if (s.Error is not null) list.Add($"service {s.Label}: {s.Error}");
                foreach (var r in s.Runners.Where(r => r.Error is not null)) list.Add($"service {s.Label}: cannot listen at {r.Url}: {r.Error}");
            }
            if (_lastError is not null) list.Add($"the last change of the services file {Config.ServicesFile} was rejected: {_lastError.Replace('\n', ';')}");
        }
        return list;
    }

    /// <summary>Every service of the catalogue: its address, URLs, listeners, endpoints and counters.</summary>
    public IReadOnlyList<ServiceView> Services()
    {
        List<(ServiceState State, List<PortRunner> Runners)> services;
        lock (_gate) services = _catalog.Services.Select(s => _services[s.Name]).Select(s => (s, s.Runners.ToList())).ToList();
        var views = new List<ServiceView>(services.Count);
        foreach (var (s, runners) in services)
        {
            var spec = s.Spec!;
            var ports = runners.Select(r => new ServicePortView(r.Port.Name, r.Port.Port, r.Port.ProtocolName, r.Port.TargetPort, r.Url, r.Listening, r.Error,
                Interlocked.Read(ref r.Connections), Interlocked.Read(ref r.Failures), Volatile.Read(ref r.Active), r.FlowCount, Interlocked.Read(ref r.Dropped))).ToList();
            var states = runners.SelectMany(r => r.Picker.States()).ToList();
            var endpoints = spec.Endpoints.Select(e =>
            {
                var mine = states.Where(x => x.Target.NodeName == e.NodeName && x.Target.Ip.Equals(e.Ip)).ToList();
                var path = Upstreams.IsLocal(new EndpointTarget(e.NodeName, e.Ip, 0)) ? "local" : "tunnel";
                return new EndpointView(e.NodeName, e.Ip.ToString(), spec.Ports.Select(e.PortFor).ToList(), path, mine.Any(x => x.CoolingDown), mine.Sum(x => x.Failures));
            }).ToList();
            var url = ports.FirstOrDefault(p => p.Protocol == "TCP" && p.Url.StartsWith("http", StringComparison.Ordinal))?.Url
                ?? ports.FirstOrDefault(p => p.Protocol == "TCP")?.Url ?? ports.FirstOrDefault()?.Url;
            views.Add(new ServiceView(spec.Name.Name, spec.Name.Namespace, s.Address?.ToString(), url,
                PolicyName(spec.Policy), spec.Affinity.ToString(), ports, endpoints,
                Interlocked.Read(ref s.BytesFromClients), Interlocked.Read(ref s.BytesToClients), s.Error ?? ports.FirstOrDefault(p => p.Error is not null)?.Error));
        }
        return views;
    }

    private static string PolicyName(LoadBalancingPolicy p) => p switch
    {
        LoadBalancingPolicy.Random => "random",
        LoadBalancingPolicy.ConsistentHash => "consistentHash",
        _ => "roundRobin",
    };

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        if (_watch is not null) await _watch.DisposeAsync().ConfigureAwait(false);
        List<PortRunner> runners;
        lock (_gate) runners = _ports.Values.ToList();
        foreach (var r in runners) r.StopListening();
        await _lifetime.CancelAsync().ConfigureAwait(false);
        try { await Task.WhenAll(_work.Values.Append(_retry ?? Task.CompletedTask)).WaitAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(false); }
        catch (Exception) { /* connections end on cancel; a straggler is abandoned */ }
        Metrics.Dispose();
        _lifetime.Dispose();
    }
}

/// <summary>Where one service port listens.</summary>
internal readonly record struct PortKey(IPAddress Address, int Port, ServiceProtocol Protocol);

/// <summary>A service's state across catalogue updates: its current spec and address, and counters that survive updates.</summary>
internal sealed class ServiceState(ServiceName name)
{
    public ServiceName Name { get; } = name;
    public string Label { get; } = name.ToString();
    public ServiceSpec? Spec { get; set; }
    public IPAddress? Address { get; set; }
    public string? Error { get; set; }
    public List<PortRunner> Runners { get; set; } = [];
    public int Active;
    public int Flows;
    public long BytesFromClients;
    public long BytesToClients;
}
