using System.Buffers.Binary;
using System.Net;
using System.Security.Cryptography;
using System.Text;

namespace Weft.Mesh.Proxy;

/// <summary>
/// Gives each service its own address in the service range, so services never collide on ports and a name resolves
/// to one address: the clusterIP the catalogue pins, else the first address, starting from one derived from
/// SHA-256("namespace/name") and walking up the range, at which none of the service's ports is taken. An address
/// once given is kept while the service stays (across catalogue updates), so open connections and cached DNS answers
/// stay valid; a new service never takes it away. In a /32 range all services share the one address and must use
/// different ports.
/// </summary>
public sealed class ServiceAddresses(IPNetwork range)
{
    /// <summary>Addresses tried per service before it is reported as not placeable.</summary>
    public const int MaxProbes = 65536;

    private Dictionary<ServiceName, IPAddress> _given = [];

    public IPNetwork Range { get; } = range;

    /// <summary>The address <paramref name="name"/> starts probing from.</summary>
    public IPAddress Derive(ServiceName name)
    {
        var hash = SHA256.HashData(Encoding.UTF8.GetBytes(name.ToString()));
        return At(BinaryPrimitives.ReadUInt32BigEndian(hash) % HostCount);
    }

    private uint HostCount
    {
        get
        {
            var size = 1UL << (32 - Range.PrefixLength);
            return (uint)(Range.PrefixLength >= 31 ? size : size - 2); // without the network and broadcast addresses
        }
    }

    private IPAddress At(uint index)
    {
        var baseValue = BinaryPrimitives.ReadUInt32BigEndian(Range.BaseAddress.GetAddressBytes());
        var offset = Range.PrefixLength >= 31 ? index : index + 1;
        var bytes = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(bytes, baseValue + offset);
        return new IPAddress(bytes);
    }

    /// <summary>
    /// Places every service of <paramref name="catalog"/>: an address, or why it has none (its pinned address or every
    /// probed one clashes on a port with another service).
    /// </summary>
    public IReadOnlyDictionary<ServiceName, (IPAddress? Address, string? Error)> Assign(ServiceCatalog catalog)
    {
        var taken = new Dictionary<(IPAddress, int, ServiceProtocol), ServiceName>();
        var result = new Dictionary<ServiceName, (IPAddress?, string?)>();
        var given = new Dictionary<ServiceName, IPAddress>();

        bool Free(ServiceSpec s, IPAddress a) => s.Ports.All(p => !taken.ContainsKey((a, p.Port, p.Protocol)));
        void Take(ServiceSpec s, IPAddress a)
        {
            foreach (var p in s.Ports) taken[(a, p.Port, p.Protocol)] = s.Name;
            given[s.Name] = a;
            result[s.Name] = (a, null);
        }

        // 1. Pinned addresses; 2. addresses already given (kept while free); 3. new services, by name.
        var pending = new List<ServiceSpec>();
        foreach (var s in catalog.Services)
        {
            if (s.ClusterIP is not { } pinned) continue;
            if (Free(s, pinned)) Take(s, pinned);
            else
            {
                var other = s.Ports.Select(p => taken.GetValueOrDefault((pinned, p.Port, p.Protocol))).First(n => n != default);
                result[s.Name] = (null, $"clusterIP {pinned}: a port is already served there by {other}; choose other ports or another clusterIP");
            }
        }
        foreach (var s in catalog.Services)
        {
            if (s.ClusterIP is not null) continue;
            if (_given.TryGetValue(s.Name, out var before) && Range.Contains(before) && Free(s, before)) Take(s, before);
            else pending.Add(s);
        }
        foreach (var s in pending)
        {
            var start = BinaryPrimitives.ReadUInt32BigEndian(Derive(s.Name).GetAddressBytes()) - BinaryPrimitives.ReadUInt32BigEndian(At(0).GetAddressBytes());
            var probes = (uint)Math.Min(MaxProbes, HostCount);
            var placed = false;
            for (uint i = 0; i < probes && !placed; i++)
            {
                var a = At((start + i) % HostCount);
                if (Free(s, a)) { Take(s, a); placed = true; }
            }
            if (!placed)
                result[s.Name] = (null, $"no address in {Range} has all its ports free (tried {probes}); widen modules.edgeProxy.serviceCIDR or change ports");
        }
        _given = given;
        return result;
    }
}
