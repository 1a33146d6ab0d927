using System.Collections.Concurrent;
using System.Net;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Logging.Abstractions;
using Weft.Edge.Mqtt;
using Weft.Lab.Services;

namespace Weft.Cloud.Tests;

/// <summary>The edge link against one in-process replica: URL lists, TLS with a token, eventbus delivery semantics.</summary>
public sealed class EdgeLinkTests : IAsyncLifetime
{
    private readonly InProcess _env = new();
    private TestApp _app = null!;

    public async Task InitializeAsync() => _app = await _env.StartAppAsync("edge-app");

    public async Task DisposeAsync() => await _env.DisposeAsync();

    [Fact]
    public async Task A_dead_url_in_the_list_is_skipped()
    {
        var cloud = await _env.StartCloudAsync(_env.Config("cloud-a", _app));
        var dead = new Uri($"ws://127.0.0.1:{LabService.FreePort(IPAddress.Loopback)}");
        var link = await _env.StartEdgeAsync(_env.EdgeOptions("listed", dead, new Uri($"ws://{cloud.Options.Hub.Listen}")));
        var s = link.Status;
        Assert.Equal("cloud-a", s.Replica);
        Assert.Equal(cloud.Options.Hub.Listen.Port, s.Url!.Port);
        Assert.Equal(1, s.Sessions);
        Assert.Equal(0, s.QueueDepth);
    }

    [Fact]
    public async Task Tls_hub_with_a_trusted_ca_connects_and_an_untrusted_one_does_not()
    {
        var (certFile, keyFile, caFile) = WriteCert(_env.Folder, "ca1");
        var (_, _, otherCa) = WriteCert(_env.Folder, "ca2");
        var cfg = _env.Config("cloud-tls", _app, hubExtra: $"  tlsCertFile: {certFile}\n  tlsKeyFile: {keyFile}\n  allowPlaintext: false");
        var yaml = cfg.Yaml().Replace("  allowPlaintext: true\n", "", StringComparison.Ordinal);
        var cloud = new CloudService(Config.CloudConfigLoader.Parse(yaml, _env.Folder), NullLoggerFactory.Instance);
        _env.Own(cloud);
        await cloud.StartAsync(CancellationToken.None);
        var url = new Uri($"wss://localhost:{cloud.Options.Hub.Listen.Port}");
        var good = await _env.StartEdgeAsync(_env.EdgeOptions("secure", url) with { TrustedCaFile = caFile });
        Assert.Equal("cloud-tls", good.Status.Replica);
        Assert.Equal(HttpStatusCode.OK, (await _env.Http.GetAsync(new Uri($"http://{cloud.Options.Router.Listen}/secure/default/demo"))).StatusCode);

        var bad = await _env.StartEdgeAsync(_env.EdgeOptions("secure2", url) with { TrustedCaFile = otherCa }, waitConnected: false);
        using var cts = new CancellationTokenSource(InProcess.Deadline);
        var failed = await bad.WaitAsync(s => s.LastError is { } e && e != "not started", cts.Token);
        Assert.False(failed.Connected);
        Assert.DoesNotContain("secure2", cloud.OwnedNodes);

        var plain = await _env.StartEdgeAsync(_env.EdgeOptions("secure3", new Uri($"ws://127.0.0.1:{cloud.Options.Hub.Listen.Port}")), waitConnected: false);
        failed = await plain.WaitAsync(s => s.LastError is { } e && e != "not started", cts.Token);
        Assert.False(failed.Connected);
    }

    private static (string Cert, string Key, string Ca) WriteCert(string folder, string name)
    {
        using var caKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var caReq = new CertificateRequest("CN=" + name, caKey, HashAlgorithmName.SHA256);
        caReq.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        using var ca = caReq.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(1));
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var req = new CertificateRequest("CN=localhost", key, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        san.AddDnsName("localhost");
        req.CertificateExtensions.Add(san.Build());
        req.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1")], false));
        using var cert = req.Create(ca, DateTimeOffset.UtcNow.AddHours(-1), DateTimeOffset.UtcNow.AddHours(12), RandomNumberGenerator.GetBytes(8));
        var paths = (Path.Combine(folder, name + ".crt"), Path.Combine(folder, name + ".key"), Path.Combine(folder, name + "-ca.crt"));
        File.WriteAllText(paths.Item1, cert.ExportCertificatePem());
        File.WriteAllText(paths.Item2, key.ExportPkcs8PrivateKeyPem());
        File.WriteAllText(paths.Item3, ca.ExportCertificatePem());
        return paths;
    }

    [SkippableFact]
    public async Task Eventbus_messages_are_queued_while_offline_delivered_once_and_repeats_are_answered_by_id()
    {
        var broker = _env.Own(await Components.Mosquitto());
        var cloud = await _env.StartCloudAsync(_env.Config("cloud-a", _app));
        var hub = new Uri($"ws://{cloud.Options.Hub.Listen}");
        var router = new Uri($"http://{cloud.Options.Router.Listen}");
        var received = new ConcurrentQueue<string>();
        using var arrivals = new Arrivals();
        var sub = _env.Own(new MqttClient(new MqttClientOptions { Broker = broker.EndPoint, ClientId = "observer" }, NullLogger.Instance));
        var subscribed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        sub.Subscribed += () => subscribed.TrySetResult();
        sub.MessageReceived = m => { received.Enqueue(m.Topic + "=" + Encoding.UTF8.GetString(m.Payload.Span)); arrivals.Arrived(); return Task.CompletedTask; };
        sub.Start();
        using var cts = new CancellationTokenSource(InProcess.Deadline);
        await sub.SubscribeAsync("cloud/events/#", cts.Token);
        await subscribed.Task.WaitAsync(cts.Token);

        // the node must be known (connected once) before a message for it is accepted
        var first = await _env.StartEdgeAsync(_env.EdgeOptions("sensor", hub) with { MqttBroker = broker.EndPoint, MqttClientId = "edge-sensor" });
        var gone = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        void OnClosed(string node) { if (node == "sensor") gone.TrySetResult(); }
        cloud.SessionClosed += OnClosed;
        try
        {
            await first.DisposeAsync();
            if (cloud.OwnedNodes.Contains("sensor")) await gone.Task.WaitAsync(cts.Token);
        }
        finally { cloud.SessionClosed -= OnClosed; }

        async Task<(HttpStatusCode, JsonElement)> Post(string id, string body, string sub = "")
        {
            using var req = new HttpRequestMessage(HttpMethod.Post, new Uri(router, "/sensor/default/events" + sub)) { Content = new StringContent(body) };
            req.Headers.Add("X-Weft-Message-Id", id);
            req.Headers.Add("X-Weft-Timeout-Ms", "2000");
            var r = await _env.Http.SendAsync(req, cts.Token);
            return (r.StatusCode, r.IsSuccessStatusCode ? await r.Content.ReadFromJsonAsync<JsonElement>(cts.Token) : default);
        }

        var (code, json) = await Post("offline-1", "while away", "/room1");
        Assert.Equal(HttpStatusCode.Accepted, code);
        Assert.Equal("queued", json.GetProperty("status").GetString());

        var link = await _env.StartEdgeAsync(_env.EdgeOptions("sensor", hub) with { MqttBroker = broker.EndPoint, MqttClientId = "edge-sensor" });
        await arrivals.WaitUntilAsync(() => received.Contains("cloud/events/room1=while away"), cts.Token);

        (code, json) = await Post("live-1", "hello");
        Assert.Equal(HttpStatusCode.OK, code);
        Assert.Equal("delivered", json.GetProperty("status").GetString());
        Assert.False(json.GetProperty("duplicate").GetBoolean());
        (code, json) = await Post("live-1", "hello");
        Assert.Equal(HttpStatusCode.OK, code);
        Assert.True(json.GetProperty("duplicate").GetBoolean());
        await arrivals.WaitUntilAsync(() => received.Contains("cloud/events=hello"), cts.Token);
        // a marker message proves the broker has passed on everything before it
        await Post("marker", "end");
        await arrivals.WaitUntilAsync(() => received.Contains("cloud/events=end"), cts.Token);
        Assert.Single(received, x => x == "cloud/events=hello");
        Assert.Single(received, x => x == "cloud/events/room1=while away");

        (code, _) = await Post("bad id!", "x");
        Assert.Equal(HttpStatusCode.BadRequest, code);
        Assert.Equal(0, cloud.Delivery.PendingCount);
        Assert.True(link.Status.EventsPublished >= 3);
    }
}
