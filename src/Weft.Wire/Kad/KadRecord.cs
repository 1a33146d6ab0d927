using System.Globalization;
using Weft.Wire.Protobuf;

namespace Weft.Wire.Kad;

/// <summary>
/// A value stored in the DHT (kad-dht/README.md, <c>message Record</c>): <c>bytes key = 1; bytes value = 2;
/// string timeReceived = 5;</c>. The removed author (3) and signature (4) fields are skipped when read.
/// </summary>
public sealed record KadRecord : ProtoMessage
{
    private const string Codec = "kad";

    public required byte[] Key { get; init; }

    public required byte[] Value { get; init; }

    /// <summary>When the record was received, RFC 3339 with nanoseconds ("2006-01-02T15:04:05.999999999Z"), set by the receiver; may be null.</summary>
    public string? TimeReceived { get; init; }

    /// <summary><paramref name="time"/> as go and js write <see cref="TimeReceived"/>: UTC, nine fraction digits, 'Z'.</summary>
    public static string FormatTime(DateTimeOffset time) =>
        time.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss", CultureInfo.InvariantCulture) + "." +
        ((time.UtcTicks % TimeSpan.TicksPerSecond) * 100).ToString("D9", CultureInfo.InvariantCulture) + "Z";

    /// <summary>Parses <see cref="TimeReceived"/> (any RFC 3339 form); null when absent or unreadable.</summary>
    public DateTimeOffset? ParseTimeReceived() =>
        TimeReceived is { } t && DateTimeOffset.TryParse(t, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var v) ? v : null;

    /// <summary>Decodes a record. Throws <see cref="ProtocolViolationException"/> ("kad") when malformed or without a key.</summary>
    public static KadRecord FromProtobuf(ReadOnlySpan<byte> data)
    {
        try
        {
            var r = new ProtoReader(data);
            byte[]? key = null;
            byte[] value = [];
            string? time = null;
            while (r.TryReadTag(out var field, out var wire))
            {
                switch (field)
                {
                    case 1 when wire == WireType.LengthDelimited:
                        key = r.ReadBytes().ToArray();
                        break;
                    case 2 when wire == WireType.LengthDelimited:
                        value = r.ReadBytes().ToArray();
                        break;
                    case 5 when wire == WireType.LengthDelimited:
                        time = r.ReadString();
                        break;
                    default:
                        r.Skip(wire);
                        break;
                }
            }
            if (key is null) throw new ProtocolViolationException(Codec, "record without a key");
            return new KadRecord { Key = key, Value = value, TimeReceived = time };
        }
        catch (ProtocolViolationException e) when (e.Protocol != Codec)
        {
            throw new ProtocolViolationException(Codec, "malformed record: " + e.Message, e);
        }
    }

    protected override void WriteTo(ProtoWriter w)
    {
        w.WriteBytes(1, Key);
        w.WriteBytes(2, Value);
        if (TimeReceived is not null) w.WriteString(5, TimeReceived);
    }

    public bool Equals(KadRecord? other) =>
        other is not null && Key.AsSpan().SequenceEqual(other.Key) && Value.AsSpan().SequenceEqual(other.Value) && TimeReceived == other.TimeReceived;

    public override int GetHashCode() => HashCode.Combine(Key.Length, Value.Length, TimeReceived);
}
