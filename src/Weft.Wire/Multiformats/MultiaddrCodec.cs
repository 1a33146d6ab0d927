using System.Buffers.Binary;
using System.Buffers.Text;
using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Weft.Wire.Identity;

namespace Weft.Wire.Multiformats;

/// <summary>Protocol table and value transcoders (text ⇄ bytes) of multiaddr components.</summary>
internal static class MultiaddrCodec
{
    /// <summary>Longest DNS name (and SNI) value in bytes.</summary>
    public const int MaxDnsNameLength = 255;

    internal enum ValueKind
    {
        None,
        Ip4,
        Ip6,
        Port,
        CidrMask,
        DnsName,
        Zone,
        Path,
        P2P,
        Onion,
        Onion3,
        CertHash,
        HttpPath,
    }

    internal sealed record ProtocolInfo(MultiaddrProtocol Protocol, string Name, ValueKind Kind)
    {
        /// <summary>Fixed value size in bytes, or -1 when the value is varint-length-prefixed.</summary>
        public int FixedSize { get; } = Kind switch
        {
            ValueKind.None => 0,
            ValueKind.Ip4 => 4,
            ValueKind.Ip6 => 16,
            ValueKind.Port => 2,
            ValueKind.CidrMask => 1,
            ValueKind.Onion => 12,
            ValueKind.Onion3 => 37,
            _ => -1,
        };

        public ulong Code => (ulong)Protocol;
    }

    private static readonly ProtocolInfo[] Table =
    [
        new(MultiaddrProtocol.Ip4, "ip4", ValueKind.Ip4),
        new(MultiaddrProtocol.Tcp, "tcp", ValueKind.Port),
        new(MultiaddrProtocol.Dccp, "dccp", ValueKind.Port),
        new(MultiaddrProtocol.Ip6, "ip6", ValueKind.Ip6),
        new(MultiaddrProtocol.Ip6Zone, "ip6zone", ValueKind.Zone),
        new(MultiaddrProtocol.IpCidr, "ipcidr", ValueKind.CidrMask),
        new(MultiaddrProtocol.Dns, "dns", ValueKind.DnsName),
        new(MultiaddrProtocol.Dns4, "dns4", ValueKind.DnsName),
        new(MultiaddrProtocol.Dns6, "dns6", ValueKind.DnsName),
        new(MultiaddrProtocol.DnsAddr, "dnsaddr", ValueKind.DnsName),
        new(MultiaddrProtocol.Sctp, "sctp", ValueKind.Port),
        new(MultiaddrProtocol.Udp, "udp", ValueKind.Port),
        new(MultiaddrProtocol.P2PWebRtcStar, "p2p-webrtc-star", ValueKind.None),
        new(MultiaddrProtocol.P2PWebRtcDirect, "p2p-webrtc-direct", ValueKind.None),
        new(MultiaddrProtocol.P2PStardust, "p2p-stardust", ValueKind.None),
        new(MultiaddrProtocol.WebRtcDirect, "webrtc-direct", ValueKind.None),
        new(MultiaddrProtocol.WebRtc, "webrtc", ValueKind.None),
        new(MultiaddrProtocol.P2PCircuit, "p2p-circuit", ValueKind.None),
        new(MultiaddrProtocol.Udt, "udt", ValueKind.None),
        new(MultiaddrProtocol.Utp, "utp", ValueKind.None),
        new(MultiaddrProtocol.Unix, "unix", ValueKind.Path),
        new(MultiaddrProtocol.P2P, "p2p", ValueKind.P2P),
        new(MultiaddrProtocol.Onion, "onion", ValueKind.Onion),
        new(MultiaddrProtocol.Onion3, "onion3", ValueKind.Onion3),
        new(MultiaddrProtocol.Https, "https", ValueKind.None),
        new(MultiaddrProtocol.Tls, "tls", ValueKind.None),
        new(MultiaddrProtocol.Sni, "sni", ValueKind.DnsName),
        new(MultiaddrProtocol.Noise, "noise", ValueKind.None),
        new(MultiaddrProtocol.Quic, "quic", ValueKind.None),
        new(MultiaddrProtocol.QuicV1, "quic-v1", ValueKind.None),
        new(MultiaddrProtocol.WebTransport, "webtransport", ValueKind.None),
        new(MultiaddrProtocol.CertHash, "certhash", ValueKind.CertHash),
        new(MultiaddrProtocol.Ws, "ws", ValueKind.None),
        new(MultiaddrProtocol.Wss, "wss", ValueKind.None),
        new(MultiaddrProtocol.P2PWebSocketStar, "p2p-websocket-star", ValueKind.None),
        new(MultiaddrProtocol.Http, "http", ValueKind.None),
        new(MultiaddrProtocol.HttpPath, "http-path", ValueKind.HttpPath),
    ];

    private static readonly Dictionary<ulong, ProtocolInfo> ByCode = BuildByCode();
    private static readonly Dictionary<string, ProtocolInfo> ByName = BuildByName();
    private static readonly UTF8Encoding StrictUtf8 = new(false, true);

    /// <summary>Every supported protocol.</summary>
    public static IReadOnlyList<ProtocolInfo> All => Table;

    public static ProtocolInfo Get(MultiaddrProtocol protocol) =>
        ByCode.TryGetValue((ulong)protocol, out ProtocolInfo? info) ? info : throw new ArgumentOutOfRangeException(nameof(protocol));

    public static bool TryGet(ulong code, [NotNullWhen(true)] out ProtocolInfo? info) => ByCode.TryGetValue(code, out info);

    public static bool TryGet(string name, [NotNullWhen(true)] out ProtocolInfo? info) => ByName.TryGetValue(name, out info);

    /// <summary>Converts a text value into its binary form; false with <paramref name="error"/> when invalid.</summary>
    public static bool TryTextToBytes(ProtocolInfo p, string text, [NotNullWhen(true)] out byte[]? raw, [NotNullWhen(false)] out string? error)
    {
        raw = null;
        error = null;
        switch (p.Kind)
        {
            case ValueKind.Ip4:
                raw = new byte[4];
                if (!TryParseIp4(text, raw))
                {
                    error = "not a dotted-quad IPv4 address";
                    raw = null;
                }

                break;
            case ValueKind.Ip6:
                if (text.AsSpan().IndexOfAny("%[]/") < 0
                    && IPAddress.TryParse(text, out IPAddress? ip6)
                    && ip6.AddressFamily == AddressFamily.InterNetworkV6
                    && ip6.ScopeId == 0)
                {
                    raw = ip6.GetAddressBytes();
                }
                else
                {
                    error = "not an IPv6 address";
                }

                break;
            case ValueKind.Port:
                if (TryParseDecimal(text, 65535, out int port))
                {
                    raw = [(byte)(port >> 8), (byte)port];
                }
                else
                {
                    error = "not a port number 0-65535";
                }

                break;
            case ValueKind.CidrMask:
                if (TryParseDecimal(text, 255, out int mask))
                {
                    raw = [(byte)mask];
                }
                else
                {
                    error = "not a mask length 0-255";
                }

                break;
            case ValueKind.DnsName:
            case ValueKind.Zone:
            case ValueKind.Path:
                raw = Encoding.UTF8.GetBytes(text);
                break;
            case ValueKind.HttpPath:
                raw = Encoding.UTF8.GetBytes(Uri.UnescapeDataString(text));
                break;
            case ValueKind.P2P:
                if (PeerId.TryParse(text, out PeerId? peer))
                {
                    raw = peer.Bytes.ToArray();
                }
                else
                {
                    error = "not a peer ID";
                }

                break;
            case ValueKind.Onion:
                raw = ParseOnion(text, 16, 10, out error);
                break;
            case ValueKind.Onion3:
                raw = ParseOnion(text, 56, 35, out error);
                break;
            case ValueKind.CertHash:
                raw = DecodeMultibase(text);
                if (raw is null)
                {
                    error = "not a multibase-encoded value";
                }

                break;
            default:
                error = "protocol takes no value";
                break;
        }

        if (raw is not null && !TryBytesToText(p, raw, out _, out error))
        {
            raw = null;
        }

        return raw is not null;
    }

    /// <summary>Converts a binary value into its canonical text; false with <paramref name="error"/> when invalid.</summary>
    public static bool TryBytesToText(ProtocolInfo p, ReadOnlySpan<byte> raw, out string? text, [NotNullWhen(false)] out string? error)
    {
        text = null;
        error = null;
        if (p.FixedSize >= 0 && raw.Length != p.FixedSize)
        {
            error = $"value must be {p.FixedSize} bytes";
            return false;
        }

        switch (p.Kind)
        {
            case ValueKind.None:
                return true;
            case ValueKind.Ip4:
                text = string.Create(CultureInfo.InvariantCulture, $"{raw[0]}.{raw[1]}.{raw[2]}.{raw[3]}");
                return true;
            case ValueKind.Ip6:
                text = new IPAddress(raw).ToString();
                return true;
            case ValueKind.Port:
                text = BinaryPrimitives.ReadUInt16BigEndian(raw).ToString(CultureInfo.InvariantCulture);
                return true;
            case ValueKind.CidrMask:
                text = raw[0].ToString(CultureInfo.InvariantCulture);
                return true;
            case ValueKind.DnsName:
                if (raw.Length > MaxDnsNameLength)
                {
                    error = $"name longer than {MaxDnsNameLength} bytes";
                    return false;
                }

                return TryDecodeSegment(raw, allowSlash: false, out text, out error);
            case ValueKind.Zone:
                return TryDecodeSegment(raw, allowSlash: false, out text, out error);
            case ValueKind.Path:
                return TryDecodeSegment(raw, allowSlash: true, out text, out error);
            case ValueKind.HttpPath:
                if (!TryDecodeSegment(raw, allowSlash: true, out string? path, out error))
                {
                    return false;
                }

                text = Uri.EscapeDataString(path!);
                return true;
            case ValueKind.P2P:
                if (!PeerId.TryFromBytes(raw, out PeerId? peer))
                {
                    error = "not a valid peer ID multihash";
                    return false;
                }

                text = peer.ToString();
                return true;
            case ValueKind.Onion:
            case ValueKind.Onion3:
                {
                    int addressLength = raw.Length - 2;
                    ushort onionPort = BinaryPrimitives.ReadUInt16BigEndian(raw[addressLength..]);
                    if (onionPort == 0)
                    {
                        error = "onion port must be 1-65535";
                        return false;
                    }

                    text = Base32.Encode(raw[..addressLength]) + ":" + onionPort.ToString(CultureInfo.InvariantCulture);
                    return true;
                }

            case ValueKind.CertHash:
                if (!Multihash.TryDecode(raw, out _, out _))
                {
                    error = "not a multihash";
                    return false;
                }

                text = "u" + Base64Url.EncodeToString(raw);
                return true;
            default:
                error = "unsupported protocol";
                return false;
        }
    }

    private static bool TryDecodeSegment(ReadOnlySpan<byte> raw, bool allowSlash, out string? text, [NotNullWhen(false)] out string? error)
    {
        text = null;
        if (raw.IsEmpty)
        {
            error = "value is empty";
            return false;
        }

        if (!allowSlash && raw.Contains((byte)'/'))
        {
            error = "value contains '/'";
            return false;
        }

        try
        {
            text = StrictUtf8.GetString(raw);
        }
        catch (DecoderFallbackException)
        {
            error = "value is not valid UTF-8";
            return false;
        }

        error = null;
        return true;
    }

    private static bool TryParseIp4(string text, Span<byte> dest)
    {
        ReadOnlySpan<char> rest = text;
        for (int i = 0; i < 4; i++)
        {
            int dot = rest.IndexOf('.');
            ReadOnlySpan<char> part = i < 3 ? (dot < 0 ? [] : rest[..dot]) : rest;
            if (!TryParseDecimal(part, 255, out int octet))
            {
                return false;
            }

            dest[i] = (byte)octet;
            rest = i < 3 ? rest[(dot + 1)..] : [];
        }

        return true;
    }

    /// <summary>Strict decimal: 1-5 ASCII digits, no sign, no leading zero (except "0"), at most <paramref name="max"/>.</summary>
    private static bool TryParseDecimal(ReadOnlySpan<char> text, int max, out int value)
    {
        value = 0;
        if (text.IsEmpty || text.Length > 5 || (text.Length > 1 && text[0] == '0'))
        {
            return false;
        }

        foreach (char c in text)
        {
            if (c is < '0' or > '9')
            {
                return false;
            }

            value = (value * 10) + (c - '0');
        }

        return value <= max;
    }

    private static byte[]? ParseOnion(string text, int addressChars, int addressBytes, out string? error)
    {
        int colon = text.IndexOf(':', StringComparison.Ordinal);
        if (colon != addressChars)
        {
            error = $"onion address must be {addressChars} base32 characters followed by ':port'";
            return null;
        }

        if (!Base32.TryDecode(text.AsSpan(0, colon), out byte[]? address) || address.Length != addressBytes)
        {
            error = "onion address is not base32";
            return null;
        }

        if (!TryParseDecimal(text.AsSpan(colon + 1), 65535, out int port) || port == 0)
        {
            error = "onion port must be 1-65535";
            return null;
        }

        var raw = new byte[addressBytes + 2];
        address.CopyTo(raw, 0);
        raw[addressBytes] = (byte)(port >> 8);
        raw[addressBytes + 1] = (byte)port;
        error = null;
        return raw;
    }

    private static byte[]? DecodeMultibase(string text)
    {
        if (text.Length < 1)
        {
            return null;
        }

        ReadOnlySpan<char> body = text.AsSpan(1);
        switch (text[0])
        {
            case 'u':
            case 'U':
                {
                    var buffer = new byte[Base64Url.GetMaxDecodedLength(body.Length)];
                    return Base64Url.TryDecodeFromChars(body, buffer, out int written) ? buffer[..written] : null;
                }

            case 'm':
            case 'M':
                {
                    var buffer = new byte[((body.Length + 3) / 4) * 3];
                    return Convert.TryFromBase64Chars(body, buffer, out int written) ? buffer[..written] : null;
                }

            case 'b':
            case 'B':
                return Base32.TryDecode(body, out byte[]? b32) ? b32 : null;
            case 'z':
                return Base58.TryDecode(body, out byte[]? b58) ? b58 : null;
            case 'f':
            case 'F':
                try
                {
                    return body.Length % 2 == 0 ? Convert.FromHexString(body) : null;
                }
                catch (FormatException)
                {
                    return null;
                }

            default:
                return null;
        }
    }

    private static Dictionary<ulong, ProtocolInfo> BuildByCode()
    {
        var map = new Dictionary<ulong, ProtocolInfo>();
        foreach (ProtocolInfo p in Table)
        {
            map.Add(p.Code, p);
        }

        return map;
    }

    private static Dictionary<string, ProtocolInfo> BuildByName()
    {
        var map = new Dictionary<string, ProtocolInfo>(StringComparer.Ordinal);
        foreach (ProtocolInfo p in Table)
        {
            map.Add(p.Name, p);
        }

        map.Add("ipfs", map["p2p"]);
        return map;
    }
}
