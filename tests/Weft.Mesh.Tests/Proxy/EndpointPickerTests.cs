using System.Net;
using Weft.Mesh.Proxy;

namespace Weft.Mesh.Tests.Proxy;

/// <summary>A clock that moves only when told (the picker reads timestamps only).</summary>
internal sealed class StepClock : TimeProvider
{
    private long _ticks;

    public override long TimestampFrequency => TimeSpan.TicksPerSecond;

    public override long GetTimestamp() => Interlocked.Read(ref _ticks);

    public void Advance(TimeSpan by) => Interlocked.Add(ref _ticks, by.Ticks);
}

public sealed class EndpointPickerTests
{
    private const int Requests = 10_000;

    private static readonly ProxyLimits Limits = new() { EndpointCooldown = TimeSpan.FromSeconds(2), MaxEndpointCooldown = TimeSpan.FromSeconds(5) };

    private static List<EndpointTarget> Endpoints(int n) =>
        Enumerable.Range(1, n).Select(i => new EndpointTarget("node" + i, IPAddress.Parse($"10.0.0.{i}"), 8080)).ToList();

    private static EndpointPicker Picker(LoadBalancingPolicy policy, int n, SessionAffinity affinity = SessionAffinity.None, TimeProvider? time = null, TimeSpan? timeout = null)
    {
        var p = new EndpointPicker(time ?? new StepClock(), Limits);
        p.Update(Endpoints(n), policy, affinity, timeout ?? ServiceSpec.DefaultAffinityTimeout);
        return p;
    }

    private static IPAddress Client(int i) => new([10, 1, (byte)(i >> 8), (byte)i]);

    private static void AssertEven(Dictionary<EndpointTarget, int> counts, int endpoints, int total)
    {
        Assert.Equal(endpoints, counts.Count);
        var even = total / (double)endpoints;
        foreach (var (e, c) in counts)
            Assert.True(Math.Abs(c - even) <= even * 0.10, $"{e} got {c} of {total}; even is {even} (±10%): {string.Join(", ", counts.Values)}");
    }

    private static Dictionary<EndpointTarget, int> Spread(EndpointPicker p, Func<int, IPAddress> client, int total = Requests)
    {
        var counts = new Dictionary<EndpointTarget, int>();
        for (var i = 0; i < total; i++)
        {
            var e = p.Pick(client(i))!;
            p.Succeeded(client(i), e);
            counts[e] = counts.GetValueOrDefault(e) + 1;
        }
        return counts;
    }

    [Theory]
    [InlineData(LoadBalancingPolicy.RoundRobin, 4)]
    [InlineData(LoadBalancingPolicy.RoundRobin, 3)]
    [InlineData(LoadBalancingPolicy.Random, 4)]
    [InlineData(LoadBalancingPolicy.Random, 2)]
    public void Load_spreads_within_ten_percent_of_even_over_ten_thousand_requests_from_one_client(LoadBalancingPolicy policy, int n) =>
        AssertEven(Spread(Picker(policy, n), _ => IPAddress.Loopback), n, Requests);

    [Fact]
    public void Consistent_hash_keeps_each_client_ip_on_one_endpoint_and_spreads_many_clients()
    {
        var p = Picker(LoadBalancingPolicy.ConsistentHash, 4);
        var first = Enumerable.Range(0, Requests).ToDictionary(i => i, i => p.Pick(Client(i))!);
        for (var round = 0; round < 3; round++)
            for (var i = 0; i < Requests; i += 7)
                Assert.Equal(first[i], p.Pick(Client(i)));
        // The port of the client plays no part: an IPv4-mapped IPv6 address is the same client.
        Assert.Equal(first[5], p.Pick(Client(5).MapToIPv6()));
        AssertEven(first.Values.GroupBy(e => e).ToDictionary(g => g.Key, g => g.Count()), 4, Requests);

        // An endpoint leaves: only its clients move.
        var gone = Endpoints(4)[2];
        p.Update(Endpoints(4).Where(e => e != gone).ToList(), LoadBalancingPolicy.ConsistentHash, SessionAffinity.None, ServiceSpec.DefaultAffinityTimeout);
        var moved = 0;
        for (var i = 0; i < Requests; i++)
        {
            var now = p.Pick(Client(i))!;
            if (first[i] == gone) { Assert.NotEqual(gone, now); moved++; }
            else Assert.Equal(first[i], now);
        }
        Assert.InRange(moved, Requests / 4 * 0.9, Requests / 4 * 1.1);
    }

    [Fact]
    public void ClientIP_affinity_sticks_until_the_client_has_been_quiet_for_the_timeout()
    {
        var clock = new StepClock();
        var p = Picker(LoadBalancingPolicy.RoundRobin, 3, SessionAffinity.ClientIP, clock, TimeSpan.FromSeconds(60));
        var a = Client(1);
        var b = Client(2);
        var pinned = p.Pick(a)!;
        p.Succeeded(a, pinned);
        for (var i = 0; i < 100; i++)
        {
            // Another client's picks move round robin along (never confirmed, so b is not pinned); a's connections
            // keep going to its endpoint.
            _ = p.Pick(b);
            Assert.Equal(pinned, p.Pick(a));
            p.Succeeded(a, pinned);
            clock.Advance(TimeSpan.FromSeconds(59)); // never quiet for a whole minute: still pinned
        }
        Assert.Equal(1, p.AffinityCount);

        // Quiet for the whole timeout: the pin is gone, and the next connection follows the policy again.
        clock.Advance(TimeSpan.FromSeconds(60));
        var seen = new HashSet<EndpointTarget>();
        for (var i = 0; i < 3; i++) seen.Add(p.Pick(a)!);
        Assert.Equal(3, seen.Count);
    }

    [Fact]
    public void Affinity_survives_an_update_that_keeps_the_endpoint_and_drops_with_it()
    {
        var p = Picker(LoadBalancingPolicy.RoundRobin, 3, SessionAffinity.ClientIP);
        var a = Client(1);
        var pinned = p.Pick(a)!;
        p.Succeeded(a, pinned);
        var others = Endpoints(3).Where(e => e != pinned).ToList();
        p.Update([.. Endpoints(3), new EndpointTarget("node9", IPAddress.Parse("10.0.0.9"), 8080)], LoadBalancingPolicy.RoundRobin, SessionAffinity.ClientIP, ServiceSpec.DefaultAffinityTimeout);
        Assert.Equal(pinned, p.Pick(a));
        p.Update(others, LoadBalancingPolicy.RoundRobin, SessionAffinity.ClientIP, ServiceSpec.DefaultAffinityTimeout);
        Assert.Equal(0, p.AffinityCount);
        Assert.Contains(p.Pick(a)!, others);
    }

    [Fact]
    public void Affinity_table_is_bounded_and_expired_clients_make_room()
    {
        var clock = new StepClock();
        var p = new EndpointPicker(clock, Limits with { MaxAffinityClients = 10 });
        p.Update(Endpoints(2), LoadBalancingPolicy.RoundRobin, SessionAffinity.ClientIP, TimeSpan.FromSeconds(10));
        for (var i = 0; i < 20; i++) p.Succeeded(Client(i), p.Pick(Client(i))!);
        Assert.Equal(10, p.AffinityCount);
        clock.Advance(TimeSpan.FromSeconds(11));
        p.Succeeded(Client(100), p.Pick(Client(100))!);
        Assert.Equal(1, p.AffinityCount);
    }

    [Theory]
    [InlineData(LoadBalancingPolicy.RoundRobin)]
    [InlineData(LoadBalancingPolicy.Random)]
    [InlineData(LoadBalancingPolicy.ConsistentHash)]
    public void A_failed_endpoint_loses_its_traffic_within_one_retry_and_gets_it_back_after_its_cooldown(LoadBalancingPolicy policy)
    {
        var clock = new StepClock();
        var p = Picker(policy, 3, SessionAffinity.None, clock);
        var dead = Endpoints(3)[1];
        var hitDead = 0;
        for (var i = 0; i < 3000; i++)
        {
            var client = Client(i);
            var tried = new List<EndpointTarget>();
            var e = p.Pick(client, tried)!;
            if (e == dead)
            {
                hitDead++;
                p.Failed(e);
                tried.Add(e);
                e = p.Pick(client, tried)!; // the one retry
            }
            Assert.NotEqual(dead, e);
            p.Succeeded(client, e);
        }
        Assert.Equal(1, hitDead); // only the first connection that met it; then it is passed over

        // After the cooldown it is tried again; failing again doubles the cooldown (2 s, then 4 s).
        clock.Advance(TimeSpan.FromSeconds(2));
        Assert.Contains(dead, Enumerable.Range(0, 300).Select(i => p.Pick(Client(i))));
        p.Failed(dead);
        clock.Advance(TimeSpan.FromSeconds(3));
        Assert.DoesNotContain(dead, Enumerable.Range(0, 300).Select(i => p.Pick(Client(i))));
        clock.Advance(TimeSpan.FromSeconds(1));
        Assert.Contains(dead, Enumerable.Range(0, 300).Select(i => p.Pick(Client(i))));
        Assert.Equal(2, p.States().Single(s => s.Target == dead).Failures);
        p.Succeeded(Client(1), dead);
        Assert.Equal(0, p.States().Single(s => s.Target == dead).Failures);
    }

    [Fact]
    public void When_every_endpoint_is_cooling_down_they_are_tried_anyway_and_exclusions_end_the_list()
    {
        var p = Picker(LoadBalancingPolicy.RoundRobin, 2);
        foreach (var e in Endpoints(2)) p.Failed(e);
        Assert.NotNull(p.Pick(Client(1)));
        Assert.Null(p.Pick(Client(1), Endpoints(2)));
        Assert.Null(Picker(LoadBalancingPolicy.RoundRobin, 0).Pick(Client(1)));
    }
}
