using System.Buffers;
using Weft.Wire.Multiformats;
using Weft.Wire.Protobuf;
using Weft.Wire.Relay;

namespace Weft.Wire.Dcutr;

/// <summary>Type of a <see cref="HolePunchMessage"/>.</summary>
public enum HolePunchType
{
    Connect = 100,
    Sync = 300,
}

/// <summary>
/// The DCUtR message (relay/DCUtR.md): <c>optional Type type = 1; repeated bytes ObsAddrs = 2;</c>, sent with a
/// uvarint length prefix on a <see cref="ProtocolId"/> stream. <see cref="Type"/> is always written; a message
/// without it decodes as <see cref="HolePunchType.Connect"/> (the proto2 default, as go reads it). Observed
/// addresses that are empty or do not parse are dropped; unknown fields are skipped; an undefined type number is carried through.
/// </summary>
public sealed record HolePunchMessage : ProtoMessage
{
    /// <summary>Protocol ID of DCUtR.</summary>
    public const string ProtocolId = "/libp2p/dcutr";

    /// <summary>Largest encoded message (length prefix excluded) accepted on decode (4 KiB, as the spec asks).</summary>
    public const int MaxMessageLength = 4096;

    /// <summary>Most observed addresses kept from one message.</summary>
    public const int MaxAddresses = RelayProtocol.MaxAddresses;

    private const string Codec = "dcutr";

    public required HolePunchType Type { get; init; }

    /// <summary>The sender's observed (and predicted) addresses.</summary>
    public IReadOnlyList<Multiaddr> ObsAddrs { get; init; } = [];

    /// <summary>Decodes a protobuf. Throws <see cref="ProtocolViolationException"/> ("dcutr") when malformed or too long.</summary>
    public static HolePunchMessage FromProtobuf(ReadOnlySpan<byte> data)
    {
        if (data.Length > MaxMessageLength)
        {
            throw new ProtocolViolationException(Codec, $"message of {data.Length} bytes exceeds {MaxMessageLength}");
        }

        try
        {
            var r = new ProtoReader(data);
            HolePunchType type = HolePunchType.Connect;
            var addrs = new List<Multiaddr>();
            while (r.TryReadTag(out int field, out WireType wire))
            {
                switch (field)
                {
                    case 1 when wire == WireType.Varint:
                        type = (HolePunchType)r.ReadInt32();
                        break;
                    case 2 when wire == WireType.LengthDelimited:
                        RelayProtocol.AddAddress(addrs, r.ReadBytes());
                        break;
                    default:
                        r.Skip(wire);
                        break;
                }
            }

            return new HolePunchMessage { Type = type, ObsAddrs = addrs };
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
    public static bool TryRead(ref ReadOnlySequence<byte> input, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out HolePunchMessage? value) =>
        LengthPrefixed.TryRead(ref input, MaxMessageLength, Codec, FromProtobuf, out value);

    protected override void WriteTo(ProtoWriter w)
    {
        w.WriteInt32(1, (int)Type);
        foreach (Multiaddr a in ObsAddrs)
        {
            w.WriteBytes(2, a.Bytes.Span);
        }
    }
}
