using System.Net;
using System.Net.Sockets;
using System.Text.Json;

[assembly: System.Runtime.Versioning.UnsupportedOSPlatform("windows")]

namespace Weft.Cli.Tests;

public class KeyCommandTests
{
    [Theory]
    [InlineData("k8s-master", "12D3KooWB5qVCMrMNLpBDfMu6o4dy6ci2UqDVsFVomcd2PfYVzfW")]
    [InlineData("ke-edge2", "12D3KooWSD4f5fZb5c9PQ6FPVd8Em4eKX3mRezcyqXSHUyomoy8S")]
    [InlineData("ke-node1\n", "12D3KooWFP7gZfX1n1HLQAZt7rCZpffRvqXf7QYASxbz9mrEkAVi")]
    public async Task Legacy_id_matches_EdgeMesh(string node, string id)
    {
        var (code, stdout, _) = await WeftProcess.RunAsync("key", "legacy-id", node);
        Assert.Equal(0, code);
        Assert.Equal(id, stdout.Trim());
    }

    [Fact]
    public async Task Generate_writes_a_0600_key_that_show_reads_back_and_never_overwrites()
    {
        var dir = Directory.CreateTempSubdirectory("weft-key-");
        try
        {
            var path = Path.Combine(dir.FullName, "sub", "node.key");
            var (code, stdout, _) = await WeftProcess.RunAsync("key", "generate", "--out", path);
            Assert.Equal(0, code);
            var id = stdout.Trim();
            Assert.StartsWith("12D3KooW", id);
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(path));

            var show = await WeftProcess.RunAsync("key", "show", path);
            Assert.Equal(0, show.Code);
            Assert.Equal(id, show.Out.Trim());

            var again = await WeftProcess.RunAsync("key", "generate", "--out", path);
            Assert.Equal(2, again.Code);
            Assert.Contains("--force", again.Err);

            File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.OtherRead);
            var loose = await WeftProcess.RunAsync("key", "show", path);
            Assert.Equal(2, loose.Code);
            Assert.Contains("chmod 600", loose.Err);

            var two = await WeftProcess.RunAsync("key", "generate", "--out", path, "--force");
            Assert.Equal(0, two.Code);
            Assert.NotEqual(id, two.Out.Trim());
        }
        finally
        {
            dir.Delete(true);
        }
    }

    [Fact]
    public async Task Show_of_a_garbage_file_is_a_config_error()
    {
        var path = Path.GetTempFileName();
        try
        {
            File.WriteAllBytes(path, [1, 2, 3, 4, 5]);
            File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            var r = await WeftProcess.RunAsync("key", "show", path);
            Assert.Equal(2, r.Code);
            Assert.Contains("not a libp2p Ed25519 private key", r.Err);
        }
        finally { File.Delete(path); }
    }
}

public class P2PCommandTests
{
    [Fact]
    public async Task Serve_prints_its_addresses_then_ping_and_perf_work_against_it()
    {
        var dir = Directory.CreateTempSubdirectory("weft-serve-");
        try
        {
            var key = Path.Combine(dir.FullName, "id.key");
            await using var serve = WeftProcess.Start("p2p", "serve", "--listen", "/ip4/127.0.0.1/tcp/0", "--key", key);
            var line = await serve.WaitLine("listening ");
            var addr = line["listening ".Length..];
            Assert.Matches(@"^/ip4/127\.0\.0\.1/tcp/\d+/p2p/12D3KooW\w+$", addr);
            var show = await WeftProcess.RunAsync("key", "show", key);
            Assert.EndsWith("/p2p/" + show.Out.Trim(), addr);

            var ping = await WeftProcess.RunAsync("p2p", "ping", addr, "--count", "3");
            Assert.True(ping.Code == 0, ping.Err);
            Assert.Equal(3, ping.Out.Split('\n').Count(l => l.StartsWith("pong from ", StringComparison.Ordinal)));

            var perf = await WeftProcess.RunAsync("p2p", "perf", addr, "--upload", "8MiB", "--download", "4MiB", "--json");
            Assert.True(perf.Code == 0, perf.Err);
            var json = JsonDocument.Parse(perf.Out.Trim()).RootElement;
            Assert.Equal(8L << 20, json.GetProperty("uploadBytes").GetInt64());
            Assert.Equal(4L << 20, json.GetProperty("downloadBytes").GetInt64());
            Assert.True(json.GetProperty("uploadSeconds").GetDouble() > 0);
            Assert.True(json.GetProperty("downloadSeconds").GetDouble() > 0);

            serve.Terminate();
            Assert.Equal(0, await serve.WaitExit());
        }
        finally
        {
            dir.Delete(true);
        }
    }

    [Fact]
    public async Task Serve_relays_reserves_and_ping_reaches_a_node_through_its_circuit_then_directly()
    {
        var dir = Directory.CreateTempSubdirectory("weft-relay-");
        try
        {
            await using var relay = WeftProcess.Start("p2p", "serve", "--key", Path.Combine(dir.FullName, "relay.key"), "--relay-service", "--relay-limits", "off");
            var relayAddr = (await relay.WaitLine("listening "))["listening ".Length..];
            Assert.StartsWith("relay service on, limits off", await relay.WaitLine("relay service "));

            await using var node = WeftProcess.Start("p2p", "serve", "--reserve", relayAddr);
            Assert.StartsWith("reserved on " + relayAddr[(relayAddr.LastIndexOf('/') + 1)..], await node.WaitLine("reserved on "));
            var circuit = (await node.WaitLine("listening ", l => l.Contains("/p2p-circuit/")))["listening ".Length..];
            Assert.StartsWith(relayAddr + "/p2p-circuit/p2p/", circuit);

            var ping = await WeftProcess.RunAsync("p2p", "ping", circuit, "--listen", "/ip4/127.0.0.1/tcp/0", "--wait-direct", "10", "--count", "2");
            Assert.True(ping.Code == 0, ping.Out + ping.Err);
            Assert.Contains("/p2p-circuit/", ping.Out.Split('\n')[0]);
            Assert.Contains("path direct /ip4/127.0.0.1/tcp/", ping.Out);
            Assert.Equal(2, ping.Out.Split('\n').Count(l => l.StartsWith("pong from ", StringComparison.Ordinal)));
            Assert.StartsWith("direct ", await node.WaitLine("direct "));
        }
        finally
        {
            dir.Delete(true);
        }
    }

    [Fact]
    public async Task Unreachable_peer_is_exit_1()
    {
        var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        var port = ((IPEndPoint)l.LocalEndpoint).Port;
        l.Stop();
        var r = await WeftProcess.RunAsync("p2p", "ping", $"/ip4/127.0.0.1/tcp/{port}/p2p/12D3KooWB5qVCMrMNLpBDfMu6o4dy6ci2UqDVsFVomcd2PfYVzfW");
        Assert.Equal(1, r.Code);
        Assert.Contains("failed", r.Err);
    }

    [Theory]
    [InlineData("p2p", "ping", "not-a-multiaddr")]
    [InlineData("p2p", "ping", "/ip4/127.0.0.1/tcp/1", "--count", "zero")]
    [InlineData("p2p", "serve", "--bogus")]
    [InlineData("p2p", "serve", "--listen", "/ip4/127.0.0.1/udp/1")]
    [InlineData("p2p", "serve", "--psk", "/nonexistent/psk")]
    [InlineData("p2p", "perf", "/ip4/127.0.0.1/tcp/1", "--upload", "lots")]
    [InlineData("p2p", "serve", "--relay-limits", "off")]
    [InlineData("p2p", "serve", "--relay-service", "--relay-limits", "some")]
    [InlineData("p2p", "serve", "--relay-service", "--relay-max-circuits", "-1")]
    [InlineData("p2p", "serve", "--reserve", "/ip4/127.0.0.1/tcp/1")]
    [InlineData("p2p", "serve", "--relay-service", "--relay-max-reservations", "5000")]
    [InlineData("p2p", "ping", "/ip4/127.0.0.1/tcp/1", "--wait-direct", "5")]
    [InlineData("nope")]
    public async Task Bad_usage_is_exit_2_with_a_message(params string[] args)
    {
        var r = await WeftProcess.RunAsync(args);
        Assert.Equal(2, r.Code);
        Assert.False(string.IsNullOrWhiteSpace(r.Err));
    }
}
