using System.Net;
using System.Net.NetworkInformation;
using System.Net.Sockets;
using Weft.Mesh.Config;
using Weft.Wire.Multiformats;

namespace Weft.Mesh.Agent;

/// <summary>
/// Where the agent listens, as EdgeMesh decides it: every IPv4 address of the interfaces named by
/// <c>listenInterfaces</c> ("*" = all), except interfaces whose names start with EdgeMesh's filtered prefixes
/// (docker, edgemesh, tunl, flannel, cni, br, kube-ipvs) or <c>extraFilteredInterfaces</c>, at <c>listenPort</c>.
/// </summary>
public static class ListenPlanner
{
    public static IReadOnlyList<Multiaddr> Resolve(TunnelConfig tunnel, IEnumerable<(string Name, IPAddress Address)>? interfaces = null)
    {
        interfaces ??= LocalInterfaces();
        var names = tunnel.ListenInterfaces.Trim() is "*" or "" ? null : tunnel.ListenInterfaces.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToHashSet(StringComparer.Ordinal);
        var filtered = AgentConfigLoader.FilteredInterfacePrefixes
            .Concat(tunnel.ExtraFilteredInterfaces.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)).ToList();
        var result = new List<Multiaddr>();
        foreach (var (name, address) in interfaces)
        {
            if (address.AddressFamily != AddressFamily.InterNetwork) continue;
            if (names is not null ? !names.Contains(name) : filtered.Any(p => name.StartsWith(p, StringComparison.Ordinal))) continue;
            var m = Multiaddr.FromTcp(new IPEndPoint(address, tunnel.ListenPort));
            if (!result.Contains(m)) result.Add(m);
        }
        return result;
    }

    private static IEnumerable<(string, IPAddress)> LocalInterfaces()
    {
        foreach (var nic in NetworkInterface.GetAllNetworkInterfaces())
        {
            // An interface switched off is passed over; one whose link is not up yet (a veth whose peer is still coming
            // up, a cable not yet in) keeps its addresses: they can be bound now and work once the link is up, and an
            // agent that skipped them would listen on loopback only until restarted.
            if (nic.OperationalStatus is OperationalStatus.Down or OperationalStatus.NotPresent && nic.NetworkInterfaceType != NetworkInterfaceType.Loopback) continue;
            foreach (var u in nic.GetIPProperties().UnicastAddresses) yield return (nic.Name, u.Address);
        }
    }
}
