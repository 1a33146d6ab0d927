using System.Collections.Concurrent;

namespace Weft.Cloud.Directory;

/// <summary>The local view of the directory both backends keep: owners (the newest epoch wins) and known nodes.</summary>
internal sealed class OwnerCache
{
    private readonly ConcurrentDictionary<string, OwnerRecord> _owners = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, byte> _known = new(StringComparer.Ordinal);

    /// <summary>Raised when a node gets an owner record with another epoch.</summary>
    public event Action<OwnerRecord>? Changed;

    public IEnumerable<string> Nodes => _owners.Keys;

    public OwnerRecord? Lookup(string node) => _owners.TryGetValue(node, out var r) ? r : null;

    public bool IsKnown(string node) => _known.ContainsKey(node);

    public void MarkKnown(string node) => _known[node] = 0;

    /// <summary>Keeps the record with the larger epoch; marks the node known.</summary>
    public void Observe(OwnerRecord rec)
    {
        _known[rec.Node] = 0;
        var changed = true;
        _owners.AddOrUpdate(rec.Node, rec, (_, old) =>
        {
            changed = old.Epoch != rec.Epoch;
            return old.Epoch > rec.Epoch ? old : rec;
        });
        if (changed) Changed?.Invoke(rec);
    }

    /// <summary>Drops the node's record if <paramref name="drop"/> says so of the current one.</summary>
    public void Remove(string node, Func<OwnerRecord, bool> drop)
    {
        if (_owners.TryGetValue(node, out var cur) && drop(cur)) _owners.TryRemove(new KeyValuePair<string, OwnerRecord>(node, cur));
    }
}
