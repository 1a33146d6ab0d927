using Weft.Wire.Identity;

namespace Weft.Mesh.Discovery;

/// <summary>A node name learned for a peer, and how: "MDNS" or "DHT" when we asked, "inbound" when it told us.</summary>
public sealed record NodeNameLearned(string NodeName, PeerId Peer, string How, DateTimeOffset At);

/// <summary>
/// The node name ⇄ peer ID map EdgeMesh keeps (<c>nodePeerMap</c>), thread-safe and bounded: past
/// <see cref="MaxNodes"/> the least recently confirmed entry is dropped. A name learned again for another peer
/// moves to that peer (EdgeMesh's "(re)mapping"), and a peer has one name.
/// </summary>
public sealed class NodeDirectory(int maxNodes = NodeDirectory.DefaultMaxNodes)
{
    public const int DefaultMaxNodes = 4096;

    private readonly Dictionary<string, (PeerId Peer, DateTimeOffset At)> _byName = new(StringComparer.Ordinal);
    private readonly Dictionary<PeerId, string> _byPeer = new();
    private readonly Lock _gate = new();

    public int MaxNodes { get; } = maxNodes > 0 ? maxNodes : throw new ArgumentOutOfRangeException(nameof(maxNodes));

    /// <summary>Raised after a name is recorded or moves to another peer (not when the same mapping is confirmed).</summary>
    public event Action<NodeNameLearned>? Learned;

    public int Count { get { lock (_gate) return _byName.Count; } }

    public bool TryGetPeer(string nodeName, out PeerId peer)
    {
        lock (_gate)
        {
            var ok = _byName.TryGetValue(nodeName, out var e);
            peer = e.Peer;
            return ok;
        }
    }

    public bool TryGetNodeName(PeerId peer, out string nodeName)
    {
        lock (_gate) return _byPeer.TryGetValue(peer, out nodeName!);
    }

    /// <summary>Every mapping, name → peer.</summary>
    public IReadOnlyDictionary<string, PeerId> Snapshot()
    {
        lock (_gate) return _byName.ToDictionary(kv => kv.Key, kv => kv.Value.Peer, StringComparer.Ordinal);
    }

    /// <summary>Records that <paramref name="nodeName"/> is <paramref name="peer"/>.</summary>
    public void Set(string nodeName, PeerId peer, string how, DateTimeOffset at)
    {
        ArgumentException.ThrowIfNullOrEmpty(nodeName);
        ArgumentNullException.ThrowIfNull(peer);
        bool changed;
        lock (_gate)
        {
            changed = !_byName.TryGetValue(nodeName, out var old) || old.Peer != peer;
            if (changed && _byName.TryGetValue(nodeName, out old)) _byPeer.Remove(old.Peer);
            if (_byPeer.TryGetValue(peer, out var previousName) && previousName != nodeName)
            {
                _byName.Remove(previousName);
                changed = true;
            }
            _byName[nodeName] = (peer, at);
            _byPeer[peer] = nodeName;
            if (_byName.Count > MaxNodes)
            {
                var stalest = _byName.MinBy(kv => kv.Value.At);
                _byName.Remove(stalest.Key);
                _byPeer.Remove(stalest.Value.Peer);
            }
        }
        if (changed) Learned?.Invoke(new NodeNameLearned(nodeName, peer, how, at));
    }
}
