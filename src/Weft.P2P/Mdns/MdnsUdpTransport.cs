using System.Net;
using System.Net.NetworkInformation;
using System.Net.Sockets;

namespace Weft.P2P.Mdns;

/// <summary>
/// The mDNS group 224.0.0.251 on every usable IPv4 interface, through one UDP socket bound to 0.0.0.0:5353.
/// The socket shares the port (SO_REUSEADDR and SO_REUSEPORT), so several processes on one host — Weft, js-libp2p,
/// go's zeroconf, avahi — can all run mDNS; multicast datagrams reach each of them. Queries are sent from port
/// 5353 without the unicast-response bit, so answers come back by multicast and reach every process.
/// Multicast loopback is on (processes on this host hear each other); TTL 255 (RFC 6762 §11).
/// IPv6 (ff02::fb) is not used.
/// </summary>
public sealed class MdnsUdpTransport : IMdnsTransport
{
    /// <summary>The IPv4 mDNS group.</summary>
    public static readonly IPAddress Group = IPAddress.Parse("224.0.0.251");

    private readonly Socket _socket;
    private readonly int _port;
    private readonly IReadOnlyList<string> _names;
    private readonly SemaphoreSlim _sendGate = new(1, 1);
    private readonly Lock _gate = new();
    private MdnsInterface[] _interfaces = [];
    private HashSet<IPAddress> _local = [IPAddress.Loopback];
    private int _disposed;

    private MdnsUdpTransport(Socket socket, int port, IReadOnlyList<string> names)
    {
        _socket = socket;
        _port = port;
        _names = names;
    }

    /// <summary>
    /// Binds the shared port and joins the group on every interface that is up, multicast-capable and has an
    /// IPv4 address (or only those named in <paramref name="interfaceNames"/>). Throws <see cref="SocketException"/>
    /// when the port is held by a process that does not share it.
    /// </summary>
    public static MdnsUdpTransport Open(int port = 5353, IReadOnlyList<string>? interfaceNames = null)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        try
        {
            socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
            if (OperatingSystem.IsLinux()) socket.SetRawSocketOption(1 /* SOL_SOCKET */, 15 /* SO_REUSEPORT */, BitConverter.GetBytes(1));
            socket.SetSocketOption(SocketOptionLevel.IP, SocketOptionName.PacketInformation, true);
            socket.SetSocketOption(SocketOptionLevel.IP, SocketOptionName.MulticastTimeToLive, 255);
            socket.SetSocketOption(SocketOptionLevel.IP, SocketOptionName.MulticastLoopback, true);
            socket.Bind(new IPEndPoint(IPAddress.Any, port));
        }
        catch
        {
            socket.Dispose();
            throw;
        }
        var t = new MdnsUdpTransport(socket, port, interfaceNames ?? []);
        t.RefreshInterfaces();
        NetworkChange.NetworkAddressChanged += t.OnNetworkChange;
        return t;
    }

    public IReadOnlyList<MdnsInterface> Interfaces { get { lock (_gate) return _interfaces; } }

    public event Action? NetworkChanged;

    private void OnNetworkChange(object? sender, EventArgs e) => NetworkChanged?.Invoke();

    public bool RefreshInterfaces()
    {
        var found = new List<MdnsInterface>();
        var local = new HashSet<IPAddress> { IPAddress.Loopback };
        NetworkInterface[] nics;
        try
        {
            nics = NetworkInterface.GetAllNetworkInterfaces();
        }
        catch (NetworkInformationException)
        {
            nics = [];
        }
        foreach (var nic in nics)
        {
            IPInterfaceProperties props;
            try
            {
                props = nic.GetIPProperties();
            }
            catch (NetworkInformationException)
            {
                continue;
            }
            var v4 = props.UnicastAddresses.Select(u => u.Address).Where(a => a.AddressFamily == AddressFamily.InterNetwork).ToList();
            foreach (var a in v4) local.Add(a);
            if (nic.NetworkInterfaceType == NetworkInterfaceType.Loopback || !nic.SupportsMulticast || v4.Count == 0) continue;
            if (nic.OperationalStatus is not (OperationalStatus.Up or OperationalStatus.Unknown)) continue;
            if (_names.Count > 0 && !_names.Contains(nic.Name, StringComparer.Ordinal)) continue;
            int index;
            try
            {
                index = props.GetIPv4Properties().Index;
            }
            catch (NetworkInformationException)
            {
                continue;
            }
            found.Add(new MdnsInterface(index, nic.Name, v4));
        }
        lock (_gate)
        {
            _local = local;
            var before = _interfaces;
            foreach (var i in found.Where(f => before.All(b => b.Index != f.Index)))
            {
                try
                {
                    _socket.SetSocketOption(SocketOptionLevel.IP, SocketOptionName.AddMembership, new MulticastOption(Group, i.Index));
                }
                catch (SocketException)
                {
                    // already a member (the interface came back with the same index), or it vanished meanwhile
                }
            }
            _interfaces = [.. found];
            return !before.SequenceEqual(_interfaces);
        }
    }

    public async ValueTask SendMulticastAsync(ReadOnlyMemory<byte> packet, MdnsInterface iface, CancellationToken ct)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        await _sendGate.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            // The outgoing interface is a socket option, so sends take turns.
            _socket.SetSocketOption(SocketOptionLevel.IP, SocketOptionName.MulticastInterface, iface.Addresses[0].GetAddressBytes());
            await _socket.SendToAsync(packet, SocketFlags.None, new IPEndPoint(Group, _port), ct).ConfigureAwait(false);
        }
        finally
        {
            _sendGate.Release();
        }
    }

    public async ValueTask SendUnicastAsync(ReadOnlyMemory<byte> packet, IPEndPoint to, CancellationToken ct)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        await _socket.SendToAsync(packet, SocketFlags.None, to, ct).ConfigureAwait(false);
    }

    public async ValueTask<MdnsDatagram> ReceiveAsync(Memory<byte> buffer, CancellationToken ct)
    {
        var r = await _socket.ReceiveMessageFromAsync(buffer, SocketFlags.None, new IPEndPoint(IPAddress.Any, 0), ct).ConfigureAwait(false);
        var from = (IPEndPoint)r.RemoteEndPoint;
        return new MdnsDatagram(r.ReceivedBytes, from, r.PacketInformation.Interface, (r.SocketFlags & SocketFlags.Truncated) != 0);
    }

    public bool IsLocalAddress(IPAddress address)
    {
        if (IPAddress.IsLoopback(address)) return true;
        lock (_gate) return _local.Contains(address.IsIPv4MappedToIPv6 ? address.MapToIPv4() : address);
    }

    public ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return ValueTask.CompletedTask;
        NetworkChange.NetworkAddressChanged -= OnNetworkChange;
        _socket.Dispose();
        _sendGate.Dispose();
        return ValueTask.CompletedTask;
    }
}
