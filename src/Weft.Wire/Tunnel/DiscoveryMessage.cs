using System.Buffers;
using System.Diagnostics.CodeAnalysis;
using Weft.Wire.Protobuf;

namespace Weft.Wire.Tunnel;

/// <summary>Type of a <see cref="DiscoveryMessage"/>.</summary>
public enum DiscoveryType
{
    Connect = 0,
    Success = 1,
    Failed = 2,
}

/// <summary>
/// EdgeMesh's node-name exchange (<c>pkg/tunnel/pb/discovery/discovery.proto</c>, proto2):
/// <c>optional Type type = 1; optional string protocol = 2; optional string node_name = 3;</c>, sent
/// uvarint-length-delimited (go-msgio protoio) on <see cref="ProtocolId"/> streams, at most
/// <see cref="MaxMessageLength"/> bytes. The dialer sends CONNECT with how it found the peer ("MDNS" or "DHT")
/// and its node name; the handler answers SUCCESS with the same protocol and its own node name.
/// <see cref="Type"/> is always written (go sets it explicitly, so CONNECT is <c>08 00</c>); a message
/// without it reads as CONNECT. Unset strings are not written.
/// </summary>
public sealed record DiscoveryMessage : ProtoMessage
{
    public const string ProtocolId = "/libp2p/tunnel-discovery/1.0.0";

    /// <summary>Largest message read (EdgeMesh's MaxReadSize).</summary>
    public const int MaxMessageLength = 4096;

    /// <summary>The <see cref="Protocol"/> of a peer found by multicast DNS.</summary>
    public const string Mdns = "MDNS";

    /// <summary>The <see cref="Protocol"/> of a peer found through the DHT.</summary>
    public const string Dht = "DHT";

    private const string Codec = "tunnel-discovery";

    public required DiscoveryType Type { get; init; }

    /// <summary>How the dialer found the peer: <see cref="Mdns"/> or <see cref="Dht"/>.</summary>
    public string? Protocol { get; init; }

    public string? NodeName { get; init; }

    /// <summary>Decodes a protobuf. Throws <see cref="ProtocolViolationException"/> ("tunnel-discovery") when malformed or too long.</summary>
    public static DiscoveryMessage FromProtobuf(ReadOnlySpan<byte> data)
    {
        if (data.Length > MaxMessageLength)
            throw new ProtocolViolationException(Codec, $"message of {data.Length} bytes exceeds {MaxMessageLength}");
        try
        {
            var r = new ProtoReader(data);
            var type = DiscoveryType.Connect;
            string? protocol = null, nodeName = null;
            while (r.TryReadTag(out var field, out var wire))
            {
                switch (field)
                {
                    case 1 when wire == WireType.Varint:
                        type = (DiscoveryType)r.ReadInt32();
                        break;
                    case 2 when wire == WireType.LengthDelimited:
                        protocol = r.ReadString();
                        break;
                    case 3 when wire == WireType.LengthDelimited:
                        nodeName = r.ReadString();
                        break;
                    default:
                        r.Skip(wire);
                        break;
                }
            }
            return new DiscoveryMessage { Type = type, Protocol = protocol, NodeName = nodeName };
        }
        catch (ProtocolViolationException e) when (e.Protocol != Codec)
        {
            throw new ProtocolViolationException(Codec, "malformed message: " + e.Message, e);
        }
    }

    /// <summary>
    /// Reads one length-prefixed message. False: more bytes are needed and <paramref name="input"/> is untouched;
    /// malformed or oversized input throws <see cref="ProtocolViolationException"/>.
    /// </summary>
    public static bool TryRead(ref ReadOnlySequence<byte> input, [NotNullWhen(true)] out DiscoveryMessage? value) =>
        LengthPrefixed.TryRead(ref input, MaxMessageLength, Codec, FromProtobuf, out value);

    protected override void WriteTo(ProtoWriter w)
    {
        w.WriteInt32(1, (int)Type);
        if (Protocol is not null) w.WriteString(2, Protocol);
        if (NodeName is not null) w.WriteString(3, NodeName);
    }
}
