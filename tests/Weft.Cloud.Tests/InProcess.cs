using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Weft.Cloud.Config;
using Weft.Cloud.Hub;
using Weft.Edge;

namespace Weft.Cloud.Tests;

/// <summary>A replica and edge links in this process: fast tests of the router, hub and delivery logic over real sockets.</summary>
public sealed class InProcess : IAsyncDisposable
{
    public static readonly TimeSpan Deadline = TimeSpan.FromSeconds(20);

    private readonly List<IAsyncDisposable> _owned = [];

    public string Folder { get; } = System.IO.Directory.CreateTempSubdirectory("weft-cloud-test-").FullName;

    public string Secret => CloudConfig.NewSecret(Folder);

    public HttpClient Http { get; } = new() { Timeout = TimeSpan.FromSeconds(30) };

    public async Task<CloudService> StartCloudAsync(CloudConfig config)
    {
        var options = CloudConfigLoader.Parse(config.Yaml(), Folder);
        var cloud = new CloudService(options, NullLoggerFactory.Instance);
        await cloud.StartAsync(CancellationToken.None);
        _owned.Add(cloud);
        return cloud;
    }

    public CloudConfig Config(string name, TestApp app, string? embedded = null, Uri? etcd = null, string extra = "", string hubExtra = "") => new()
    {
        Name = name, SecretFile = Secret, AppPort = app.Port, IngestUrl = new Uri(app.Url, "/ingest"), EmbeddedPath = embedded, Etcd = etcd, Extra = extra, HubExtra = hubExtra,
    };

    public string TokenFor(string node) => NodeTokens.FromFile(Secret).TokenFor(node);

    public EdgeOptions EdgeOptions(string node, params Uri[] urls) => new()
    {
        NodeName = node, CloudUrls = urls, Token = TokenFor(node), MqttBroker = null,
        KeepaliveInterval = TimeSpan.FromMilliseconds(500), ReadTimeout = TimeSpan.FromSeconds(3), ReconnectInitialDelay = TimeSpan.FromMilliseconds(100),
        ReconnectMaxDelay = TimeSpan.FromSeconds(1), UploadResendInterval = TimeSpan.FromMilliseconds(500),
    };

    public async Task<CloudLink> StartEdgeAsync(EdgeOptions options, ILoggerFactory? loggers = null, bool waitConnected = true)
    {
        var link = new CloudLink(options, loggers ?? NullLoggerFactory.Instance);
        _owned.Add(link);
        link.Start();
        if (waitConnected)
        {
            using var cts = new CancellationTokenSource(Deadline);
            await link.WaitAsync(s => s.Connected, cts.Token);
        }
        return link;
    }

    public async Task<TestApp> StartAppAsync(string name)
    {
        var app = await TestApp.StartAsync(name);
        _owned.Add(app);
        return app;
    }

    public T Own<T>(T d) where T : IAsyncDisposable
    {
        _owned.Add(d);
        return d;
    }

    public async ValueTask DisposeAsync()
    {
        for (var i = _owned.Count - 1; i >= 0; i--) await _owned[i].DisposeAsync();
        Http.Dispose();
        try { System.IO.Directory.Delete(Folder, true); } catch (IOException) { }
    }
}
