using Weft.Wire.Multiformats;
using Weft.Wire.Protobuf;

namespace Weft.Wire.Relay;

/// <summary>
/// The relay <c>Reservation</c> message: <c>optional uint64 expire = 1; repeated bytes addrs = 2;
/// optional bytes voucher = 3;</c>.
/// </summary>
public sealed record RelayReservation
{
    /// <summary>Expiry as UTC unix time in seconds; null = absent.</summary>
    public ulong? Expire { get; init; }

    /// <summary>The relay's public addresses (with its /p2p/ID, without /p2p-circuit); unparseable entries are dropped on decode.</summary>
    public IReadOnlyList<Multiaddr> Addrs { get; init; } = [];

    /// <summary>The signed envelope bytes of a <see cref="ReservationVoucher"/>; null = absent.</summary>
    public byte[]? Voucher { get; init; }

    internal void WriteTo(ProtoWriter w)
    {
        if (Expire is ulong e)
        {
            w.WriteVarint(1, e);
        }

        foreach (Multiaddr a in Addrs)
        {
            w.WriteBytes(2, a.Bytes.Span);
        }

        if (Voucher is not null)
        {
            w.WriteBytes(3, Voucher);
        }
    }

    internal static RelayReservation Read(ReadOnlySpan<byte> data)
    {
        var r = new ProtoReader(data);
        ulong? expire = null;
        byte[]? voucher = null;
        var addrs = new List<Multiaddr>();
        while (r.TryReadTag(out int field, out WireType type))
        {
            switch (field)
            {
                case 1 when type == WireType.Varint:
                    expire = r.ReadVarint();
                    break;
                case 2 when type == WireType.LengthDelimited:
                    RelayProtocol.AddAddress(addrs, r.ReadBytes());
                    break;
                case 3 when type == WireType.LengthDelimited:
                    voucher = r.ReadBytes().ToArray();
                    break;
                default:
                    r.Skip(type);
                    break;
            }
        }

        return new RelayReservation { Expire = expire, Addrs = addrs, Voucher = voucher };
    }
}
