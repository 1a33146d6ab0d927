using Weft.Wire.Identity;
using Weft.Wire.Multiformats;
using Weft.Wire.Protobuf;

namespace Weft.Wire.Relay;

/// <summary>The relay <c>Peer</c> message: <c>required bytes id = 1; repeated bytes addrs = 2;</c>.</summary>
public sealed record RelayPeer
{
    public RelayPeer(PeerId id, IReadOnlyList<Multiaddr>? addrs = null)
    {
        ArgumentNullException.ThrowIfNull(id);
        Id = id;
        Addrs = addrs ?? [];
    }

    /// <summary>The peer's ID.</summary>
    public PeerId Id { get; init; }

    /// <summary>Addresses of the peer (only used by deprecated active relaying); unparseable entries are dropped on decode.</summary>
    public IReadOnlyList<Multiaddr> Addrs { get; init; }

    internal void WriteTo(ProtoWriter w)
    {
        w.WriteBytes(1, Id.Bytes.Span);
        foreach (Multiaddr a in Addrs)
        {
            w.WriteBytes(2, a.Bytes.Span);
        }
    }

    internal static RelayPeer Read(ReadOnlySpan<byte> data)
    {
        var r = new ProtoReader(data);
        PeerId? id = null;
        var addrs = new List<Multiaddr>();
        while (r.TryReadTag(out int field, out WireType type))
        {
            switch (field)
            {
                case 1 when type == WireType.LengthDelimited:
                    id = PeerId.FromBytes(r.ReadBytes());
                    break;
                case 2 when type == WireType.LengthDelimited:
                    RelayProtocol.AddAddress(addrs, r.ReadBytes());
                    break;
                default:
                    r.Skip(type);
                    break;
            }
        }

        if (id is null)
        {
            throw new ProtocolViolationException(RelayProtocol.Codec, "peer lacks its required id");
        }

        return new RelayPeer(id, addrs);
    }
}
