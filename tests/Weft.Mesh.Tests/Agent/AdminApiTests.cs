using System.Globalization;
using System.Net;
using System.Text.Json;
using Weft.Mesh.Admin;
using Weft.Mesh.Relays;

namespace Weft.Mesh.Tests.Agent;

/// <summary>The agent's admin API over HTTP: health, readiness that follows the relays, Prometheus metrics, status, and 4xx for bad requests.</summary>
public sealed class AdminApiTests
{
    private static bool AllReserved(IReadOnlyList<RelayLinkState> links) => links.Count > 0 && links.All(l => l.Status == RelayLinkStatus.Up && l.Reserved);

    [Fact]
    public async Task Health_readiness_metrics_status_and_bad_requests()
    {
        await using var mesh = new LoopbackMesh();
        mesh.DeclareRelays("r1");
        var a = await mesh.StartAsync("a");
        await using var admin = await AdminServer.StartAsync(a, new IPEndPoint(IPAddress.Loopback, 0), metricsOnly: null, CancellationToken.None);
        using var http = new HttpClient { BaseAddress = admin.Urls[0], Timeout = LoopbackMesh.Deadline };

        var health = await http.GetAsync("/healthz");
        Assert.Equal(HttpStatusCode.OK, health.StatusCode);

        // The only relay is not running: not ready, and it says why.
        var notReady = await http.GetAsync("/readyz");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, notReady.StatusCode);
        Assert.StartsWith("not ready: ", await notReady.Content.ReadAsStringAsync(), StringComparison.Ordinal);

        await mesh.StartAsync("r1");
        await LoopbackMesh.WaitRelays(a, l => AllReserved(l) && l.All(x => x.Rtt is not null), "a reservation on r1 and its first RTT");
        var ready = await http.GetAsync("/readyz");
        Assert.Equal(HttpStatusCode.OK, ready.StatusCode);

        var metrics = await http.GetAsync("/metrics");
        Assert.Equal(HttpStatusCode.OK, metrics.StatusCode);
        Assert.Equal("text/plain", metrics.Content.Headers.ContentType?.MediaType);
        var series = Parse(await metrics.Content.ReadAsStringAsync());
        Assert.Equal(1, Value(series, "weft_reservations"));
        Assert.Equal(1, Value(series, "weft_relay_up", "relay=\"r1\""));
        Assert.True(Value(series, "weft_relay_rtt_seconds", "relay=\"r1\"") > 0);
        Assert.True(Value(series, "weft_peers") >= 1);
        Assert.True(Value(series, "process_cpu_seconds_total") > 0);
        Assert.True(Value(series, "process_resident_memory_bytes") > 1 << 20);
        Assert.True(Value(series, "dotnet_gc_heap_bytes") > 0);
        Assert.Contains(series.Keys, k => k.StartsWith("dotnet_gc_collections_total{generation=\"0\"}", StringComparison.Ordinal));

        using (var status = JsonDocument.Parse(await http.GetStringAsync("/status")))
        {
            Assert.Equal("a", status.RootElement.GetProperty("node").GetString());
            Assert.True(status.RootElement.GetProperty("ready").GetBoolean());
        }

        // Bad requests: the right 4xx, with a reason.
        Assert.Equal(HttpStatusCode.BadRequest, (await http.PostAsync("/ping", null)).StatusCode);
        Assert.Equal(HttpStatusCode.BadRequest, (await http.PostAsync("/ping?node=r1&count=0", null)).StatusCode);
        Assert.Equal(HttpStatusCode.BadRequest, (await http.PostAsync("/ping?node=r1&timeoutMs=x", null)).StatusCode);
        // These agents derive peer IDs from names (EdgeMesh's identity mode), so any name resolves: a node that is
        // nowhere is a failed round trip with its reason, within the timeout.
        var nowhere = await http.PostAsync("/ping?node=nobody&timeoutMs=3000", null);
        Assert.Equal(HttpStatusCode.OK, nowhere.StatusCode);
        using (var line = JsonDocument.Parse((await nowhere.Content.ReadAsStringAsync()).Trim()))
        {
            Assert.False(line.RootElement.GetProperty("ok").GetBoolean());
            Assert.False(string.IsNullOrEmpty(line.RootElement.GetProperty("error").GetString()));
        }
        Assert.Equal(HttpStatusCode.NotFound, (await http.GetAsync("/nope")).StatusCode);

        // And a ping that works: NDJSON, one line per round trip.
        var ping = await http.PostAsync("/ping?node=r1&count=2&intervalMs=0", null);
        Assert.Equal(HttpStatusCode.OK, ping.StatusCode);
        var lines = (await ping.Content.ReadAsStringAsync()).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(2, lines.Length);
        Assert.All(lines, l => Assert.True(JsonDocument.Parse(l).RootElement.GetProperty("ok").GetBoolean(), l));
    }

    private static Dictionary<string, double> Parse(string text)
    {
        var series = new Dictionary<string, double>(StringComparer.Ordinal);
        foreach (var line in text.Split('\n'))
        {
            if (line.Length == 0 || line[0] == '#') continue;
            var space = line.LastIndexOf(' ');
            Assert.True(space > 0, $"not a sample line: {line}");
            series[line[..space]] = double.Parse(line.AsSpan(space + 1), NumberStyles.Float, CultureInfo.InvariantCulture);
        }
        return series;
    }

    private static double Value(Dictionary<string, double> series, string name, string? label = null)
    {
        var matches = series.Where(kv => (kv.Key == name || kv.Key.StartsWith(name + "{", StringComparison.Ordinal)) && (label is null || kv.Key.Contains(label, StringComparison.Ordinal))).ToList();
        Assert.True(matches.Count > 0, $"no series {name}{(label is null ? "" : " with " + label)}");
        return matches.Sum(kv => kv.Value);
    }
}
