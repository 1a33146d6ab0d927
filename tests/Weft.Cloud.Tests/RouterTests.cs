using System.Diagnostics;
using System.Net;
using System.Net.WebSockets;
using System.Text;

namespace Weft.Cloud.Tests;

/// <summary>The router and hub of one replica with an edge link in process (embedded directory).</summary>
public sealed class RouterTests : IAsyncLifetime
{
    private readonly InProcess _env = new();
    private TestApp _app = null!;
    private CloudService _cloud = null!;

    public async Task InitializeAsync()
    {
        _app = await _env.StartAppAsync("edge-app");
        _cloud = await _env.StartCloudAsync(_env.Config("cloud-a", _app));
        await _env.StartEdgeAsync(_env.EdgeOptions("node1", new Uri($"ws://{_cloud.Options.Hub.Listen}")));
    }

    public async Task DisposeAsync() => await _env.DisposeAsync();

    private Uri Url(string path) => new($"http://{_cloud.Options.Router.Listen}{path}");

    [Fact]
    public async Task Servicebus_passes_status_headers_and_body_through()
    {
        var r = await _env.Http.GetAsync(Url("/node1/default/demo"));
        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        Assert.Equal("edge-app", await r.Content.ReadAsStringAsync());
        Assert.Equal("cloud-a", r.Headers.GetValues("X-Weft-Served-By").Single());

        var body = Enumerable.Range(0, 70_000).Select(i => (byte)(i * 7)).ToArray();
        using var post = new HttpRequestMessage(HttpMethod.Post, Url("/node1/default/demo/echo?x=1&y=%20")) { Content = new ByteArrayContent(body) };
        post.Content.Headers.ContentType = new("application/x-test");
        r = await _env.Http.SendAsync(post);
        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        Assert.Equal(body, await r.Content.ReadAsByteArrayAsync());
        Assert.Equal("POST", r.Headers.GetValues("X-Echo-Method").Single());
        Assert.Equal("?x=1&y=%20", r.Headers.GetValues("X-Echo-Query").Single());
        Assert.Equal("application/x-test", r.Content.Headers.ContentType!.MediaType);

        r = await _env.Http.GetAsync(Url("/node1/default/demo/status/418"));
        Assert.Equal((HttpStatusCode)418, r.StatusCode);
        Assert.Equal("status", r.Headers.GetValues("X-App").Single());
        Assert.Equal("status 418", await r.Content.ReadAsStringAsync());

        r = await _env.Http.GetAsync(Url("/node1/default/demo/status/500"));
        Assert.Equal(HttpStatusCode.InternalServerError, r.StatusCode);

        var big = await _env.Http.GetByteArrayAsync(Url("/node1/default/demo/bytes/300000"));
        Assert.Equal(Enumerable.Range(0, 300_000).Select(i => (byte)(i % 251)).ToArray(), big);

        using var h = new HttpRequestMessage(HttpMethod.Get, Url("/node1/default/demo/headers"));
        h.Headers.Add("X-Test", "passed");
        Assert.Equal("passed", await (await _env.Http.SendAsync(h)).Content.ReadAsStringAsync());
    }

    [Theory]
    [InlineData("/node1", 400)]
    [InlineData("/node1/default", 400)]
    [InlineData("/node1//demo", 400)]
    [InlineData("/Node_1/default/demo", 400)]
    [InlineData("/node1/Default/demo", 400)]
    [InlineData("/node1/default/nothing", 404)]
    [InlineData("/node1/other/demo", 404)]
    [InlineData("/never-seen/default/demo", 404)]
    [InlineData("/_weft/nothing", 404)]
    public async Task Bad_requests_get_the_right_status(string path, int status)
    {
        var r = await _env.Http.GetAsync(Url(path));
        Assert.Equal(status, (int)r.StatusCode);
        Assert.False(string.IsNullOrWhiteSpace(await r.Content.ReadAsStringAsync()));
    }

    [Fact]
    public async Task Oversized_bodies_get_413_with_or_without_a_length()
    {
        // As a careful client sends a large body (Expect: 100-continue): a server that refuses it early may otherwise
        // close the connection while the body is still being written, and the client sees a broken pipe, not the 413.
        using var sized = new HttpRequestMessage(HttpMethod.Post, Url("/node1/default/demo/echo")) { Content = new ByteArrayContent(new byte[(1 << 20) + 1]) };
        sized.Headers.ExpectContinue = true;
        var r = await _env.Http.SendAsync(sized);
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, r.StatusCode);
        var chunked = new StreamContent(new MemoryStream(new byte[(1 << 20) + 10]));
        using var req = new HttpRequestMessage(HttpMethod.Post, Url("/node1/default/demo/echo")) { Content = chunked };
        req.Headers.TransferEncodingChunked = true;
        req.Headers.ExpectContinue = true;
        r = await _env.Http.SendAsync(req);
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, r.StatusCode);
        // and the next request on the router is served
        Assert.Equal(HttpStatusCode.OK, (await _env.Http.GetAsync(Url("/node1/default/demo"))).StatusCode);
    }

    [Fact]
    public async Task The_deadline_gives_504_and_never_a_hang()
    {
        using var req = new HttpRequestMessage(HttpMethod.Get, Url("/node1/default/demo/slow/10000"));
        req.Headers.Add("X-Weft-Timeout-Ms", "300");
        var sw = Stopwatch.StartNew();
        var r = await _env.Http.SendAsync(req);
        Assert.Equal(HttpStatusCode.GatewayTimeout, r.StatusCode);
        Assert.InRange(sw.Elapsed.TotalMilliseconds, 250, 3000);
        using var bad = new HttpRequestMessage(HttpMethod.Get, Url("/node1/default/demo"));
        bad.Headers.Add("X-Weft-Timeout-Ms", "soon");
        Assert.Equal(HttpStatusCode.BadRequest, (await _env.Http.SendAsync(bad)).StatusCode);
    }

    [Fact]
    public async Task Known_but_offline_node_gets_503_and_a_dead_app_502()
    {
        var link = await _env.StartEdgeAsync(_env.EdgeOptions("node2", new Uri($"ws://{_cloud.Options.Hub.Listen}")));
        var closed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        void OnClosed(string node) { if (node == "node2") closed.TrySetResult(); }
        _cloud.SessionClosed += OnClosed;
        try
        {
            await link.DisposeAsync();
            if (_cloud.OwnedNodes.Contains("node2")) await closed.Task.WaitAsync(InProcess.Deadline);
        }
        finally { _cloud.SessionClosed -= OnClosed; }
        Assert.DoesNotContain("node2", _cloud.OwnedNodes);
        var r = await _env.Http.GetAsync(Url("/node2/default/demo"));
        Assert.Equal(HttpStatusCode.ServiceUnavailable, r.StatusCode);
        Assert.Contains("no session", await r.Content.ReadAsStringAsync(), StringComparison.Ordinal);

        await _app.DisposeAsync();
        r = await _env.Http.GetAsync(Url("/node1/default/demo"));
        Assert.Equal(HttpStatusCode.BadGateway, r.StatusCode);
        Assert.Contains("node1", await r.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_malformed_frame_closes_only_that_session()
    {
        using var ws = new ClientWebSocket();
        ws.Options.SetRequestHeader("node_id", "rogue");
        ws.Options.SetRequestHeader("Authorization", "Bearer " + _env.TokenFor("rogue"));
        await ws.ConnectAsync(new Uri($"ws://{_cloud.Options.Hub.Listen}/"), CancellationToken.None);
        await ws.SendAsync(Encoding.UTF8.GetBytes("{\"header\":{\"msg_id\":1}}"), WebSocketMessageType.Text, true, CancellationToken.None);
        var buf = new byte[64 * 1024];
        using var cts = new CancellationTokenSource(InProcess.Deadline);
        WebSocketReceiveResult res;
        do res = await ws.ReceiveAsync(buf, cts.Token); while (res.MessageType != WebSocketMessageType.Close);
        Assert.Equal(WebSocketCloseStatus.ProtocolError, res.CloseStatus);
        Assert.Contains("msg_id", res.CloseStatusDescription, StringComparison.Ordinal);
        Assert.Equal(1, _cloud.Metrics.Violations);
        Assert.Equal(HttpStatusCode.OK, (await _env.Http.GetAsync(Url("/node1/default/demo"))).StatusCode);
    }

    [Fact]
    public async Task Hub_refuses_bad_tokens_and_plain_requests()
    {
        using var ws = new ClientWebSocket();
        ws.Options.SetRequestHeader("node_id", "node9");
        ws.Options.SetRequestHeader("Authorization", "Bearer " + _env.TokenFor("node1"));
        ws.Options.CollectHttpResponseDetails = true;
        await Assert.ThrowsAsync<WebSocketException>(() => ws.ConnectAsync(new Uri($"ws://{_cloud.Options.Hub.Listen}/"), CancellationToken.None));
        Assert.Equal(HttpStatusCode.Unauthorized, ws.HttpStatusCode);
        var plain = await _env.Http.GetAsync(new Uri($"http://{_cloud.Options.Hub.Listen}/p/node1/events"));
        Assert.Equal(HttpStatusCode.BadRequest, plain.StatusCode);
        Assert.Equal(0, _cloud.Metrics.Violations);
    }

    [Fact]
    public async Task Status_reports_sessions_and_health()
    {
        var json = await _env.Http.GetStringAsync(Url("/_weft/status"));
        Assert.Contains("\"replica\":\"cloud-a\"", json, StringComparison.Ordinal);
        Assert.Contains("\"owns\":[\"node1\"]", json, StringComparison.Ordinal);
        Assert.Contains("\"degraded\":false", json, StringComparison.Ordinal);
        Assert.Equal("ready\n", await _env.Http.GetStringAsync(Url("/_weft/readyz")));
        var metrics = await _env.Http.GetStringAsync(Url("/_weft/metrics"));
        Assert.Contains("# TYPE weft_cloud_sessions gauge", metrics, StringComparison.Ordinal);
        Assert.Matches(@"(?m)^weft_cloud_sessions [1-9]", metrics);
        Assert.Contains("weft_cloud_sessions_opened_total", metrics, StringComparison.Ordinal);
    }
}
