using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Weft.Wire.Dns;

/// <summary>Record and question types (RFC 1035 §3.2.2, RFC 3596, RFC 2782, RFC 6891). Others are carried as numbers.</summary>
public enum DnsType : ushort
{
    A = 1,
    NS = 2,
    CNAME = 5,
    SOA = 6,
    PTR = 12,
    MX = 15,
    TXT = 16,
    AAAA = 28,
    SRV = 33,
    OPT = 41,
    ANY = 255,
}

/// <summary>Classes (RFC 1035 §3.2.4).</summary>
public static class DnsClass
{
    public const ushort Internet = 1;
    public const ushort Any = 255;
}

/// <summary>
/// A resource record. <see cref="Class"/> holds the low 15 bits; the top bit is <see cref="CacheFlush"/>
/// (RFC 6762 §10.2, meaningful in mDNS responses). Subclasses model the types whose data Weft reads;
/// any other type is an <see cref="UnknownRecord"/> with its data kept verbatim (RFC 3597).
/// </summary>
public abstract record DnsRecord
{
    public required DnsName Name { get; init; }

    public ushort Class { get; init; } = DnsClass.Internet;

    /// <summary>mDNS cache-flush bit (the top bit of the class field).</summary>
    public bool CacheFlush { get; init; }

    /// <summary>Time to live in seconds (0 in mDNS: a goodbye).</summary>
    public uint Ttl { get; init; }

    public abstract DnsType Type { get; }

    /// <summary>Writes the record data (without its length).</summary>
    internal abstract void WriteData(DnsWriter w);
}

/// <summary>A record holding one IP address of the family its type requires.</summary>
public abstract record AddressRecord : DnsRecord
{
    private readonly IPAddress _address = IPAddress.None;

    /// <summary>The address family the type requires.</summary>
    protected abstract AddressFamily Family { get; }

    public required IPAddress Address
    {
        get => _address;
        init => _address = value.AddressFamily == Family ? value : throw new ArgumentException($"a {Type} record holds an {(Family == AddressFamily.InterNetwork ? "IPv4" : "IPv6")} address", nameof(value));
    }

    internal override void WriteData(DnsWriter w) => w.WriteAddress(Address);
}

/// <summary>An IPv4 address (type A).</summary>
public sealed record ARecord : AddressRecord
{
    public override DnsType Type => DnsType.A;

    protected override AddressFamily Family => AddressFamily.InterNetwork;
}

/// <summary>An IPv6 address (type AAAA).</summary>
public sealed record AaaaRecord : AddressRecord
{
    public override DnsType Type => DnsType.AAAA;

    protected override AddressFamily Family => AddressFamily.InterNetworkV6;
}

/// <summary>A record whose data is one domain name (compressed when written).</summary>
public abstract record NameRecord : DnsRecord
{
    public required DnsName Target { get; init; }

    internal override void WriteData(DnsWriter w) => w.WriteName(Target, compress: true);
}

/// <summary>A pointer to another name (type PTR; DNS-SD's service → instance link).</summary>
public sealed record PtrRecord : NameRecord
{
    public override DnsType Type => DnsType.PTR;
}

/// <summary>An alias (type CNAME).</summary>
public sealed record CnameRecord : NameRecord
{
    public override DnsType Type => DnsType.CNAME;
}

/// <summary>A service location (type SRV, RFC 2782). The target is written uncompressed, as RFC 2782 asks; read either way.</summary>
public sealed record SrvRecord : DnsRecord
{
    public override DnsType Type => DnsType.SRV;

    public ushort Priority { get; init; }
    public ushort Weight { get; init; }
    public required ushort Port { get; init; }
    public required DnsName Target { get; init; }

    internal override void WriteData(DnsWriter w)
    {
        w.WriteUInt16(Priority);
        w.WriteUInt16(Weight);
        w.WriteUInt16(Port);
        w.WriteName(Target, compress: false);
    }
}

/// <summary>Text strings (type TXT), each at most 255 bytes.</summary>
public sealed record TxtRecord : DnsRecord
{
    /// <summary>Longest single string.</summary>
    public const int MaxStringLength = 255;

    private readonly IReadOnlyList<byte[]> _strings = [];

    public override DnsType Type => DnsType.TXT;

    public required IReadOnlyList<byte[]> Strings
    {
        get => _strings;
        init
        {
            foreach (var s in value)
                if (s.Length > MaxStringLength) throw new ArgumentException($"a TXT string of {s.Length} bytes exceeds {MaxStringLength}", nameof(value));
            _strings = value;
        }
    }

    /// <summary>A TXT record of UTF-8 strings.</summary>
    public static TxtRecord FromStrings(DnsName name, IEnumerable<string> strings, uint ttl) =>
        new() { Name = name, Ttl = ttl, Strings = strings.Select(Encoding.UTF8.GetBytes).ToList() };

    /// <summary>The strings decoded as UTF-8 (invalid sequences become U+FFFD).</summary>
    public IEnumerable<string> Texts => Strings.Select(s => Encoding.UTF8.GetString(s));

    internal override void WriteData(DnsWriter w)
    {
        foreach (var s in Strings)
        {
            w.WriteByte((byte)s.Length);
            w.WriteBytes(s);
        }
    }

    public bool Equals(TxtRecord? other) =>
        other is not null && base.Equals(other) && Strings.Count == other.Strings.Count &&
        Strings.Zip(other.Strings).All(p => p.First.AsSpan().SequenceEqual(p.Second));

    public override int GetHashCode() => HashCode.Combine(base.GetHashCode(), Strings.Count);
}

/// <summary>Any other type: the record data as it was on the wire (names inside it are not decompressed).</summary>
public sealed record UnknownRecord : DnsRecord
{
    private readonly DnsType _type;

    public override DnsType Type => _type;

    /// <summary>The type number.</summary>
    public required DnsType RecordType { get => _type; init => _type = value; }

    public required byte[] Data { get; init; }

    internal override void WriteData(DnsWriter w) => w.WriteBytes(Data);

    public bool Equals(UnknownRecord? other) => other is not null && base.Equals(other) && _type == other._type && Data.AsSpan().SequenceEqual(other.Data);

    public override int GetHashCode() => HashCode.Combine(base.GetHashCode(), _type, Data.Length);
}
