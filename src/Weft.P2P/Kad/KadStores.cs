using Weft.Wire.Identity;
using Weft.Wire.Kad;
using Weft.Wire.Multiformats;

namespace Weft.P2P.Kad;

/// <summary>Records received by PUT_VALUE (or put locally), bounded in count and bytes, each served until its TTL.</summary>
internal sealed class RecordStore(int maxRecords, long maxBytes, TimeSpan ttl)
{
    private readonly Dictionary<string, (KadRecord Record, DateTimeOffset Received)> _records = new(StringComparer.Ordinal);
    private readonly Lock _gate = new();
    private long _bytes;

    public int Count { get { lock (_gate) return _records.Count; } }

    public long Bytes { get { lock (_gate) return _bytes; } }

    private static string KeyOf(ReadOnlySpan<byte> key) => Convert.ToHexString(key);

    public KadRecord? Get(ReadOnlySpan<byte> key, DateTimeOffset now)
    {
        var k = KeyOf(key);
        lock (_gate)
        {
            if (!_records.TryGetValue(k, out var e)) return null;
            if (now - e.Received < ttl) return e.Record;
            _records.Remove(k);
            _bytes -= e.Record.Value.Length;
            return null;
        }
    }

    /// <summary>Stores <paramref name="record"/> (replacing the one under its key); false when the store is full.</summary>
    public bool Put(KadRecord record, DateTimeOffset now)
    {
        var k = KeyOf(record.Key);
        lock (_gate)
        {
            var old = _records.TryGetValue(k, out var e) ? e.Record.Value.Length : 0;
            if (old == 0 && !_records.ContainsKey(k) && _records.Count >= maxRecords) PurgeLocked(now);
            if (!_records.ContainsKey(k) && _records.Count >= maxRecords) return false;
            if (_bytes - old + record.Value.Length > maxBytes)
            {
                PurgeLocked(now);
                if (_bytes - old + record.Value.Length > maxBytes) return false;
            }
            _records[k] = (record, now);
            _bytes += record.Value.Length - old;
            return true;
        }
    }

    private void PurgeLocked(DateTimeOffset now)
    {
        foreach (var (k, e) in _records.Where(kv => now - kv.Value.Received >= ttl).ToList())
        {
            _records.Remove(k);
            _bytes -= e.Record.Value.Length;
        }
    }
}

/// <summary>A provider of a key, with the addresses it gave (handed out only while fresh).</summary>
internal sealed record ProviderEntry(PeerId Peer, IReadOnlyList<Multiaddr> Addresses, DateTimeOffset Added);

/// <summary>
/// Provider records from ADD_PROVIDER: bounded in keys, providers per key and keys per provider (one peer
/// cannot fill the store); each expires after its TTL unless re-added.
/// </summary>
internal sealed class ProviderStore(int maxKeys, int maxPerKey, int maxKeysPerProvider, TimeSpan ttl)
{
    private readonly Dictionary<ContentKey, Dictionary<PeerId, ProviderEntry>> _byKey = new();
    private readonly Dictionary<PeerId, int> _keysPerPeer = new();
    private readonly Lock _gate = new();

    public int KeyCount { get { lock (_gate) return _byKey.Count; } }

    public int RecordCount { get { lock (_gate) return _byKey.Values.Sum(v => v.Count); } }

    /// <summary>Adds or refreshes a provider; null when added, else why it was refused.</summary>
    public string? Add(ContentKey key, PeerId peer, IReadOnlyList<Multiaddr> addrs, DateTimeOffset now)
    {
        lock (_gate)
        {
            if (_byKey.TryGetValue(key, out var providers) && providers.ContainsKey(peer))
            {
                providers[peer] = new ProviderEntry(peer, addrs, now);
                return null;
            }
            if (_keysPerPeer.GetValueOrDefault(peer) >= maxKeysPerProvider)
            {
                PurgeLocked(now);
                if (_keysPerPeer.GetValueOrDefault(peer) >= maxKeysPerProvider) return "keys per provider";
            }
            if (providers is null)
            {
                if (_byKey.Count >= maxKeys) PurgeLocked(now);
                if (_byKey.Count >= maxKeys) return "provider keys";
                _byKey[key] = providers = new Dictionary<PeerId, ProviderEntry>();
            }
            if (providers.Count >= maxPerKey)
            {
                PurgeLocked(now);
                if (providers.Count >= maxPerKey) return "providers per key";
                if (!_byKey.ContainsKey(key)) _byKey[key] = providers;
            }
            providers[peer] = new ProviderEntry(peer, addrs, now);
            _keysPerPeer[peer] = _keysPerPeer.GetValueOrDefault(peer) + 1;
            return null;
        }
    }

    /// <summary>The live providers of <paramref name="key"/>, most recently added first.</summary>
    public IReadOnlyList<ProviderEntry> Get(ContentKey key, DateTimeOffset now)
    {
        lock (_gate)
        {
            if (!_byKey.TryGetValue(key, out var providers)) return [];
            return providers.Values.Where(p => now - p.Added < ttl).OrderByDescending(p => p.Added).ToList();
        }
    }

    private void PurgeLocked(DateTimeOffset now)
    {
        foreach (var (key, providers) in _byKey.ToList())
        {
            foreach (var p in providers.Values.Where(p => now - p.Added >= ttl).ToList())
            {
                providers.Remove(p.Peer);
                if (--_keysPerPeer[p.Peer] <= 0) _keysPerPeer.Remove(p.Peer);
            }
            if (providers.Count == 0) _byKey.Remove(key);
        }
    }
}
