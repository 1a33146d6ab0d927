using Weft.Wire.Multiformats;
using Weft.Wire.Protobuf;

namespace Weft.Wire.Identify;

/// <summary>The identify protobuf (identify/README.md). Unknown fields are skipped.</summary>
public sealed record IdentifyMessage
{
    public const string ProtocolId = "/ipfs/id/1.0.0";
    public const string PushProtocolId = "/ipfs/id/push/1.0.0";

    /// <summary>Largest identify message we accept (js uses 8 KiB; signed records and many addresses fit in 64 KiB).</summary>
    public const int MaxMessageLength = 64 * 1024;

    /// <summary>Most listen addresses / protocols we keep from one message.</summary>
    public const int MaxListEntries = 256;

    public string? ProtocolVersion { get; init; }
    public string? AgentVersion { get; init; }
    public byte[]? PublicKey { get; init; }
    public IReadOnlyList<Multiaddr> ListenAddrs { get; init; } = [];
    public Multiaddr? ObservedAddr { get; init; }
    public IReadOnlyList<string> Protocols { get; init; } = [];
    public byte[]? SignedPeerRecord { get; init; }

    public byte[] ToProtobuf()
    {
        var w = new ProtoWriter();
        if (PublicKey is not null) w.WriteBytes(1, PublicKey);
        foreach (var a in ListenAddrs) w.WriteBytes(2, a.ToBytes());
        foreach (var p in Protocols) w.WriteString(3, p);
        if (ObservedAddr is not null) w.WriteBytes(4, ObservedAddr.ToBytes());
        if (ProtocolVersion is not null) w.WriteString(5, ProtocolVersion);
        if (AgentVersion is not null) w.WriteString(6, AgentVersion);
        if (SignedPeerRecord is not null) w.WriteBytes(8, SignedPeerRecord);
        return w.ToArray();
    }

    /// <summary>
    /// Parses a message. Addresses a peer sends that we cannot parse are dropped (a newer peer may
    /// use protocols we do not know), the rest is strict.
    /// </summary>
    public static IdentifyMessage FromProtobuf(ReadOnlySpan<byte> data)
    {
        if (data.Length > MaxMessageLength)
            throw new ProtocolViolationException("identify", $"message of {data.Length} bytes exceeds {MaxMessageLength}");
        var r = new ProtoReader(data);
        string? pv = null, av = null;
        byte[]? pk = null, spr = null;
        Multiaddr? observed = null;
        var addrs = new List<Multiaddr>();
        var protos = new List<string>();
        while (r.TryReadTag(out var field, out var type))
        {
            switch (field)
            {
                case 1 when type == WireType.LengthDelimited: pk = r.ReadBytes().ToArray(); break;
                case 2 when type == WireType.LengthDelimited:
                    var raw = r.ReadBytes();
                    if (addrs.Count < MaxListEntries && TryAddr(raw, out var a)) addrs.Add(a!);
                    break;
                case 3 when type == WireType.LengthDelimited:
                    var p = r.ReadString();
                    if (protos.Count < MaxListEntries) protos.Add(p);
                    break;
                case 4 when type == WireType.LengthDelimited:
                    if (TryAddr(r.ReadBytes(), out var o)) observed = o;
                    break;
                case 5 when type == WireType.LengthDelimited: pv = r.ReadString(); break;
                case 6 when type == WireType.LengthDelimited: av = r.ReadString(); break;
                case 8 when type == WireType.LengthDelimited: spr = r.ReadBytes().ToArray(); break;
                default: r.Skip(type); break;
            }
        }
        return new IdentifyMessage
        {
            ProtocolVersion = pv, AgentVersion = av, PublicKey = pk, ListenAddrs = addrs,
            ObservedAddr = observed, Protocols = protos, SignedPeerRecord = spr,
        };
    }

    private static bool TryAddr(ReadOnlySpan<byte> raw, out Multiaddr? addr)
    {
        try
        {
            addr = Multiaddr.FromBytes(raw);
            return true;
        }
        catch (ProtocolViolationException)
        {
            addr = null;
            return false;
        }
    }
}
