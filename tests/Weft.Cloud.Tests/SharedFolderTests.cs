using System.Net;
using Weft.Cloud.Directory;

namespace Weft.Cloud.Tests;

/// <summary>Two replicas on one machine sharing the embedded directory (the lab's cloud-a and cloud-b).</summary>
public sealed class SharedFolderTests : IAsyncLifetime
{
    private readonly InProcess _env = new();

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync() => await _env.DisposeAsync();

    [Fact]
    public async Task The_non_owner_forwards_once_and_a_forwarded_request_is_never_forwarded_again()
    {
        var app = await _env.StartAppAsync("lan2-a");
        var shared = Path.Combine(_env.Folder, "directory");
        var a = await _env.StartCloudAsync(_env.Config("cloud-a", app, embedded: shared));
        var b = await _env.StartCloudAsync(_env.Config("cloud-b", app, embedded: shared));
        await _env.StartEdgeAsync(_env.EdgeOptions("lan2-a", new Uri($"ws://{a.Options.Hub.Listen}")));

        var viaB = new Uri($"http://{b.Options.Router.Listen}/lan2-a/default/demo");
        using var cts = new CancellationTokenSource(InProcess.Deadline);
        // b learns the owner by polling the shared folder (every 200 ms), and says so
        var learned = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        void OnOwner(OwnerRecord o) { if (o.Node == "lan2-a") learned.TrySetResult(); }
        b.Directory.OwnerChanged += OnOwner;
        try
        {
            if (b.Directory.Lookup("lan2-a") is null) await learned.Task.WaitAsync(cts.Token);
        }
        finally { b.Directory.OwnerChanged -= OnOwner; }
        Assert.NotNull(b.Directory.Lookup("lan2-a"));
        var r = await _env.Http.GetAsync(viaB, cts.Token);
        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        Assert.Equal("lan2-a", await r.Content.ReadAsStringAsync(cts.Token));
        Assert.Equal("cloud-a", r.Headers.GetValues("X-Weft-Served-By").Single());
        Assert.Equal("cloud-b", r.Headers.GetValues("X-Weft-Replica").Single());
        Assert.Equal(1, b.Metrics.Forwards);

        using var forwarded = new HttpRequestMessage(HttpMethod.Get, viaB);
        forwarded.Headers.Add("X-Weft-Forwarded-By", "cloud-c");
        r = await _env.Http.SendAsync(forwarded, cts.Token);
        Assert.Equal(HttpStatusCode.MisdirectedRequest, r.StatusCode);
        Assert.Equal("cloud-a", r.Headers.GetValues("X-Weft-Owner").Single());
        Assert.Equal(1, b.Metrics.Forwards);

        // the owner going away: b's forward cannot connect → 503 naming the owner, at once
        await a.DisposeAsync();
        r = await _env.Http.GetAsync(viaB, cts.Token);
        Assert.True(r.StatusCode is HttpStatusCode.ServiceUnavailable, $"got {(int)r.StatusCode}");
    }
}
