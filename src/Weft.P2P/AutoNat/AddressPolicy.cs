using System.Net;
using System.Net.Sockets;

namespace Weft.P2P.AutoNat;

/// <summary>Classifies IP addresses for AutoNAT: what may be dialled back and what is worth asking about.</summary>
internal static class AddressPolicy
{
    /// <summary>IPv4-mapped IPv6 addresses as plain IPv4, so a dual-stack socket's view compares equal.</summary>
    public static IPAddress Normalize(IPAddress ip) => ip.IsIPv4MappedToIPv6 ? ip.MapToIPv4() : ip;

    /// <summary>Unspecified, broadcast and multicast addresses: never dialled.</summary>
    public static bool IsUnusable(IPAddress ip)
    {
        ip = Normalize(ip);
        if (ip.Equals(IPAddress.Any) || ip.Equals(IPAddress.IPv6Any) || ip.Equals(IPAddress.Broadcast)) return true;
        if (ip.AddressFamily == AddressFamily.InterNetworkV6) return ip.IsIPv6Multicast;
        Span<byte> b = stackalloc byte[4];
        ip.TryWriteBytes(b, out _);
        return b[0] >= 224; // 224/4 multicast and 240/4 reserved
    }

    /// <summary>
    /// RFC 1918, shared (100.64/10, RFC 6598), link-local (169.254/16, fe80::/10), IPv6 unique-local (fc00::/7)
    /// and site-local addresses.
    /// </summary>
    public static bool IsPrivate(IPAddress ip)
    {
        ip = Normalize(ip);
        if (ip.AddressFamily == AddressFamily.InterNetworkV6)
            return ip.IsIPv6LinkLocal || ip.IsIPv6SiteLocal || ip.IsIPv6UniqueLocal;
        Span<byte> b = stackalloc byte[4];
        ip.TryWriteBytes(b, out _);
        return b[0] == 10
            || (b[0] == 172 && (b[1] & 0xF0) == 16)
            || (b[0] == 192 && b[1] == 168)
            || (b[0] == 100 && (b[1] & 0xC0) == 64)
            || (b[0] == 169 && b[1] == 254);
    }
}
