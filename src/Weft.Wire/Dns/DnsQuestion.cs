namespace Weft.Wire.Dns;

/// <summary>A question (RFC 1035 §4.1.2). <see cref="UnicastResponse"/> is the top bit of the class field in mDNS (the "QU" bit, RFC 6762 §5.4).</summary>
public sealed record DnsQuestion(DnsName Name, DnsType Type, ushort Class = DnsClass.Internet)
{
    /// <summary>mDNS: the asker prefers a unicast answer.</summary>
    public bool UnicastResponse { get; init; }
}
