using System.Net;
using System.Threading.Channels;
using Weft.P2P.Mdns;

namespace Weft.P2P.Tests.Mdns;

/// <summary>
/// A multicast segment in memory for unit tests of the mDNS service's logic: every multicast reaches every
/// attached endpoint (the sender too, as IP_MULTICAST_LOOP does); unicast reaches the endpoint with that address.
/// Each endpoint's queue is bounded like a socket buffer (datagrams past it are dropped).
/// </summary>
public sealed class MemoryMdnsNetwork
{
    public const int QueueLimit = 256;

    private readonly List<Endpoint> _endpoints = [];
    private int _next = 1;

    public int Port { get; init; } = 5353;

    public Endpoint Attach(string? address = null)
    {
        lock (_endpoints)
        {
            var ip = IPAddress.Parse(address ?? $"10.0.0.{_next++}");
            var e = new Endpoint(this, ip);
            _endpoints.Add(e);
            return e;
        }
    }

    /// <summary>Puts a datagram from <paramref name="from"/> on every endpoint's queue, as if multicast.</summary>
    public void Inject(byte[] packet, IPEndPoint from)
    {
        Endpoint[] all;
        lock (_endpoints) all = [.. _endpoints];
        foreach (var e in all) e.Deliver(packet, from);
    }

    private void Unicast(byte[] packet, IPEndPoint from, IPEndPoint to)
    {
        Endpoint[] all;
        lock (_endpoints) all = [.. _endpoints];
        foreach (var e in all.Where(e => e.Address.Equals(to.Address))) e.Deliver(packet, from);
        UnicastSent?.Invoke(packet, to);
    }

    /// <summary>Every unicast datagram sent, with its destination.</summary>
    public event Action<byte[], IPEndPoint>? UnicastSent;

    /// <summary>Every multicast datagram sent, with its sender.</summary>
    public event Action<byte[], IPAddress>? MulticastSent;

    public sealed class Endpoint : IMdnsTransport
    {
        private readonly MemoryMdnsNetwork _net;
        private readonly Channel<(byte[] Packet, IPEndPoint From)> _queue =
            Channel.CreateBounded<(byte[], IPEndPoint)>(new BoundedChannelOptions(QueueLimit) { FullMode = BoundedChannelFullMode.DropWrite });

        internal Endpoint(MemoryMdnsNetwork net, IPAddress address)
        {
            _net = net;
            Address = address;
            Interfaces = [new MdnsInterface(1, "mem0", [address])];
        }

        public IPAddress Address { get; }

        /// <summary>Datagrams waiting to be received.</summary>
        public int Queued => _queue.Reader.Count;

        /// <summary>Other addresses this endpoint's host owns (for "same host" checks).</summary>
        public List<IPAddress> LocalAddresses { get; } = [];

        public IReadOnlyList<MdnsInterface> Interfaces { get; set; }

        public event Action? NetworkChanged;

        public void RaiseNetworkChanged() => NetworkChanged?.Invoke();

        public bool RefreshInterfaces() => false;

        internal void Deliver(byte[] packet, IPEndPoint from) => _queue.Writer.TryWrite((packet, from));

        public ValueTask SendMulticastAsync(ReadOnlyMemory<byte> packet, MdnsInterface iface, CancellationToken ct)
        {
            var bytes = packet.ToArray();
            _net.MulticastSent?.Invoke(bytes, Address);
            _net.Inject(bytes, new IPEndPoint(Address, _net.Port));
            return ValueTask.CompletedTask;
        }

        public ValueTask SendUnicastAsync(ReadOnlyMemory<byte> packet, IPEndPoint to, CancellationToken ct)
        {
            _net.Unicast(packet.ToArray(), new IPEndPoint(Address, _net.Port), to);
            return ValueTask.CompletedTask;
        }

        public async ValueTask<MdnsDatagram> ReceiveAsync(Memory<byte> buffer, CancellationToken ct)
        {
            var (packet, from) = await _queue.Reader.ReadAsync(ct);
            var n = Math.Min(packet.Length, buffer.Length);
            packet.AsSpan(0, n).CopyTo(buffer.Span);
            return new MdnsDatagram(n, from, 1, packet.Length > buffer.Length);
        }

        public bool IsLocalAddress(IPAddress address) => IPAddress.IsLoopback(address) || address.Equals(Address) || LocalAddresses.Contains(address);

        public ValueTask DisposeAsync()
        {
            _queue.Writer.TryComplete();
            lock (_net._endpoints) _net._endpoints.Remove(this);
            return ValueTask.CompletedTask;
        }
    }
}
