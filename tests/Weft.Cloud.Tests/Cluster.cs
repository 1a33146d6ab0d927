using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.Extensions.Logging.Abstractions;
using Weft.Cloud.Hub;
using Weft.Edge;
using Weft.Lab.Services;

namespace Weft.Cloud.Tests;

/// <summary>
/// Three `weft cloud` processes (cloud-a, cloud-b, cloud-c) on an etcd directory behind haproxy (frontends
/// "hub" and "router"), mosquitto as the edge broker, and the test app, all started here. A component that
/// cannot be installed or started leaves <see cref="SkipReason"/> set: every test then reports skipped with it.
/// </summary>
public sealed class Cluster : IAsyncLifetime
{
    public static readonly string[] Names = ["cloud-a", "cloud-b", "cloud-c"];
    public static readonly TimeSpan Deadline = TimeSpan.FromSeconds(20);

    public string Folder { get; } = System.IO.Directory.CreateTempSubdirectory("weft-cluster-").FullName;
    public string? SkipReason { get; private set; }
    public EtcdService Etcd { get; private set; } = null!;
    public MosquittoService Mqtt { get; private set; } = null!;
    public HaproxyService Lb { get; private set; } = null!;
    public TestApp App { get; private set; } = null!;
    public CloudConfig[] Configs { get; private set; } = [];
    public CloudProcess?[] Replicas { get; } = new CloudProcess?[3];
    public HttpClient Http { get; } = new() { Timeout = TimeSpan.FromSeconds(30) };
    private readonly List<CloudLink> _links = [];

    public Uri LbHub => new($"ws://{Lb.EndPoint("hub")}");
    public Uri LbRouter => new($"http://{Lb.EndPoint("router")}");

    public async Task InitializeAsync()
    {
        try
        {
            Etcd = await EtcdService.StartNewAsync();
            Mqtt = await MosquittoService.StartNewAsync();
        }
        catch (ServiceUnavailableException ex)
        {
            SkipReason = ex.Message;
            return;
        }
        App = await TestApp.StartAsync("edge-app");
        var secret = CloudConfig.NewSecret(Folder);
        Configs = Names.Select(n => new CloudConfig { Name = n, SecretFile = secret, AppPort = App.Port, IngestUrl = new Uri(App.Url, "/ingest"), Etcd = Etcd.ClientUrl }).ToArray();
        try
        {
            Lb = await HaproxyService.StartNewAsync(
            [
                new HaproxyFrontend("hub", Configs.Select(c => c.HubEndPoint).ToList()),
                new HaproxyFrontend("router", Configs.Select(c => c.RouterEndPoint).ToList()),
            ]);
        }
        catch (ServiceUnavailableException ex)
        {
            SkipReason = ex.Message;
            return;
        }
        await EnsureAllRunningAsync();
    }

    public void SkipIfUnavailable() => Skip.If(SkipReason is not null, "skipped: " + SkipReason);

    /// <summary>Starts every replica that is not running (in parallel).</summary>
    public async Task EnsureAllRunningAsync()
    {
        await Task.WhenAll(Enumerable.Range(0, 3).Select(async i =>
        {
            if (Replicas[i] is { HasExited: false }) return;
            if (Replicas[i] is { } dead) await dead.DisposeAsync();
            Replicas[i] = await CloudProcess.StartAsync(Configs[i], Folder);
        }));
        if (!Etcd.IsRunning) await Etcd.StartAsync();
    }

    public int IndexOf(string replica) => Array.IndexOf(Names, replica);

    public Uri Router(int i, string path) => new(Configs[i].RouterUrl, path);

    public CloudLink StartEdge(string node, bool mqtt = false)
    {
        var link = new CloudLink(new EdgeOptions
        {
            NodeName = node, CloudUrls = [LbHub], Token = NodeTokens.FromFile(Configs[0].SecretFile).TokenFor(node),
            MqttBroker = mqtt ? Mqtt.EndPoint : null, MqttClientId = "weft-edge-" + node + "-" + Guid.NewGuid().ToString("N")[..6],
            KeepaliveInterval = TimeSpan.FromMilliseconds(500), ReadTimeout = TimeSpan.FromSeconds(3),
            ReconnectInitialDelay = TimeSpan.FromMilliseconds(100), ReconnectMaxDelay = TimeSpan.FromSeconds(1), UploadResendInterval = TimeSpan.FromMilliseconds(500),
        }, NullLoggerFactory.Instance);
        lock (_links) _links.Add(link);
        link.Start();
        return link;
    }

    public static async Task<CloudLinkStatus> WaitAsync(CloudLink link, Func<CloudLinkStatus, bool> condition)
    {
        using var cts = new CancellationTokenSource(Deadline);
        try
        {
            return await link.WaitAsync(condition, cts.Token);
        }
        catch (OperationCanceledException)
        {
            throw new TimeoutException($"cloud link never reached the expected state; last: {link.Status}");
        }
    }

    public async Task<JsonElement> StatusAsync(int i) => await Http.GetFromJsonAsync<JsonElement>(Router(i, "/_weft/status"));

    /// <summary>GETs until the answer is 200 (ownership reaches other replicas' caches through the etcd watch), within the deadline; returns the answer and how long it took.</summary>
    public async Task<(HttpResponseMessage Response, TimeSpan Took)> GetUntilOkAsync(Uri url)
    {
        var sw = System.Diagnostics.Stopwatch.StartNew();
        using var cts = new CancellationTokenSource(Deadline);
        while (true)
        {
            var r = await Http.GetAsync(url, cts.Token);
            if (r.StatusCode == HttpStatusCode.OK || cts.IsCancellationRequested) return (r, sw.Elapsed);
            // Propagation through the watch takes milliseconds; poll at a short interval until the deadline.
            await Task.Delay(20, cts.Token);
        }
    }

    public async Task DisposeAsync()
    {
        foreach (var l in _links) await l.DisposeAsync();
        foreach (var r in Replicas) if (r is not null) await r.DisposeAsync();
        if (Lb is not null) await Lb.DisposeAsync();
        if (Mqtt is not null) await Mqtt.DisposeAsync();
        if (Etcd is not null) await Etcd.DisposeAsync();
        if (App is not null) await App.DisposeAsync();
        Http.Dispose();
        try { System.IO.Directory.Delete(Folder, true); } catch (IOException) { }
    }
}

[CollectionDefinition("cluster")]
public sealed class ClusterCollection : ICollectionFixture<Cluster>;
