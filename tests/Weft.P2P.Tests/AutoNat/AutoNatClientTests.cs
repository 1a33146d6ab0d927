using Weft.P2P.AutoNat;
using Weft.P2P.Host;
using Weft.P2P.Relay;
using Weft.Wire.AutoNat;
using Weft.Wire.Multiformats;
using static Weft.P2P.Tests.AutoNat.AutoNatScene;
using static Weft.P2P.Tests.Host.Hosts;

namespace Weft.P2P.Tests.AutoNat;

public class AutoNatClientTests
{
    [Fact]
    public async Task A_listening_client_becomes_public_and_publishes_the_confirmed_address()
    {
        await using var s = await StartAsync();
        using var server = AutoNatServer.Register(s, LoopbackServer);
        await using var c = await StartAsync();
        await using var client = new AutoNatClient(c, LoopbackClient);
        Assert.Equal(Reachability.Unknown, client.Reachability);
        var changed = NextChange(client);
        var published = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        c.AddressesChanged += () => published.TrySetResult();
        await ConnectAsync(c, s);

        Assert.Equal(Reachability.Public, await client.ProbeAsync().WaitAsync(Deadline));
        Assert.Equal(Reachability.Public, await changed);
        Assert.Equal([c.ListenAddresses[0]], client.PublicAddresses);
        await published.Task.WaitAsync(Deadline);
        Assert.Contains(c.ListenAddresses[0], c.AdvertisedAddresses);
    }

    [Fact]
    public async Task A_client_whose_addresses_accept_nothing_becomes_private()
    {
        await using var s = await StartAsync();
        using var server = AutoNatServer.Register(s, LoopbackServer);
        var dead = DeadAddress();
        await using var c = await StartAsync(o => o with { ListenAddresses = [], AnnounceAddresses = [dead] });
        await using var client = new AutoNatClient(c, LoopbackClient);
        await ConnectAsync(c, s);
        Assert.Contains(dead, client.GetCandidateAddresses());

        Assert.Equal(Reachability.Private, await client.ProbeAsync().WaitAsync(Deadline));
        Assert.Empty(client.PublicAddresses);
        Assert.Equal(0, client.Confidence);
    }

    [Fact]
    public async Task Loopback_candidates_need_the_option_and_without_candidates_nothing_is_asked()
    {
        await using var x = await StartAsync();
        var scripted = new ScriptedServer(x);
        await using var c = await StartAsync();
        await ConnectAsync(c, x);
        await using var strict = new AutoNatClient(c);
        Assert.Empty(strict.GetCandidateAddresses());
        Assert.Equal(Reachability.Unknown, await strict.ProbeAsync().WaitAsync(Deadline));
        Assert.Equal(0, scripted.Requests);

        await using var loose = new AutoNatClient(c, LoopbackClient);
        var candidates = loose.GetCandidateAddresses();
        Assert.Equal(c.ListenAddresses[0], candidates[0]);
        Assert.Contains(c.ObservedAddresses[0], candidates);
    }

    [Fact]
    public async Task Without_a_server_nothing_changes()
    {
        await using var x = await StartAsync(); // no AutoNAT handler
        await using var c = await StartAsync();
        await ConnectAsync(c, x);
        await using var client = new AutoNatClient(c, LoopbackClient);
        Assert.Equal(Reachability.Unknown, await client.ProbeAsync().WaitAsync(Deadline));
    }

    [Fact]
    public async Task Servers_behind_relayed_connections_are_not_asked()
    {
        await using var r = await StartAsync();
        using var relay = RelayServer.Register(r, new RelayServerOptions { Limit = RelayLimitPolicy.Off });
        await using var x = await StartAsync();
        RelayClient.Register(x);
        var scripted = new ScriptedServer(x);
        var reservation = await RelayClient.ReserveAsync(x, AddressOf(r)).WaitAsync(Deadline);
        await using var c = await StartAsync();
        var relayed = await RelayClient.DialViaRelayAsync(c, reservation.CircuitAddresses[0].WithPeerId(x.PeerId)).WaitAsync(Deadline);
        await relayed.Identified.WaitAsync(Deadline);
        await using var client = new AutoNatClient(c, LoopbackClient);
        Assert.Equal(Reachability.Unknown, await client.ProbeAsync().WaitAsync(Deadline));
        Assert.Equal(0, scripted.Requests);
    }

    [Fact]
    public async Task Confidence_one_failure_does_not_flip_public_but_enough_consecutive_failures_do()
    {
        await using var x = await StartAsync();
        var scripted = new ScriptedServer(x);
        await using var c = await StartAsync();
        await ConnectAsync(c, x);
        // The server confirms the address it observes us at: a candidate that is not a listen address.
        var observed = c.ObservedAddresses[0];
        scripted.OkAddress = _ => observed;
        Assert.DoesNotContain(observed, c.AdvertisedAddresses);
        await using var client = new AutoNatClient(c, LoopbackClient with { MaxServersPerProbe = 1, MaxConfidence = 3 });
        var changes = new List<Reachability>();
        client.ReachabilityChanged += r => { lock (changes) changes.Add(r); };

        scripted.Then(AutoNatResponseStatus.Ok);
        Assert.Equal(Reachability.Public, await client.ProbeAsync().WaitAsync(Deadline));
        Assert.Equal(0, client.Confidence);
        Assert.Equal([observed], client.PublicAddresses);
        Assert.Contains(observed, c.AdvertisedAddresses);
        for (var i = 1; i <= 3; i++)
        {
            Assert.Equal(Reachability.Public, await client.ProbeAsync().WaitAsync(Deadline));
            Assert.Equal(i, client.Confidence);
        }
        Assert.Equal(Reachability.Public, await client.ProbeAsync().WaitAsync(Deadline));
        Assert.Equal(3, client.Confidence); // capped

        // A refusal says nothing.
        scripted.Then(AutoNatResponseStatus.DialRefused);
        Assert.Equal(Reachability.Public, await client.ProbeAsync().WaitAsync(Deadline));
        Assert.Equal(3, client.Confidence);

        // One failure wears the confidence down but does not flip; MaxConfidence + 1 consecutive ones do.
        scripted.Then(AutoNatResponseStatus.DialError);
        for (var left = 2; left >= 0; left--)
        {
            Assert.Equal(Reachability.Public, await client.ProbeAsync().WaitAsync(Deadline));
            Assert.Equal(left, client.Confidence);
            Assert.Equal([observed], client.PublicAddresses);
        }
        Assert.Equal(Reachability.Private, await client.ProbeAsync().WaitAsync(Deadline));
        Assert.Empty(client.PublicAddresses);
        Assert.DoesNotContain(observed, c.AdvertisedAddresses);

        // Someone reached us: Public again at once.
        scripted.Then(AutoNatResponseStatus.Ok);
        Assert.Equal(Reachability.Public, await client.ProbeAsync().WaitAsync(Deadline));
        lock (changes) Assert.Equal([Reachability.Public, Reachability.Private, Reachability.Public], changes);
    }

    [Fact]
    public async Task From_unknown_the_first_answer_decides_and_bad_answers_wear_down_to_unknown()
    {
        await using var x = await StartAsync();
        var scripted = new ScriptedServer(x);
        await using var c = await StartAsync();
        await ConnectAsync(c, x);
        await using var client = new AutoNatClient(c, LoopbackClient with { MaxConfidence = 2 });

        scripted.Then(AutoNatResponseStatus.DialError);
        Assert.Equal(Reachability.Private, await client.ProbeAsync().WaitAsync(Deadline));
        Assert.Equal(Reachability.Private, await client.ProbeAsync().WaitAsync(Deadline));
        Assert.Equal(1, client.Confidence);

        scripted.Then(AutoNatResponseStatus.InternalError);
        Assert.Equal(Reachability.Private, await client.ProbeAsync().WaitAsync(Deadline));
        Assert.Equal(0, client.Confidence);
        Assert.Equal(Reachability.Unknown, await client.ProbeAsync().WaitAsync(Deadline));
    }

    [Fact]
    public async Task An_ok_for_an_address_we_did_not_ask_about_is_not_published()
    {
        await using var x = await StartAsync();
        var scripted = new ScriptedServer(x) { OkAddress = _ => Multiaddr.Parse("/ip4/203.0.113.9/tcp/4001") };
        await using var c = await StartAsync();
        await ConnectAsync(c, x);
        await using var client = new AutoNatClient(c, LoopbackClient);
        Assert.Equal(Reachability.Public, await client.ProbeAsync().WaitAsync(Deadline));
        Assert.Empty(client.PublicAddresses);
        Assert.DoesNotContain(Multiaddr.Parse("/ip4/203.0.113.9/tcp/4001"), c.AdvertisedAddresses);
    }

    [Fact]
    public async Task Several_servers_are_asked_in_one_probe()
    {
        await using var s1 = await StartAsync();
        await using var s2 = await StartAsync();
        await using var s3 = await StartAsync();
        var scripted = new[] { new ScriptedServer(s1), new ScriptedServer(s2), new ScriptedServer(s3) };
        await using var c = await StartAsync();
        foreach (var s in new[] { s1, s2, s3 }) await ConnectAsync(c, s);
        await using var client = new AutoNatClient(c, LoopbackClient with { MaxServersPerProbe = 2 });
        Assert.Equal(Reachability.Public, await client.ProbeAsync().WaitAsync(Deadline));
        Assert.Equal(2, scripted.Sum(x => x.Requests));
        Assert.Equal(1, client.Confidence);
        var asked = scripted.First(x => x.Requests > 0).Received.Single();
        Assert.Equal(c.PeerId, asked.Id);
        Assert.Equal(client.GetCandidateAddresses(), asked.Addrs);
    }

    [Fact]
    public async Task The_loop_probes_soon_after_a_server_appears_and_repeats_until_settled()
    {
        await using var x = await StartAsync();
        // OK names the last candidate: the address x observes us at, which only AutoNAT publishes.
        var scripted = new ScriptedServer(x) { OkAddress = addrs => addrs[^1] };
        await using var c = await StartAsync();
        var client = new AutoNatClient(c, LoopbackClient with
        {
            FirstProbeDelay = TimeSpan.Zero,
            RetryInterval = TimeSpan.FromMilliseconds(50),
            RefreshInterval = TimeSpan.FromHours(1),
            MaxConfidence = 2,
        });
        // No server yet: the first probe finds none. Then one appears and is asked at once.
        client.Start();
        var changed = NextChange(client);
        var settled = Probes(client, 3);
        await ConnectAsync(c, x);
        Assert.Equal(Reachability.Public, await changed);
        await settled;
        Assert.Equal(2, client.Confidence);
        var published = Assert.Single(client.PublicAddresses);
        Assert.Equal(c.ObservedAddresses[0], published);
        Assert.DoesNotContain(published, c.ListenAddresses);
        Assert.Contains(published, c.AdvertisedAddresses);

        await client.DisposeAsync().AsTask().WaitAsync(Deadline);
        Assert.DoesNotContain(published, c.AdvertisedAddresses);
        Assert.Empty(client.PublicAddresses);
        await Assert.ThrowsAsync<ObjectDisposedException>(() => client.ProbeAsync());
    }

    [Fact]
    public async Task The_loop_finds_a_real_server_and_a_real_dial_back()
    {
        await using var s = await StartAsync();
        using var server = AutoNatServer.Register(s, LoopbackServer);
        await using var c = await StartAsync();
        await ConnectAsync(c, s);
        await using var client = new AutoNatClient(c, LoopbackClient with { FirstProbeDelay = TimeSpan.Zero });
        var changed = NextChange(client);
        client.Start();
        client.Start(); // once
        Assert.Equal(Reachability.Public, await changed);
        Assert.Equal([c.ListenAddresses[0]], client.PublicAddresses);
    }
}
