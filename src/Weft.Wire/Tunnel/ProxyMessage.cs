using System.Buffers;
using Weft.Wire.Protobuf;

namespace Weft.Wire.Tunnel;

/// <summary>Type of a <see cref="ProxyMessage"/> (EdgeMesh's <c>proxy.Proxy.Type</c>).</summary>
public enum ProxyMessageType
{
    Connect = 0,
    Success = 1,
    Failed = 2,
}

/// <summary>
/// EdgeMesh's tunnel handshake message (<c>pkg/tunnel/pb/proxy/proxy.proto</c>, proto2):
/// <code>
/// optional Type type = 1; optional string protocol = 2; optional string node_name = 3;
/// optional string ip = 4; optional int32 port = 5;
/// </code>
/// sent once each way with a uvarint length prefix (at most <see cref="MaxMessageLength"/> bytes, as go-msgio reads it)
/// on a <see cref="ProtocolId"/> stream; raw bytes follow. <see cref="Type"/> is always written (Go sets it, so CONNECT
/// is <c>08 00</c>); a message without it decodes as CONNECT. Absent strings decode as null; unknown fields are skipped.
/// </summary>
public sealed record ProxyMessage : ProtoMessage
{
    /// <summary>EdgeMesh's TCP/UDP tunnel protocol (UDP there is unframed; Weft peers use <see cref="UdpProtocolId"/>).</summary>
    public const string ProtocolId = "/libp2p/tunnel-proxy/1.0.0";

    /// <summary>Weft's UDP tunnel: the same handshake, then datagrams each with a uvarint length prefix.</summary>
    public const string UdpProtocolId = "/weft/tunnel-udp/1.0.0";

    /// <summary>Largest encoded message (length prefix excluded): go-msgio's MaxReadSize in EdgeMesh.</summary>
    public const int MaxMessageLength = 4096;

    private const string Codec = "tunnel-proxy";

    public required ProxyMessageType Type { get; init; }

    /// <summary>"tcp" or "udp".</summary>
    public string? Protocol { get; init; }

    /// <summary>The destination node's name.</summary>
    public string? NodeName { get; init; }

    /// <summary>The endpoint's IP address, as the destination node dials it.</summary>
    public string? Ip { get; init; }

    public int? Port { get; init; }

    /// <summary>Decodes a protobuf. Throws <see cref="ProtocolViolationException"/> ("tunnel-proxy") when malformed or too long.</summary>
    public static ProxyMessage FromProtobuf(ReadOnlySpan<byte> data)
    {
        if (data.Length > MaxMessageLength)
        {
            throw new ProtocolViolationException(Codec, $"message of {data.Length} bytes exceeds {MaxMessageLength}");
        }

        try
        {
            var r = new ProtoReader(data);
            var type = ProxyMessageType.Connect;
            string? protocol = null, node = null, ip = null;
            int? port = null;
            while (r.TryReadTag(out int field, out WireType wire))
            {
                switch (field)
                {
                    case 1 when wire == WireType.Varint:
                        type = (ProxyMessageType)r.ReadInt32();
                        break;
                    case 2 when wire == WireType.LengthDelimited:
                        protocol = r.ReadString();
                        break;
                    case 3 when wire == WireType.LengthDelimited:
                        node = r.ReadString();
                        break;
                    case 4 when wire == WireType.LengthDelimited:
                        ip = r.ReadString();
                        break;
                    case 5 when wire == WireType.Varint:
                        port = r.ReadInt32();
                        break;
                    default:
                        r.Skip(wire);
                        break;
                }
            }

            return new ProxyMessage { Type = type, Protocol = protocol, NodeName = node, Ip = ip, Port = port };
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
    public static bool TryRead(ref ReadOnlySequence<byte> input, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out ProxyMessage? value) =>
        LengthPrefixed.TryRead(ref input, MaxMessageLength, Codec, FromProtobuf, out value);

    protected override void WriteTo(ProtoWriter w)
    {
        w.WriteInt32(1, (int)Type);
        if (Protocol is not null) w.WriteString(2, Protocol);
        if (NodeName is not null) w.WriteString(3, NodeName);
        if (Ip is not null) w.WriteString(4, Ip);
        if (Port is { } port) w.WriteInt32(5, port);
    }
}
