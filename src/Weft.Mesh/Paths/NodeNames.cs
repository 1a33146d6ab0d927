using Weft.Mesh.Config;
using Weft.Mesh.Identity;
using Weft.Wire.Identity;

namespace Weft.Mesh.Paths;

/// <summary>
/// Node name ⇄ peer ID for the agent, kept in the discovery's <see cref="Discovery.NodeDirectory"/> (what the
/// relays in config, the node-name exchange after mDNS and DHT finds, and legacy derivation teach it). In legacy
/// identity mode an unknown name resolves to the peer ID EdgeMesh derives from it.
/// </summary>
public sealed class NodeNames(IdentityMode mode, TimeProvider time, Discovery.NodeDirectory store)
{
    /// <summary>The map itself (shared with the node-name exchange).</summary>
    public Discovery.NodeDirectory Store { get; } = store;

    public void Learn(string name, PeerId peer, string source)
    {
        if (!string.IsNullOrEmpty(name)) Store.Set(name, peer, source, time.GetUtcNow());
    }

    /// <summary>The peer ID of a node, or null if unknown (in legacy mode: derived from the name).</summary>
    public PeerId? Resolve(string name)
    {
        if (Store.TryGetPeer(name, out var peer)) return peer;
        if (mode != IdentityMode.Legacy || name.Length is 0 or > LegacyIdentity.MaxNodeNameBytes) return null;
        var derived = LegacyIdentity.DerivePeerId(name);
        Learn(name, derived, "legacy");
        return derived;
    }

    public string? NameOf(PeerId peer) => Store.TryGetNodeName(peer, out var name) ? name : null;

    /// <summary>Every node known, by name.</summary>
    public IReadOnlyDictionary<string, PeerId> All => Store.Snapshot();
}
