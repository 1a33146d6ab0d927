using System.Buffers;
using System.Buffers.Binary;
using System.Diagnostics.CodeAnalysis;

namespace Weft.Wire.Dns;

/// <summary>Response codes (RFC 1035 §4.1.1).</summary>
public enum DnsResponseCode : byte
{
    NoError = 0,
    FormatError = 1,
    ServerFailure = 2,
    NameError = 3,
    NotImplemented = 4,
    Refused = 5,
}

/// <summary>
/// A DNS message (RFC 1035 §4): header, questions, answers, authority and additional records. Used for
/// multicast DNS (RFC 6762) and for plain DNS over UDP (<see cref="Parse"/>, <see cref="ToArray"/>) or TCP
/// (<see cref="TryRead"/>, <see cref="ToTcpFrame"/>: a two-byte big-endian length, then the message).
/// Names are compressed when written. Reading is bounded by <see cref="DnsLimits"/>; anything malformed
/// throws <see cref="ProtocolViolationException"/> with protocol "dns".
/// </summary>
public sealed record DnsMessage
{
    private const int HeaderLength = 12;

    /// <summary>Smallest possible question (root name, type, class) and record (root name, type, class, TTL, length).</summary>
    private const int MinQuestionLength = 5;
    private const int MinRecordLength = 11;

    public ushort Id { get; init; }

    /// <summary>QR: a response rather than a query.</summary>
    public bool IsResponse { get; init; }

    /// <summary>Opcode (4 bits; 0 = standard query).</summary>
    public byte Opcode { get; init; }

    /// <summary>AA: authoritative answer (always set in mDNS responses).</summary>
    public bool Authoritative { get; init; }

    /// <summary>TC: truncated.</summary>
    public bool Truncated { get; init; }

    /// <summary>RD: recursion desired.</summary>
    public bool RecursionDesired { get; init; }

    /// <summary>RA: recursion available.</summary>
    public bool RecursionAvailable { get; init; }

    /// <summary>AD: authentic data (RFC 4035).</summary>
    public bool AuthenticData { get; init; }

    /// <summary>CD: checking disabled (RFC 4035).</summary>
    public bool CheckingDisabled { get; init; }

    public DnsResponseCode ResponseCode { get; init; }

    public IReadOnlyList<DnsQuestion> Questions { get; init; } = [];
    public IReadOnlyList<DnsRecord> Answers { get; init; } = [];
    public IReadOnlyList<DnsRecord> Authorities { get; init; } = [];
    public IReadOnlyList<DnsRecord> Additionals { get; init; } = [];

    /// <summary>Every record of the answer, authority and additional sections.</summary>
    public IEnumerable<DnsRecord> AllRecords => Answers.Concat(Authorities).Concat(Additionals);

    /// <summary>Parses one whole message (a UDP datagram). Throws <see cref="ProtocolViolationException"/> ("dns").</summary>
    public static DnsMessage Parse(ReadOnlySpan<byte> message, DnsLimits? limits = null)
    {
        limits ??= DnsLimits.Default;
        if (message.Length > limits.MaxMessageSize)
            throw DnsReader.Violation($"message of {message.Length} bytes exceeds the limit of {limits.MaxMessageSize}");
        if (message.Length < HeaderLength) throw DnsReader.Violation($"message of {message.Length} bytes is shorter than the header");
        var r = new DnsReader(message, limits);
        var id = r.ReadUInt16();
        var flags = r.ReadUInt16();
        int qd = r.ReadUInt16(), an = r.ReadUInt16(), ns = r.ReadUInt16(), ar = r.ReadUInt16();
        var total = qd + an + ns + ar;
        if (total > limits.MaxRecords) throw DnsReader.Violation($"header counts {total} records, more than the limit of {limits.MaxRecords}");
        if ((long)qd * MinQuestionLength + (long)(an + ns + ar) * MinRecordLength > r.Remaining)
            throw DnsReader.Violation($"header counts {total} records but only {r.Remaining} bytes follow");
        var questions = new DnsQuestion[qd];
        for (var i = 0; i < qd; i++) questions[i] = r.ReadQuestion();
        return new DnsMessage
        {
            Id = id,
            IsResponse = (flags & 0x8000) != 0,
            Opcode = (byte)((flags >> 11) & 0xF),
            Authoritative = (flags & 0x0400) != 0,
            Truncated = (flags & 0x0200) != 0,
            RecursionDesired = (flags & 0x0100) != 0,
            RecursionAvailable = (flags & 0x0080) != 0,
            AuthenticData = (flags & 0x0020) != 0,
            CheckingDisabled = (flags & 0x0010) != 0,
            ResponseCode = (DnsResponseCode)(flags & 0xF),
            Questions = questions,
            Answers = ReadSection(ref r, an),
            Authorities = ReadSection(ref r, ns),
            Additionals = ReadSection(ref r, ar),
        };
    }

    private static DnsRecord[] ReadSection(ref DnsReader r, int count)
    {
        var records = new DnsRecord[count];
        for (var i = 0; i < count; i++) records[i] = r.ReadRecord();
        return records;
    }

    /// <summary>
    /// Reads one TCP-framed message (two-byte length, then the message). False: more bytes are needed and
    /// <paramref name="input"/> is untouched. A malformed or over-long message throws <see cref="ProtocolViolationException"/>.
    /// </summary>
    public static bool TryRead(ref ReadOnlySequence<byte> input, DnsLimits? limits, [NotNullWhen(true)] out DnsMessage? message)
    {
        limits ??= DnsLimits.Default;
        message = null;
        if (input.Length < 2) return false;
        Span<byte> prefix = stackalloc byte[2];
        input.Slice(0, 2).CopyTo(prefix);
        int length = BinaryPrimitives.ReadUInt16BigEndian(prefix);
        if (length > limits.MaxMessageSize)
            throw DnsReader.Violation($"message of {length} bytes exceeds the limit of {limits.MaxMessageSize}");
        if (input.Length < 2 + length) return false;
        var body = input.Slice(2, length);
        if (body.IsSingleSegment)
        {
            message = Parse(body.FirstSpan, limits);
        }
        else
        {
            var rented = ArrayPool<byte>.Shared.Rent(length);
            try
            {
                body.CopyTo(rented);
                message = Parse(rented.AsSpan(0, length), limits);
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(rented);
            }
        }
        input = input.Slice(body.End);
        return true;
    }

    /// <summary>The message as bytes (a UDP datagram), names compressed.</summary>
    public byte[] ToArray()
    {
        var w = new DnsWriter();
        WriteTo(w);
        return w.ToArray();
    }

    /// <summary>The message with the two-byte length in front, for DNS over TCP. Throws when it exceeds 65,535 bytes.</summary>
    public byte[] ToTcpFrame()
    {
        var w = new DnsWriter();
        WriteTo(w);
        if (w.Length > ushort.MaxValue) throw new InvalidOperationException($"a DNS message of {w.Length} bytes does not fit a TCP frame");
        var frame = new byte[2 + w.Length];
        BinaryPrimitives.WriteUInt16BigEndian(frame, (ushort)w.Length);
        w.Written.CopyTo(frame.AsSpan(2));
        return frame;
    }

    private void WriteTo(DnsWriter w)
    {
        foreach (var (section, list) in (ReadOnlySpan<(string, int)>)[("questions", Questions.Count), ("answers", Answers.Count), ("authorities", Authorities.Count), ("additionals", Additionals.Count)])
            if (list > ushort.MaxValue) throw new InvalidOperationException($"too many {section}: {list}");
        var flags = (IsResponse ? 0x8000 : 0) | ((Opcode & 0xF) << 11) | (Authoritative ? 0x0400 : 0) | (Truncated ? 0x0200 : 0)
                    | (RecursionDesired ? 0x0100 : 0) | (RecursionAvailable ? 0x0080 : 0) | (AuthenticData ? 0x0020 : 0)
                    | (CheckingDisabled ? 0x0010 : 0) | ((int)ResponseCode & 0xF);
        w.WriteUInt16(Id);
        w.WriteUInt16((ushort)flags);
        w.WriteUInt16((ushort)Questions.Count);
        w.WriteUInt16((ushort)Answers.Count);
        w.WriteUInt16((ushort)Authorities.Count);
        w.WriteUInt16((ushort)Additionals.Count);
        foreach (var q in Questions)
        {
            w.WriteName(q.Name, compress: true);
            w.WriteUInt16((ushort)q.Type);
            w.WriteUInt16((ushort)((q.Class & 0x7FFF) | (q.UnicastResponse ? 0x8000 : 0)));
        }
        foreach (var rr in AllRecords)
        {
            w.WriteName(rr.Name, compress: true);
            w.WriteUInt16((ushort)rr.Type);
            w.WriteUInt16((ushort)((rr.Class & 0x7FFF) | (rr.CacheFlush ? 0x8000 : 0)));
            w.WriteUInt32(rr.Ttl);
            var lengthAt = w.Length;
            w.WriteUInt16(0);
            rr.WriteData(w);
            var dataLength = w.Length - lengthAt - 2;
            if (dataLength > ushort.MaxValue) throw new InvalidOperationException($"{rr.Type} record data of {dataLength} bytes is too long");
            w.PatchUInt16(lengthAt, (ushort)dataLength);
        }
    }

    public bool Equals(DnsMessage? other) =>
        other is not null && Id == other.Id && IsResponse == other.IsResponse && Opcode == other.Opcode && Authoritative == other.Authoritative
        && Truncated == other.Truncated && RecursionDesired == other.RecursionDesired && RecursionAvailable == other.RecursionAvailable
        && AuthenticData == other.AuthenticData && CheckingDisabled == other.CheckingDisabled && ResponseCode == other.ResponseCode
        && Questions.SequenceEqual(other.Questions) && Answers.SequenceEqual(other.Answers)
        && Authorities.SequenceEqual(other.Authorities) && Additionals.SequenceEqual(other.Additionals);

    public override int GetHashCode() => HashCode.Combine(Id, IsResponse, Questions.Count, Answers.Count, Additionals.Count);
}
