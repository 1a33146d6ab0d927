using Weft.Wire.Identity;

namespace Weft.Wire.Multiformats;

/// <summary>
/// One /protocol[/value] part of a <see cref="Multiaddr"/>. <see cref="Value"/> is the canonical text of the
/// value (null for protocols without one); <see cref="RawValue"/> its binary form (without the varint length
/// prefix of variable-size protocols; empty for protocols without a value). Do not mutate
/// <see cref="RawValue"/>. Equality is by protocol and value bytes.
/// </summary>
public readonly record struct MultiaddrComponent(MultiaddrProtocol Protocol, string? Value, byte[] RawValue)
{
    /// <summary>The protocol's text name ("ip4", "tcp", "p2p", ...).</summary>
    public string Name => MultiaddrCodec.Get(Protocol).Name;

    /// <summary>The peer ID of a /p2p component, else null.</summary>
    public PeerId? PeerId => Protocol == MultiaddrProtocol.P2P && Identity.PeerId.TryFromBytes(RawValue, out PeerId? id) ? id : null;

    /// <summary>The port of a tcp/udp/dccp/sctp component, else -1.</summary>
    public int Port => Protocol is MultiaddrProtocol.Tcp or MultiaddrProtocol.Udp or MultiaddrProtocol.Dccp or MultiaddrProtocol.Sctp
        && RawValue.Length == 2 ? (RawValue[0] << 8) | RawValue[1] : -1;

    /// <inheritdoc />
    public bool Equals(MultiaddrComponent other) =>
        Protocol == other.Protocol && RawValue.AsSpan().SequenceEqual(other.RawValue);

    /// <inheritdoc />
    public override int GetHashCode()
    {
        var hash = default(HashCode);
        hash.Add(Protocol);
        hash.AddBytes(RawValue);
        return hash.ToHashCode();
    }

    /// <summary>The component's text, e.g. "/tcp/4001".</summary>
    public override string ToString()
    {
        if (Value is null)
        {
            return "/" + Name;
        }

        return Protocol == MultiaddrProtocol.Unix && Value.StartsWith('/') ? "/" + Name + Value : "/" + Name + "/" + Value;
    }
}
