using System.Net;

namespace Weft.P2P.Mdns;

/// <summary>A multicast-capable interface mDNS runs on: its index, name and IPv4 addresses.</summary>
public sealed record MdnsInterface(int Index, string Name, IReadOnlyList<IPAddress> Addresses)
{
    public bool Equals(MdnsInterface? other) => other is not null && Index == other.Index && Name == other.Name && Addresses.SequenceEqual(other.Addresses);

    public override int GetHashCode() => HashCode.Combine(Index, Name, Addresses.Count);
}

/// <summary>One datagram received: how many bytes landed in the buffer, who sent it, on which interface (0 = unknown), and whether it was longer than the buffer.</summary>
public readonly record struct MdnsDatagram(int Length, IPEndPoint Source, int InterfaceIndex, bool Truncated = false);

/// <summary>
/// The network under an <see cref="MdnsService"/>: the multicast group on every usable interface. The real one is
/// <see cref="MdnsUdpTransport"/>; tests of the service's logic use an in-memory one.
/// </summary>
public interface IMdnsTransport : IAsyncDisposable
{
    /// <summary>The interfaces the group is joined on.</summary>
    IReadOnlyList<MdnsInterface> Interfaces { get; }

    /// <summary>Looks at the system's interfaces again, joins the group on new ones; true if the set changed.</summary>
    bool RefreshInterfaces();

    /// <summary>Raised when the system reports an address or interface change (the service then refreshes and re-announces).</summary>
    event Action? NetworkChanged;

    /// <summary>Multicasts <paramref name="packet"/> to the group on <paramref name="iface"/>.</summary>
    ValueTask SendMulticastAsync(ReadOnlyMemory<byte> packet, MdnsInterface iface, CancellationToken ct);

    /// <summary>Sends <paramref name="packet"/> to one endpoint (answers to legacy and unicast-response queries).</summary>
    ValueTask SendUnicastAsync(ReadOnlyMemory<byte> packet, IPEndPoint to, CancellationToken ct);

    /// <summary>Waits for the next datagram.</summary>
    ValueTask<MdnsDatagram> ReceiveAsync(Memory<byte> buffer, CancellationToken ct);

    /// <summary>True when <paramref name="address"/> belongs to this host (a sender on the same machine).</summary>
    bool IsLocalAddress(IPAddress address);
}
