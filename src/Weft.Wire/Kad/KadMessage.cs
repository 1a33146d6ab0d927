using System.Buffers;
using System.Diagnostics.CodeAnalysis;
using Weft.Wire.Identity;
using Weft.Wire.Multiformats;
using Weft.Wire.Protobuf;

namespace Weft.Wire.Kad;

/// <summary>Kademlia RPC types (kad-dht/README.md, <c>Message.MessageType</c>).</summary>
public enum KadMessageType
{
    PutValue = 0,
    GetValue = 1,
    AddProvider = 2,
    GetProviders = 3,
    FindNode = 4,
    /// <summary>Deprecated; answered, never sent.</summary>
    Ping = 5,
}

/// <summary>What the sender knows about its connection to a peer it names (<c>Message.ConnectionType</c>).</summary>
public enum KadConnectionType
{
    NotConnected = 0,
    Connected = 1,
    CanConnect = 2,
    CannotConnect = 3,
}

/// <summary>A peer named in a message: <c>bytes id = 1; repeated bytes addrs = 2; ConnectionType connection = 3;</c>.</summary>
public sealed record KadPeer(PeerId Id, IReadOnlyList<Multiaddr> Addresses, KadConnectionType Connection = KadConnectionType.NotConnected);

/// <summary>
/// The Kademlia DHT message (kad-dht/README.md), sent with a uvarint length prefix on <see cref="ProtocolId"/>
/// (or <see cref="LanProtocolId"/>) streams: <c>type = 1, key = 2, record = 3, closerPeers = 8,
/// providerPeers = 9, clusterLevelRaw = 10</c>. Decoding is bounded: the message by
/// <see cref="MaxMessageLength"/>, each peer list by <see cref="MaxPeersPerList"/> and each peer's addresses by
/// <see cref="MaxAddressesPerPeer"/> (extra entries are dropped, as are peers whose ID or addresses do not parse).
/// A missing type reads as <see cref="KadMessageType.PutValue"/> (proto3 default, as js writes it); <see cref="Type"/> is always written.
/// </summary>
public sealed record KadMessage : ProtoMessage
{
    /// <summary>The public (WAN) DHT.</summary>
    public const string ProtocolId = "/ipfs/kad/1.0.0";

    /// <summary>The LAN-only DHT (go-libp2p's dual DHT).</summary>
    public const string LanProtocolId = "/ipfs/lan/kad/1.0.0";

    /// <summary>Largest encoded message accepted (length prefix excluded). go-libp2p allows 4 MiB; 1 MiB holds any sane answer.</summary>
    public const int MaxMessageLength = 1 << 20;

    /// <summary>Peers kept from one closerPeers or providerPeers list.</summary>
    public const int MaxPeersPerList = 100;

    /// <summary>Addresses kept per peer.</summary>
    public const int MaxAddressesPerPeer = 32;

    /// <summary>Longest key accepted.</summary>
    public const int MaxKeyLength = 1024;

    private const string Codec = "kad";

    public required KadMessageType Type { get; init; }

    /// <summary>Not used; carried through.</summary>
    public int ClusterLevelRaw { get; init; }

    /// <summary>FIND_NODE: a peer ID's bytes; GET/PUT_VALUE: the record key; ADD_PROVIDER/GET_PROVIDERS: a multihash.</summary>
    public byte[]? Key { get; init; }

    public KadRecord? Record { get; init; }

    public IReadOnlyList<KadPeer> CloserPeers { get; init; } = [];

    public IReadOnlyList<KadPeer> ProviderPeers { get; init; } = [];

    /// <summary>Decodes a protobuf. Throws <see cref="ProtocolViolationException"/> ("kad") when malformed or too long.</summary>
    public static KadMessage FromProtobuf(ReadOnlySpan<byte> data)
    {
        if (data.Length > MaxMessageLength)
            throw new ProtocolViolationException(Codec, $"message of {data.Length} bytes exceeds {MaxMessageLength}");
        try
        {
            var r = new ProtoReader(data);
            var type = KadMessageType.PutValue;
            var cluster = 0;
            byte[]? key = null;
            KadRecord? record = null;
            var closer = new List<KadPeer>();
            var providers = new List<KadPeer>();
            while (r.TryReadTag(out var field, out var wire))
            {
                switch (field)
                {
                    case 1 when wire == WireType.Varint:
                        type = (KadMessageType)r.ReadInt32();
                        break;
                    case 10 when wire == WireType.Varint:
                        cluster = r.ReadInt32();
                        break;
                    case 2 when wire == WireType.LengthDelimited:
                        var k = r.ReadBytes();
                        if (k.Length > MaxKeyLength) throw new ProtocolViolationException(Codec, $"key of {k.Length} bytes exceeds {MaxKeyLength}");
                        key = k.ToArray();
                        break;
                    case 3 when wire == WireType.LengthDelimited:
                        record = KadRecord.FromProtobuf(r.ReadBytes());
                        break;
                    case 8 when wire == WireType.LengthDelimited:
                        AddPeer(closer, r.ReadBytes());
                        break;
                    case 9 when wire == WireType.LengthDelimited:
                        AddPeer(providers, r.ReadBytes());
                        break;
                    default:
                        r.Skip(wire);
                        break;
                }
            }
            return new KadMessage { Type = type, ClusterLevelRaw = cluster, Key = key, Record = record, CloserPeers = closer, ProviderPeers = providers };
        }
        catch (ProtocolViolationException e) when (e.Protocol != Codec)
        {
            throw new ProtocolViolationException(Codec, "malformed message: " + e.Message, e);
        }
    }

    private static void AddPeer(List<KadPeer> list, ReadOnlySpan<byte> data)
    {
        if (list.Count >= MaxPeersPerList) return;
        var r = new ProtoReader(data);
        PeerId? id = null;
        var addrs = new List<Multiaddr>();
        var connection = KadConnectionType.NotConnected;
        while (r.TryReadTag(out var field, out var wire))
        {
            switch (field)
            {
                case 1 when wire == WireType.LengthDelimited:
                    id = PeerId.TryFromBytes(r.ReadBytes(), out var p) ? p : null;
                    break;
                case 2 when wire == WireType.LengthDelimited:
                    var a = r.ReadBytes();
                    if (addrs.Count < MaxAddressesPerPeer && Multiaddr.TryFromBytes(a, out var ma) && !ma.IsEmpty) addrs.Add(ma);
                    break;
                case 3 when wire == WireType.Varint:
                    connection = (KadConnectionType)r.ReadInt32();
                    break;
                default:
                    r.Skip(wire);
                    break;
            }
        }
        if (id is not null) list.Add(new KadPeer(id, addrs, connection));
    }

    /// <summary>
    /// Reads one length-prefixed message. False: more bytes are needed and <paramref name="input"/> is untouched;
    /// malformed or oversized input throws <see cref="ProtocolViolationException"/>.
    /// </summary>
    public static bool TryRead(ref ReadOnlySequence<byte> input, [NotNullWhen(true)] out KadMessage? value) =>
        LengthPrefixed.TryRead(ref input, MaxMessageLength, Codec, FromProtobuf, out value);

    protected override void WriteTo(ProtoWriter w)
    {
        w.WriteInt32(1, (int)Type);
        if (Key is not null) w.WriteBytes(2, Key);
        if (Record is not null) w.WriteBytes(3, Record.ToProtobuf());
        foreach (var p in CloserPeers) WritePeer(w, 8, p);
        foreach (var p in ProviderPeers) WritePeer(w, 9, p);
        if (ClusterLevelRaw != 0) w.WriteInt32(10, ClusterLevelRaw);
    }

    private static void WritePeer(ProtoWriter w, int field, KadPeer p)
    {
        using var nested = new ProtoWriter(64);
        nested.WriteBytes(1, p.Id.Bytes.Span);
        foreach (var a in p.Addresses) nested.WriteBytes(2, a.Bytes.Span);
        nested.WriteInt32(3, (int)p.Connection);
        w.WriteMessage(field, nested);
    }
}
