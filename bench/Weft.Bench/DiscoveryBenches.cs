using System.Diagnostics;
using System.Globalization;
using Weft.P2P.Discovery;
using Weft.P2P.Host;
using Weft.P2P.Kad;
using Weft.P2P.Mdns;
using Weft.P2P.Ping;
using Weft.Wire.Identity;
using Weft.Wire.Kad;
using Weft.Wire.Multiformats;

namespace Weft.Bench;

/// <summary>
/// `dht-lookup`: N Kademlia server nodes in this process, each on its own 127.0.0.x, all joined through the
/// first; then find-peer lookups of random targets (first disconnected from the asker, so the answer comes from
/// DHT requests), closest-peer lookups of random keys, and provider lookups. Reports lookup time and hops, and as
/// the same run's baseline the round trip
/// of one request (libp2p ping) on the same loopback connections.
/// </summary>
public static class DhtLookupBench
{
    public static async Task<Dictionary<string, object?>> RunAsync(Options o, CancellationToken ct)
    {
        var n = o.GetInt("--nodes", 50);
        var lookups = o.GetInt("--lookups", 200);
        var k = o.GetInt("--bucket-size", 20);
        var alpha = o.GetInt("--alpha", 10);
        if (n is < 2 or > 240) throw new ArgumentException("--nodes must be 2..240 (one 127.0.0.x address each)");
        var options = new KadOptions
        {
            BucketSize = k,
            Alpha = alpha,
            MaxPeersPerIpPerBucket = 0, // inbound connections all come from 127.0.0.1 here
            RefreshInterval = TimeSpan.FromHours(1),
            BootstrapRetryInterval = TimeSpan.FromHours(1),
        };
        var hosts = new List<Libp2pHost>();
        var dhts = new List<KadDht>();
        try
        {
            for (var i = 0; i < n; i++)
            {
                var host = new Libp2pHost(new HostOptions { Key = Ed25519PrivateKey.Generate(), ListenAddresses = [Multiaddr.Parse($"/ip4/127.0.0.{10 + i}/tcp/0")] });
                PingService.Register(host);
                await host.StartAsync(ct).ConfigureAwait(false);
                hosts.Add(host);
                var dht = new KadDht(host, i == 0 ? options : options with { BootstrapPeers = [hosts[0].ListenAddresses[0].WithPeerId(hosts[0].PeerId)] });
                dht.Start();
                dhts.Add(dht);
            }
            var joinStart = Stopwatch.GetTimestamp();
            foreach (var d in dhts) await d.BootstrapAsync(ct).ConfigureAwait(false);
            var joinSeconds = Stopwatch.GetElapsedTime(joinStart).TotalSeconds;
            var tables = dhts.Select(d => (double)d.Table.Count).ToList();

            var rng = new Random(4490);
            var findMs = new List<double>();
            var hops = new List<double>();
            var asked = new List<double>();
            var pingMs = new List<double>();
            var outside = 0;
            for (var i = 0; i < lookups; i++)
            {
                int a = rng.Next(n), t;
                do t = rng.Next(n); while (t == a);
                var (asker, target) = (hosts[a], hosts[t]);
                if (!dhts[a].Table.Contains(target.PeerId)) outside++;
                foreach (var c in asker.ConnectionsTo(target.PeerId)) await c.DisposeAsync().ConfigureAwait(false);
                var r = await dhts[a].FindPeerAsync(target.PeerId, ct).ConfigureAwait(false) ?? throw new InvalidOperationException($"lookup {i}: {target.PeerId} not found");
                findMs.Add(r.Stats.Elapsed.TotalMilliseconds);
                hops.Add(r.Stats.Hops);
                asked.Add(r.Stats.Queried);

                // Baseline: one request/answer on a connection the lookup just opened (or any open one).
                var conn = asker.GetConnection(target.PeerId) ?? await asker.DialPeerAsync(target.PeerId, [], ct).ConfigureAwait(false);
                await using var ping = await PingService.OpenAsync(conn, ct).ConfigureAwait(false);
                pingMs.Add((await PingService.PingAsync(ping, asker.Time, ct).ConfigureAwait(false)).TotalMilliseconds);
            }

            // Closest peers of random keys: the whole lookup, until the k closest seen have all answered.
            var closestMs = new List<double>();
            var closestHops = new List<double>();
            for (var i = 0; i < lookups; i++)
            {
                var key = new byte[32];
                rng.NextBytes(key);
                var r = await dhts[rng.Next(n)].GetClosestPeersAsync(key, ct).ConfigureAwait(false);
                closestMs.Add(r.Stats.Elapsed.TotalMilliseconds);
                closestHops.Add(r.Stats.Hops);
            }

            // Providers: 10 keys provided by random nodes, each looked up from 10 other random nodes.
            var providerMs = new List<double>();
            var providerHops = new List<double>();
            for (var key = 0; key < 10; key++)
            {
                var content = ContentKey.ForText("bench-" + key.ToString(CultureInfo.InvariantCulture));
                var p = rng.Next(n);
                await dhts[p].ProvideAsync(content, ct).ConfigureAwait(false);
                for (var j = 0; j < 10; j++)
                {
                    var s = rng.Next(n);
                    if (s == p) continue;
                    var r = await dhts[s].FindProvidersAsync(content, 1, ct).ConfigureAwait(false);
                    if (r.Providers.All(x => x.Id != hosts[p].PeerId)) throw new InvalidOperationException($"provider of {content} not found");
                    providerMs.Add(r.Stats.Elapsed.TotalMilliseconds);
                    providerHops.Add(r.Stats.Hops);
                }
            }

            var res = new Dictionary<string, object?>
            {
                ["nodes"] = n,
                ["bucketSize"] = k,
                ["alpha"] = alpha,
                ["lookups"] = lookups,
                ["targetsOutsideAskerTable"] = outside,
                ["joinSeconds"] = Stats.Round(joinSeconds, 2),
                ["tableMean"] = Stats.Round(tables.Average(), 1),
                ["hopsHistogram"] = hops.GroupBy(h => (int)h).OrderBy(g => g.Key).ToDictionary(g => g.Key.ToString(CultureInfo.InvariantCulture), g => g.Count()),
                ["closestHopsHistogram"] = closestHops.GroupBy(h => (int)h).OrderBy(g => g.Key).ToDictionary(g => g.Key.ToString(CultureInfo.InvariantCulture), g => g.Count()),
                ["providerHopsHistogram"] = providerHops.GroupBy(h => (int)h).OrderBy(g => g.Key).ToDictionary(g => g.Key.ToString(CultureInfo.InvariantCulture), g => g.Count()),
            };
            Stats.AddPercentiles(res, findMs, "FindPeerMs");
            Stats.AddPercentiles(res, hops, "Hops", 2);
            Stats.AddPercentiles(res, asked, "PeersAsked", 1);
            Stats.AddPercentiles(res, providerMs, "FindProvidersMs");
            Stats.AddPercentiles(res, closestMs, "ClosestMs");
            Stats.AddPercentiles(res, closestHops, "ClosestHops", 2);
            Stats.AddPercentiles(res, pingMs, "RequestRttMs");
            res["findPeerOverRequestRtt"] = Stats.Round(Stats.Percentile(findMs, 50) / Stats.Percentile(pingMs, 50), 1);
            return res;
        }
        finally
        {
            foreach (var d in dhts) await d.DisposeAsync().ConfigureAwait(false);
            foreach (var h in hosts) await h.DisposeAsync().ConfigureAwait(false);
        }
    }
}

/// <summary>
/// `mdns-first`: time from starting an mDNS service to its first discovery, with a responder already running
/// on the LAN (run inside a network namespace: it multicasts on every interface it finds). Each run is a fresh
/// host and service (time counted from opening its socket); each is disposed and followed by a --gap-ms pause, so
/// the responder's one-answer-a-second pacing only delays a run when the responder has just answered its own query.
/// </summary>
public static class MdnsFirstBench
{
    public static async Task<Dictionary<string, object?>> RunAsync(Options o, CancellationToken ct)
    {
        var runs = o.GetInt("--runs", 10);
        var gap = TimeSpan.FromMilliseconds(o.GetInt("--gap-ms", 1500));
        var listen = Multiaddr.Parse(o.Require("--listen"));
        var service = o.Get("--rendezvous") is { } r ? MdnsOptions.ForRendezvous(r) : new MdnsOptions();
        var ms = new List<double>();
        var openMs = new List<double>();
        for (var i = 0; i < runs; i++)
        {
            var host = new Libp2pHost(new HostOptions { Key = Ed25519PrivateKey.Generate(), ListenAddresses = [listen] });
            await host.StartAsync(ct).ConfigureAwait(false);
            var first = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            var t0 = Stopwatch.GetTimestamp();
            var transport = MdnsUdpTransport.Open(service.Port);
            openMs.Add(Stopwatch.GetElapsedTime(t0).TotalMilliseconds);
            var mdns = new MdnsService(host, service, transport);
            mdns.Discovered += _ => first.TrySetResult();
            mdns.Start();
            await first.Task.WaitAsync(TimeSpan.FromSeconds(30), ct).ConfigureAwait(false);
            ms.Add(Stopwatch.GetElapsedTime(t0).TotalMilliseconds);
            // Gone before the pause, so that its later queries do not use up the responder's one answer a second.
            await mdns.DisposeAsync().ConfigureAwait(false);
            await host.DisposeAsync().ConfigureAwait(false);
            await Task.Delay(gap, ct).ConfigureAwait(false);
        }
        var res = new Dictionary<string, object?> { ["runs"] = runs, ["service"] = service.ServiceName.ToString() };
        Stats.AddPercentiles(res, ms, "Ms");
        Stats.AddPercentiles(res, openMs, "OpenMs");
        return res;
    }
}
