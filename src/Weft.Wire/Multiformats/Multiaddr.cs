using System.Diagnostics.CodeAnalysis;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Weft.Wire.Identity;

namespace Weft.Wire.Multiformats;

/// <summary>
/// An immutable multiaddr. Text and binary forms are both validated; the text form printed is canonical
/// (IPv6 compressed, "/p2p/" instead of "/ipfs/", base58btc peer IDs). Equality is by binary form.
/// </summary>
public sealed class Multiaddr : IEquatable<Multiaddr>
{
    /// <summary>Longest binary multiaddr accepted.</summary>
    public const int MaxLength = 1024;

    /// <summary>Longest text multiaddr accepted.</summary>
    public const int MaxTextLength = 4096;

    private const string Codec = "multiaddr";

    private readonly byte[] _bytes;
    private readonly MultiaddrComponent[] _components;
    private readonly int _hash;
    private string? _text;

    private Multiaddr(byte[] bytes, MultiaddrComponent[] components)
    {
        _bytes = bytes;
        _components = components;
        var hash = default(HashCode);
        hash.AddBytes(bytes);
        _hash = hash.ToHashCode();
    }

    /// <summary>The multiaddr with no components ("/").</summary>
    public static Multiaddr Empty { get; } = new([], []);

    /// <summary>The components in order.</summary>
    public IReadOnlyList<MultiaddrComponent> Components => _components;

    /// <summary>The binary form (do not mutate; use <see cref="ToBytes"/> for a copy).</summary>
    public ReadOnlyMemory<byte> Bytes => _bytes;

    /// <summary>True when there are no components.</summary>
    public bool IsEmpty => _components.Length == 0;

    /// <summary>The peer ID of a trailing /p2p component, else null.</summary>
    public PeerId? PeerId =>
        _components.Length > 0 && _components[^1].Protocol == MultiaddrProtocol.P2P ? _components[^1].PeerId : null;

    /// <summary>True when the address goes through a relay (contains /p2p-circuit).</summary>
    public bool IsCircuit => HasProtocol(MultiaddrProtocol.P2PCircuit);

    /// <summary>Parses the text form; throws <see cref="FormatException"/> with the reason.</summary>
    public static Multiaddr Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (!TryParse(text, out Multiaddr? result, out string? error))
        {
            throw new FormatException($"Invalid multiaddr '{Shorten(text)}': {error}.");
        }

        return result;
    }

    /// <summary>Parses the text form; false when invalid.</summary>
    public static bool TryParse(string? text, [NotNullWhen(true)] out Multiaddr? result) => TryParse(text, out result, out _);

    /// <summary>
    /// Decodes the binary form. Throws <see cref="ProtocolViolationException"/> ("multiaddr") on unknown
    /// protocols, truncation, invalid values or more than <see cref="MaxLength"/> bytes.
    /// </summary>
    public static Multiaddr FromBytes(ReadOnlySpan<byte> bytes)
    {
        if (!TryDecode(bytes, out MultiaddrComponent[]? components, out string? error))
        {
            throw new ProtocolViolationException(Codec, error);
        }

        return new Multiaddr(bytes.ToArray(), components);
    }

    /// <summary>Like <see cref="FromBytes"/> but false instead of an exception.</summary>
    public static bool TryFromBytes(ReadOnlySpan<byte> bytes, [NotNullWhen(true)] out Multiaddr? result)
    {
        result = TryDecode(bytes, out MultiaddrComponent[]? components, out _) ? new Multiaddr(bytes.ToArray(), components) : null;
        return result is not null;
    }

    /// <summary>"/ip4/a.b.c.d/tcp/port" or "/ip6/…/tcp/port" (IPv4-mapped IPv6 becomes ip4; a scope becomes /ip6zone).</summary>
    public static Multiaddr FromTcp(IPEndPoint ep) => FromIp(ep, MultiaddrProtocol.Tcp);

    /// <summary>"/ip4/a.b.c.d/udp/port" or "/ip6/…/udp/port".</summary>
    public static Multiaddr FromUdp(IPEndPoint ep) => FromIp(ep, MultiaddrProtocol.Udp);

    /// <summary>A copy of the binary form.</summary>
    public byte[] ToBytes() => (byte[])_bytes.Clone();

    /// <summary>The canonical text form ("/" when empty).</summary>
    public override string ToString()
    {
        if (_text is not null)
        {
            return _text;
        }

        if (_components.Length == 0)
        {
            return _text = "/";
        }

        var sb = new StringBuilder(64);
        foreach (MultiaddrComponent c in _components)
        {
            sb.Append(c.ToString());
        }

        return _text = sb.ToString();
    }

    /// <summary>This address followed by <paramref name="other"/>.</summary>
    public Multiaddr Encapsulate(Multiaddr other)
    {
        ArgumentNullException.ThrowIfNull(other);
        if (other.IsEmpty)
        {
            return this;
        }

        if (IsEmpty)
        {
            return other;
        }

        if (_bytes.Length + other._bytes.Length > MaxLength)
        {
            throw new ArgumentException($"Encapsulated multiaddr would exceed {MaxLength} bytes.", nameof(other));
        }

        return new Multiaddr([.. _bytes, .. other._bytes], [.. _components, .. other._components]);
    }

    /// <summary>This address followed by the parsed <paramref name="text"/>.</summary>
    public Multiaddr Encapsulate(string text) => Encapsulate(Parse(text));

    /// <summary>This address with "/p2p/<paramref name="peer"/>" appended, unless it already ends with it.</summary>
    public Multiaddr WithPeerId(PeerId peer)
    {
        ArgumentNullException.ThrowIfNull(peer);
        PeerId? current = PeerId;
        if (current is not null && current.Equals(peer))
        {
            return this;
        }

        ReadOnlySpan<byte> id = peer.Bytes.Span;
        byte[] raw = id.ToArray();
        var component = new MultiaddrComponent(MultiaddrProtocol.P2P, peer.ToString(), raw);
        byte[] tail = new byte[Varint.SizeOf((ulong)MultiaddrProtocol.P2P) + Varint.SizeOf((ulong)raw.Length) + raw.Length];
        int n = Varint.Write(tail, (ulong)MultiaddrProtocol.P2P);
        n += Varint.Write(tail.AsSpan(n), (ulong)raw.Length);
        raw.CopyTo(tail, n);
        if (_bytes.Length + tail.Length > MaxLength)
        {
            throw new ArgumentException($"Multiaddr would exceed {MaxLength} bytes.", nameof(peer));
        }

        return new Multiaddr([.. _bytes, .. tail], [.. _components, component]);
    }

    /// <summary>This address without a trailing /p2p component (itself when there is none).</summary>
    public Multiaddr WithoutPeerId() =>
        _components.Length > 0 && _components[^1].Protocol == MultiaddrProtocol.P2P ? Take(_components.Length - 1) : this;

    /// <summary>
    /// Everything before the last occurrence of <paramref name="protocol"/> (that component and all after it
    /// removed), or null when the protocol does not occur.
    /// </summary>
    public Multiaddr? Decapsulate(MultiaddrProtocol protocol)
    {
        for (int i = _components.Length - 1; i >= 0; i--)
        {
            if (_components[i].Protocol == protocol)
            {
                return Take(i);
            }
        }

        return null;
    }

    /// <summary>True when some component uses <paramref name="protocol"/>.</summary>
    public bool HasProtocol(MultiaddrProtocol protocol)
    {
        foreach (MultiaddrComponent c in _components)
        {
            if (c.Protocol == protocol)
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>
    /// The TCP endpoint of an address that is exactly ip4|ip6 (optionally preceded by /ip6zone/&lt;numeric
    /// scope&gt;) + tcp, optionally followed by /p2p/ID.
    /// </summary>
    public bool TryGetTcpEndPoint([NotNullWhen(true)] out IPEndPoint? ep) => TryGetIpEndPoint(MultiaddrProtocol.Tcp, out ep);

    /// <summary>Like <see cref="TryGetTcpEndPoint"/> for udp.</summary>
    public bool TryGetUdpEndPoint([NotNullWhen(true)] out IPEndPoint? ep) => TryGetIpEndPoint(MultiaddrProtocol.Udp, out ep);

    /// <summary>
    /// Host and port of an address that is exactly dns|dns4|dns6 + tcp, optionally followed by /p2p/ID.
    /// <paramref name="ipv6Only"/> is true for dns6.
    /// </summary>
    public bool TryGetDnsTcp(out string host, out int port, out bool ipv6Only)
    {
        bool ok = TryGetDnsTcp(out host, out port, out AddressFamily family);
        ipv6Only = family == AddressFamily.InterNetworkV6;
        return ok;
    }

    /// <summary>
    /// Host and port of an address that is exactly dns|dns4|dns6 + tcp, optionally followed by /p2p/ID.
    /// <paramref name="family"/> is InterNetwork for dns4, InterNetworkV6 for dns6, Unspecified for dns.
    /// </summary>
    public bool TryGetDnsTcp(out string host, out int port, out AddressFamily family)
    {
        host = string.Empty;
        port = 0;
        family = AddressFamily.Unspecified;
        int count = CountWithoutTrailingPeer();
        if (count != 2 || _components[1].Protocol != MultiaddrProtocol.Tcp)
        {
            return false;
        }

        MultiaddrComponent name = _components[0];
        switch (name.Protocol)
        {
            case MultiaddrProtocol.Dns:
                family = AddressFamily.Unspecified;
                break;
            case MultiaddrProtocol.Dns4:
                family = AddressFamily.InterNetwork;
                break;
            case MultiaddrProtocol.Dns6:
                family = AddressFamily.InterNetworkV6;
                break;
            default:
                return false;
        }

        host = name.Value!;
        port = _components[1].Port;
        return true;
    }

    /// <inheritdoc />
    public bool Equals(Multiaddr? other) =>
        other is not null && (ReferenceEquals(this, other) || (other._hash == _hash && other._bytes.AsSpan().SequenceEqual(_bytes)));

    /// <inheritdoc />
    public override bool Equals(object? obj) => Equals(obj as Multiaddr);

    /// <inheritdoc />
    public override int GetHashCode() => _hash;

    public static bool operator ==(Multiaddr? left, Multiaddr? right) => left is null ? right is null : left.Equals(right);

    public static bool operator !=(Multiaddr? left, Multiaddr? right) => !(left == right);

    private bool TryGetIpEndPoint(MultiaddrProtocol transport, [NotNullWhen(true)] out IPEndPoint? ep)
    {
        ep = null;
        int count = CountWithoutTrailingPeer();
        int start = 0;
        long scope = 0;
        if (count == 3 && _components[0].Protocol == MultiaddrProtocol.Ip6Zone && _components[1].Protocol == MultiaddrProtocol.Ip6)
        {
            if (!long.TryParse(_components[0].Value, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out scope)
                || scope > uint.MaxValue)
            {
                return false;
            }

            start = 1;
        }
        else if (count != 2)
        {
            return false;
        }

        MultiaddrComponent ip = _components[start];
        MultiaddrComponent port = _components[start + 1];
        if (port.Protocol != transport || ip.Protocol is not (MultiaddrProtocol.Ip4 or MultiaddrProtocol.Ip6))
        {
            return false;
        }

        var address = new IPAddress(ip.RawValue);
        if (scope != 0)
        {
            address.ScopeId = scope;
        }

        ep = new IPEndPoint(address, port.Port);
        return true;
    }

    private int CountWithoutTrailingPeer() =>
        _components.Length > 0 && _components[^1].Protocol == MultiaddrProtocol.P2P ? _components.Length - 1 : _components.Length;

    private Multiaddr Take(int count)
    {
        if (count == _components.Length)
        {
            return this;
        }

        if (count == 0)
        {
            return Empty;
        }

        // Re-encode the kept prefix: components know their own binary length.
        int length = 0;
        for (int i = 0; i < count; i++)
        {
            length += EncodedLength(_components[i]);
        }

        return new Multiaddr(_bytes[..length], _components[..count]);
    }

    private static int EncodedLength(MultiaddrComponent c)
    {
        MultiaddrCodec.ProtocolInfo info = MultiaddrCodec.Get(c.Protocol);
        int length = Varint.SizeOf(info.Code) + c.RawValue.Length;
        return info.FixedSize >= 0 ? length : length + Varint.SizeOf((ulong)c.RawValue.Length);
    }

    private static Multiaddr FromIp(IPEndPoint ep, MultiaddrProtocol transport)
    {
        ArgumentNullException.ThrowIfNull(ep);
        IPAddress address = ep.Address.IsIPv4MappedToIPv6 ? ep.Address.MapToIPv4() : ep.Address;
        using var w = new Protobuf.ProtoWriter(64);
        var components = new List<MultiaddrComponent>(3);
        if (address.AddressFamily == AddressFamily.InterNetworkV6 && address.ScopeId != 0)
        {
            string zone = address.ScopeId.ToString(System.Globalization.CultureInfo.InvariantCulture);
            Append(w, components, MultiaddrProtocol.Ip6Zone, Encoding.ASCII.GetBytes(zone), zone);
            address = new IPAddress(address.GetAddressBytes());
        }

        byte[] ipBytes = address.GetAddressBytes();
        MultiaddrProtocol ipProtocol = address.AddressFamily == AddressFamily.InterNetwork ? MultiaddrProtocol.Ip4 : MultiaddrProtocol.Ip6;
        MultiaddrCodec.TryBytesToText(MultiaddrCodec.Get(ipProtocol), ipBytes, out string? ipText, out _);
        Append(w, components, ipProtocol, ipBytes, ipText);
        Append(w, components, transport, [(byte)(ep.Port >> 8), (byte)ep.Port], ep.Port.ToString(System.Globalization.CultureInfo.InvariantCulture));
        return new Multiaddr(w.ToArray(), [.. components]);
    }

    private static void Append(Protobuf.ProtoWriter w, List<MultiaddrComponent> components, MultiaddrProtocol protocol, byte[] raw, string? text)
    {
        MultiaddrCodec.ProtocolInfo info = MultiaddrCodec.Get(protocol);
        w.WriteRawVarint(info.Code);
        if (info.FixedSize < 0)
        {
            w.WriteRawVarint((ulong)raw.Length);
        }

        w.WriteRaw(raw);
        components.Add(new MultiaddrComponent(protocol, text, raw));
    }

    private static bool TryParse(string? text, [NotNullWhen(true)] out Multiaddr? result, [NotNullWhen(false)] out string? error)
    {
        result = null;
        if (string.IsNullOrEmpty(text))
        {
            error = "empty";
            return false;
        }

        if (text.Length > MaxTextLength)
        {
            error = $"longer than {MaxTextLength} characters";
            return false;
        }

        if (text[0] != '/')
        {
            error = "must start with '/'";
            return false;
        }

        if (text == "/")
        {
            result = Empty;
            error = null;
            return true;
        }

        string body = text.EndsWith('/') ? text[1..^1] : text[1..];
        string[] parts = body.Split('/');
        using var w = new Protobuf.ProtoWriter(128);
        var components = new List<MultiaddrComponent>(parts.Length);
        for (int i = 0; i < parts.Length; i++)
        {
            string name = parts[i];
            if (name.Length == 0)
            {
                error = "empty protocol name (double '/')";
                return false;
            }

            if (!MultiaddrCodec.TryGet(name, out MultiaddrCodec.ProtocolInfo? info))
            {
                error = $"unknown protocol '{Shorten(name)}'";
                return false;
            }

            if (info.Kind == MultiaddrCodec.ValueKind.None)
            {
                Append(w, components, info.Protocol, [], null);
                continue;
            }

            string value;
            if (info.Kind == MultiaddrCodec.ValueKind.Path)
            {
                if (i + 1 >= parts.Length)
                {
                    error = $"protocol '{name}' needs a value";
                    return false;
                }

                value = "/" + string.Join('/', parts, i + 1, parts.Length - i - 1);
                i = parts.Length;
            }
            else
            {
                if (++i >= parts.Length)
                {
                    error = $"protocol '{name}' needs a value";
                    return false;
                }

                value = parts[i];
            }

            if (!MultiaddrCodec.TryTextToBytes(info, value, out byte[]? raw, out string? valueError))
            {
                error = $"invalid {info.Name} value '{Shorten(value)}': {valueError}";
                return false;
            }

            MultiaddrCodec.TryBytesToText(info, raw, out string? canonical, out _);
            Append(w, components, info.Protocol, raw, canonical);
            if (w.Length > MaxLength)
            {
                error = $"binary form longer than {MaxLength} bytes";
                return false;
            }
        }

        result = new Multiaddr(w.ToArray(), [.. components]);
        error = null;
        return true;
    }

    private static bool TryDecode(ReadOnlySpan<byte> bytes, [NotNullWhen(true)] out MultiaddrComponent[]? components, [NotNullWhen(false)] out string? error)
    {
        components = null;
        if (bytes.Length > MaxLength)
        {
            error = $"longer than {MaxLength} bytes";
            return false;
        }

        var list = new List<MultiaddrComponent>(4);
        int pos = 0;
        try
        {
            while (pos < bytes.Length)
            {
                if (!Varint.TryRead(bytes[pos..], out ulong code, out int n))
                {
                    error = "truncated protocol code";
                    return false;
                }

                pos += n;
                if (!MultiaddrCodec.TryGet(code, out MultiaddrCodec.ProtocolInfo? info))
                {
                    error = $"unknown protocol code {code}";
                    return false;
                }

                int size = info.FixedSize;
                if (size < 0)
                {
                    if (!Varint.TryRead(bytes[pos..], out ulong length, out n))
                    {
                        error = $"truncated {info.Name} value length";
                        return false;
                    }

                    pos += n;
                    if (length > (ulong)(bytes.Length - pos))
                    {
                        error = $"{info.Name} value length {length} exceeds the input";
                        return false;
                    }

                    size = (int)length;
                }
                else if (size > bytes.Length - pos)
                {
                    error = $"truncated {info.Name} value";
                    return false;
                }

                ReadOnlySpan<byte> raw = bytes.Slice(pos, size);
                pos += size;
                if (!MultiaddrCodec.TryBytesToText(info, raw, out string? text, out string? valueError))
                {
                    error = $"invalid {info.Name} value: {valueError}";
                    return false;
                }

                list.Add(new MultiaddrComponent(info.Protocol, text, raw.ToArray()));
            }
        }
        catch (ProtocolViolationException e)
        {
            error = e.Detail;
            return false;
        }

        components = [.. list];
        error = null;
        return true;
    }

    private static string Shorten(string text) => text.Length <= 100 ? text : text[..100] + "…";
}
