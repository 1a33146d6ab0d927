using Weft.Wire.Multiformats;

namespace Weft.Wire.Relay;

/// <summary>
/// Constants and framing of circuit relay v2 (relay/circuit-v2.md). Every hop and stop message travels as a
/// uvarint length prefix followed by the protobuf.
/// </summary>
public static class RelayProtocol
{
    /// <summary>Protocol ID of the hop protocol (client ↔ relay).</summary>
    public const string HopProtocolId = "/libp2p/circuit/relay/0.2.0/hop";

    /// <summary>Protocol ID of the stop protocol (relay → target peer).</summary>
    public const string StopProtocolId = "/libp2p/circuit/relay/0.2.0/stop";

    /// <summary>Largest encoded message (length prefix excluded) accepted on decode, as the spec suggests.</summary>
    public const int MaxMessageLength = 4096;

    /// <summary>Most addresses kept from one address list; the rest are dropped.</summary>
    public const int MaxAddresses = 128;

    /// <summary>Codec name used in <see cref="ProtocolViolationException"/>.</summary>
    internal const string Codec = "relay";

    /// <summary>
    /// Adds a list entry as a multiaddr; entries that are empty or do not parse (a newer peer may use protocols we
    /// do not know), and entries past <see cref="MaxAddresses"/>, are dropped.
    /// </summary>
    internal static void AddAddress(List<Multiaddr> list, ReadOnlySpan<byte> raw)
    {
        if (list.Count < MaxAddresses && !raw.IsEmpty && Multiaddr.TryFromBytes(raw, out Multiaddr? address))
        {
            list.Add(address);
        }
    }
}
