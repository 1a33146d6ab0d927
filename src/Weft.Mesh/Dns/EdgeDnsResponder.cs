using System.Buffers.Binary;
using System.Net;
using Weft.Wire.Dns;

namespace Weft.Mesh.Dns;

/// <summary>What the edge DNS server does with one query.</summary>
public enum DnsOutcome
{
    /// <summary>An A record for a service.</summary>
    Answer,

    /// <summary>The name is a service, the type is not A: NOERROR with no answer.</summary>
    NoData,

    /// <summary>A name in the cluster domain that is no service, and no upstream to ask.</summary>
    NxDomain,

    /// <summary>Sent on to an upstream server.</summary>
    Forward,

    /// <summary>A name outside the cluster domain and no upstream configured.</summary>
    Refused,

    /// <summary>The query could not be parsed, or had other than one question.</summary>
    FormatError,

    /// <summary>An opcode other than QUERY.</summary>
    NotImplemented,

    /// <summary>A service without an address, or no upstream answered, or too many queries forwarded at once.</summary>
    ServerFailure,

    /// <summary>Not answered at all: shorter than a header, or itself a response (answering those could loop).</summary>
    Drop,
}

/// <summary>One decision: the response to send (null for <see cref="DnsOutcome.Forward"/> and <see cref="DnsOutcome.Drop"/>).</summary>
public readonly record struct DnsDecision(DnsOutcome Outcome, byte[]? Response, string? Name = null);

/// <summary>A service as the responder sees it: unknown, known without an address, or known at an address.</summary>
public readonly record struct ServiceLookup(bool Known, IPAddress? Address)
{
    public static readonly ServiceLookup Unknown = new(false, null);
}

/// <summary>
/// The edge DNS server's decisions, without I/O: A records for <c>NAME.NAMESPACE.svc.DOMAIN</c> of proxied services,
/// NODATA for their other types, and for every other name either forwarding (when an upstream is configured) or, without
/// one, NXDOMAIN inside the domain and REFUSED outside it. Malformed queries get FORMERR; responses are never answered.
/// </summary>
public sealed class EdgeDnsResponder(DnsName domain, uint ttl, bool canForward)
{
    private const int HeaderLength = 12;
    private const ushort QrBit = 0x8000;

    public DnsName Domain { get; } = domain;

    /// <summary>Decides what to do with <paramref name="query"/>; <paramref name="lookup"/> maps (namespace, name) to a service.</summary>
    public DnsDecision Decide(ReadOnlySpan<byte> query, Func<string, string, ServiceLookup> lookup)
    {
        if (query.Length < HeaderLength) return new(DnsOutcome.Drop, null);
        var flags = BinaryPrimitives.ReadUInt16BigEndian(query[2..]);
        if ((flags & QrBit) != 0) return new(DnsOutcome.Drop, null);
        DnsMessage message;
        try
        {
            message = DnsMessage.Parse(query, new DnsLimits { MaxMessageSize = EdgeDnsLimits.MaxMessage, MaxRecords = 64 });
        }
        catch (Weft.Wire.ProtocolViolationException)
        {
            return new(DnsOutcome.FormatError, HeaderOnly(query, DnsResponseCode.FormatError));
        }
        if (message.Opcode != 0) return new(DnsOutcome.NotImplemented, Reply(message, DnsResponseCode.NotImplemented, authoritative: false));
        if (message.Questions.Count != 1) return new(DnsOutcome.FormatError, Reply(message, DnsResponseCode.FormatError, authoritative: false));

        var q = message.Questions[0];
        var name = q.Name.ToString();
        if (q.Name.IsSubdomainOf(Domain))
        {
            var labels = q.Name.Labels;
            if (labels.Count == Domain.Labels.Count + 3 && DnsName.LabelEquals(labels[2], "svc"))
            {
                var found = lookup(DnsName.AsciiLower(labels[1]), DnsName.AsciiLower(labels[0]));
                if (found.Known)
                {
                    if (found.Address is null) return new(DnsOutcome.ServerFailure, Reply(message, DnsResponseCode.ServerFailure, authoritative: false), name);
                    var wantsA = q.Type is DnsType.A or DnsType.ANY && q.Class is DnsClass.Internet or DnsClass.Any;
                    if (!wantsA) return new(DnsOutcome.NoData, Reply(message, DnsResponseCode.NoError, authoritative: true), name);
                    var a = new ARecord { Name = q.Name, Ttl = ttl, Address = found.Address };
                    return new(DnsOutcome.Answer, Reply(message, DnsResponseCode.NoError, authoritative: true, [a]), name);
                }
            }
            return canForward
                ? new(DnsOutcome.Forward, null, name)
                : new(DnsOutcome.NxDomain, Reply(message, DnsResponseCode.NameError, authoritative: true), name);
        }
        return canForward
            ? new(DnsOutcome.Forward, null, name)
            : new(DnsOutcome.Refused, Reply(message, DnsResponseCode.Refused, authoritative: false), name);
    }

    private byte[] Reply(DnsMessage query, DnsResponseCode code, bool authoritative, IReadOnlyList<DnsRecord>? answers = null) => new DnsMessage
    {
        Id = query.Id,
        IsResponse = true,
        Opcode = query.Opcode,
        Authoritative = authoritative,
        RecursionDesired = query.RecursionDesired,
        RecursionAvailable = canForward,
        CheckingDisabled = query.CheckingDisabled,
        ResponseCode = code,
        Questions = query.Questions,
        Answers = answers ?? [],
    }.ToArray();

    /// <summary>
    /// A response with the query's ID, opcode and RD bit, <paramref name="code"/>, and no sections: for queries that
    /// could not be parsed, or whose forwarding failed (then the question is echoed when it parses).
    /// </summary>
    public static byte[] HeaderOnly(ReadOnlySpan<byte> query, DnsResponseCode code)
    {
        var response = new byte[HeaderLength];
        query[..2].CopyTo(response);
        var flags = BinaryPrimitives.ReadUInt16BigEndian(query[2..]);
        BinaryPrimitives.WriteUInt16BigEndian(response.AsSpan(2), (ushort)(QrBit | (flags & 0x7900) | (byte)code)); // opcode, RD
        return response;
    }

    /// <summary>SERVFAIL for a query that was forwarded and not answered: the question echoed when it parses.</summary>
    public byte[] ServerFailure(ReadOnlySpan<byte> query)
    {
        try
        {
            return Reply(DnsMessage.Parse(query), DnsResponseCode.ServerFailure, authoritative: false);
        }
        catch (Weft.Wire.ProtocolViolationException)
        {
            return HeaderOnly(query, DnsResponseCode.ServerFailure);
        }
    }
}
