using Weft.Mesh.Config;
using Weft.Mesh.Identity;
using Weft.Wire.Identity;

namespace Weft.Mesh.Paths;

/// <summary>A node known by name: its peer ID and how we learned it.</summary>
public sealed record NodeEntry(string Name, PeerId Peer, string Source, DateTimeOffset Seen);

/// <summary>
/// Node name ⇄ peer ID, learned from the relays in config, the node-name exchange on connections, mDNS and the DHT.
/// In legacy identity mode an unknown name resolves to the peer ID EdgeMesh derives from it. Bounded by
/// <see cref="MaxNodes"/> (the least recently seen entry is dropped).
/// </summary>
public sealed class NodeDirectory(IdentityMode mode, TimeProvider time)
{
    /// <summary>Most nodes remembered.</summary>
    public const int MaxNodes = 100_000;

    private readonly object _gate = new();
    private readonly Dictionary<string, NodeEntry> _byName = new(StringComparer.Ordinal);
    private readonly Dictionary<PeerId, NodeEntry> _byPeer = [];

    /// <summary>Raised when a name is learned or its peer changes.</summary>
    public event Action<NodeEntry>? Learned;

    public void Learn(string name, PeerId peer, string source)
    {
        if (string.IsNullOrEmpty(name)) return;
        NodeEntry entry;
        bool changed;
        lock (_gate)
        {
            changed = !_byName.TryGetValue(name, out var old) || old.Peer != peer;
            if (old is not null && old.Peer != peer) _byPeer.Remove(old.Peer);
            if (_byPeer.TryGetValue(peer, out var other) && other.Name != name) _byName.Remove(other.Name);
            entry = new NodeEntry(name, peer, source, time.GetUtcNow());
            _byName[name] = entry;
            _byPeer[peer] = entry;
            if (_byName.Count > MaxNodes)
            {
                var oldest = _byName.Values.MinBy(e => e.Seen)!;
                _byName.Remove(oldest.Name);
                _byPeer.Remove(oldest.Peer);
            }
        }
        if (changed) Learned?.Invoke(entry);
    }

    /// <summary>The peer ID of a node, or null if unknown (in legacy mode: derived from the name).</summary>
    public PeerId? Resolve(string name)
    {
        lock (_gate)
            if (_byName.TryGetValue(name, out var e)) return e.Peer;
        if (mode != IdentityMode.Legacy || name.Length is 0 or > LegacyIdentity.MaxNodeNameBytes) return null;
        var derived = LegacyIdentity.DerivePeerId(name);
        Learn(name, derived, "legacy");
        return derived;
    }

    public string? NameOf(PeerId peer)
    {
        lock (_gate) return _byPeer.TryGetValue(peer, out var e) ? e.Name : null;
    }

    public IReadOnlyList<NodeEntry> All
    {
        get { lock (_gate) return _byName.Values.OrderBy(e => e.Name, StringComparer.Ordinal).ToList(); }
    }
}
