using System.Net;
using Weft.Mesh.Proxy;

namespace Weft.Mesh.Tests.Proxy;

public sealed class ServiceAddressesTests
{
    private static ServiceSpec Svc(string name, IPAddress? clusterIp = null, params int[] ports) =>
        new(new ServiceName("default", name), clusterIp,
            (ports.Length == 0 ? [80] : ports).Select((p, i) => new ServicePort("p" + i, p, ServiceProtocol.Tcp, p)).ToList(),
            [], LoadBalancingPolicy.RoundRobin, SessionAffinity.None, ServiceSpec.DefaultAffinityTimeout);

    private static ServiceCatalog Catalog(params ServiceSpec[] s) => new(s);

    [Fact]
    public void Addresses_are_derived_from_the_name_inside_the_range_and_the_same_on_every_node()
    {
        var range = IPNetwork.Parse("127.10.0.0/16");
        var a = new ServiceAddresses(range).Assign(Catalog(Svc("demo"), Svc("dns")));
        var b = new ServiceAddresses(range).Assign(Catalog(Svc("dns"), Svc("demo")));
        Assert.Equal(a[new("default", "demo")].Address, b[new("default", "demo")].Address);
        Assert.NotEqual(a[new("default", "demo")].Address, a[new("default", "dns")].Address);
        Assert.All(a.Values, v => Assert.True(range.Contains(v.Address!)));
        Assert.All(a.Values, v => Assert.NotEqual(IPAddress.Parse("127.10.0.0"), v.Address)); // never the network address
    }

    [Fact]
    public void A_pinned_clusterIP_wins_and_a_derived_address_that_clashes_moves_on()
    {
        var range = IPNetwork.Parse("127.10.0.0/16");
        var addresses = new ServiceAddresses(range);
        var derived = addresses.Derive(new ServiceName("default", "demo"));
        var r = addresses.Assign(Catalog(Svc("demo"), Svc("pinned", derived)));
        Assert.Equal(derived, r[new("default", "pinned")].Address);
        Assert.NotEqual(derived, r[new("default", "demo")].Address);
        Assert.Null(r[new("default", "demo")].Error);
    }

    [Fact]
    public void In_a_single_address_range_services_share_it_and_a_port_clash_is_an_error()
    {
        var addresses = new ServiceAddresses(IPNetwork.Parse("169.254.96.16/32"));
        var r = addresses.Assign(Catalog(Svc("a", null, 80, 81), Svc("b", null, 82), Svc("c", null, 81)));
        Assert.Equal(IPAddress.Parse("169.254.96.16"), r[new("default", "a")].Address);
        Assert.Equal(IPAddress.Parse("169.254.96.16"), r[new("default", "b")].Address);
        Assert.Null(r[new("default", "c")].Address);
        Assert.Contains("has all its ports free", r[new("default", "c")].Error);
    }

    [Fact]
    public void A_given_address_is_kept_across_updates_even_when_it_was_not_the_derived_one()
    {
        // A /30 has two host addresses: three services on the same port cannot all fit, two can.
        var range = IPNetwork.Parse("127.10.0.0/30");
        var addresses = new ServiceAddresses(range);
        var first = addresses.Assign(Catalog(Svc("a"), Svc("b")));
        Assert.All(first.Values, v => Assert.NotNull(v.Address));
        Assert.NotEqual(first[new("default", "a")].Address, first[new("default", "b")].Address);
        var second = addresses.Assign(Catalog(Svc("b"), Svc("c")));
        Assert.Equal(first[new("default", "b")].Address, second[new("default", "b")].Address); // b keeps its address
        Assert.Equal(first[new("default", "a")].Address, second[new("default", "c")].Address); // c gets the free one
        var third = addresses.Assign(Catalog(Svc("a"), Svc("b"), Svc("c")));
        Assert.Equal(second[new("default", "b")].Address, third[new("default", "b")].Address);
        Assert.Equal(second[new("default", "c")].Address, third[new("default", "c")].Address);
        Assert.NotNull(third[new("default", "a")].Error); // the newcomer, not an established service, goes without
    }
}
