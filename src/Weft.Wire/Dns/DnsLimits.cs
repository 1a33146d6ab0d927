namespace Weft.Wire.Dns;

/// <summary>What a DNS message may contain before it is rejected as malformed; each bound stops one way to make a reader work or allocate without end.</summary>
public sealed record DnsLimits
{
    /// <summary>Largest message in bytes (a UDP datagram, or the body of a TCP frame). DNS over TCP allows 65,535; mDNS 9,000.</summary>
    public int MaxMessageSize { get; init; } = 65_535;

    /// <summary>Records in all sections together, questions included (checked against the header before anything is read).</summary>
    public int MaxRecords { get; init; } = 512;

    /// <summary>Labels in one name (255 wire bytes allow at most 127).</summary>
    public int MaxLabels { get; init; } = 127;

    /// <summary>Compression pointers followed while reading one name. Pointers must also point backwards, so loops are impossible.</summary>
    public int MaxPointerJumps { get; init; } = 32;

    /// <summary>The defaults: messages up to 64 KiB.</summary>
    public static DnsLimits Default { get; } = new();

    /// <summary>Multicast DNS: datagrams up to 9,000 bytes (RFC 6762 §17), at most 256 records.</summary>
    public static DnsLimits Mdns { get; } = new() { MaxMessageSize = 9_000, MaxRecords = 256 };
}
