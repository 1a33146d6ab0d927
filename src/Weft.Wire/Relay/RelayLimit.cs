using Weft.Wire.Protobuf;

namespace Weft.Wire.Relay;

/// <summary>
/// The relay <c>Limit</c> message: <c>optional uint32 duration = 1; optional uint64 data = 2;</c>. A missing
/// field or 0 means "no limit". The codec only carries the numbers: the spec says <see cref="Duration"/> is in
/// seconds, but js-libp2p relays put MILLISECONDS on the wire (they send 120000 for their 2-minute default;
/// see /work/shared/reference/libp2p-interop-natlab.md P5), while js clients read it as seconds. Callers must
/// interpret it. <see cref="Data"/> is in bytes (js counts both directions together).
/// </summary>
public sealed record RelayLimit
{
    /// <summary>Longest relayed connection, in seconds by the spec (milliseconds from js relays); null = absent.</summary>
    public uint? Duration { get; init; }

    /// <summary>Most bytes relayed per direction; null = absent.</summary>
    public ulong? Data { get; init; }

    internal void WriteTo(ProtoWriter w)
    {
        if (Duration is uint d)
        {
            w.WriteVarint(1, d);
        }

        if (Data is ulong b)
        {
            w.WriteVarint(2, b);
        }
    }

    internal static RelayLimit Read(ReadOnlySpan<byte> data)
    {
        var r = new ProtoReader(data);
        uint? duration = null;
        ulong? bytes = null;
        while (r.TryReadTag(out int field, out WireType type))
        {
            switch (field)
            {
                case 1 when type == WireType.Varint:
                    duration = r.ReadUInt32();
                    break;
                case 2 when type == WireType.Varint:
                    bytes = r.ReadVarint();
                    break;
                default:
                    r.Skip(type);
                    break;
            }
        }

        return new RelayLimit { Duration = duration, Data = bytes };
    }
}
