using Weft.Wire.Identity;
using Weft.Wire.Kad;
using Weft.Wire.Multiformats;

namespace Weft.P2P.Kad;

/// <summary>The client side: iterative lookups and the operations built on them.</summary>
public sealed partial class KadDht
{
    private enum CandidateState { New, Waiting, Answered, Failed }

    private sealed class Candidate(PeerId peer, KadId distance, int depth, IReadOnlyList<Multiaddr> addresses)
    {
        public PeerId Peer { get; } = peer;
        public KadId Distance { get; } = distance;

        /// <summary>1 for peers from our table, d+1 for peers named by a depth-d peer.</summary>
        public int Depth { get; } = depth;
        public List<Multiaddr> Addresses { get; } = [.. addresses];
        public CandidateState State { get; set; }
    }

    /// <summary>What an answer callback may do: note that the result was found (for the hop count) and end the lookup.</summary>
    private sealed class LookupControl
    {
        public int FoundAtDepth { get; private set; } = -1;
        public bool Stopped { get; private set; }

        public void Found(Candidate c)
        {
            if (FoundAtDepth < 0) FoundAtDepth = c.Depth;
        }

        public void Stop() => Stopped = true;
    }

    private sealed record LookupOutcome(IReadOnlyList<Candidate> Closest, KadQueryStats Stats);

    /// <summary>
    /// The iterative lookup of kad-dht/README.md: start from the k closest peers we know, keep α requests in
    /// flight to the closest peers not yet asked, add the peers each answer names, and end when the k closest
    /// peers seen have all answered (or nobody is left to ask, or <paramref name="onAnswer"/> stops it, or
    /// <see cref="KadOptions.QueryTimeout"/> passes: then with what was found so far).
    /// </summary>
    private async Task<LookupOutcome> LookupAsync(byte[] key, KadMessage request, Action<LookupControl, Candidate, KadMessage>? onAnswer, CancellationToken ct)
    {
        var started = _host.Time.GetTimestamp();
        var target = KadId.FromKey(key);
        var k = Options.BucketSize;
        var control = new LookupControl();
        var all = new Dictionary<PeerId, Candidate>();
        foreach (var e in Table.Closest(target, k))
            all[e.Peer] = new Candidate(e.Peer, e.Id.Xor(target), 1, _host.Peers.Get(e.Peer)?.Addresses ?? []);
        using var lookupCts = CancellationTokenSource.CreateLinkedTokenSource(ct, _stopping.Token);
        lookupCts.CancelAfter(Options.QueryTimeout);
        var inflight = new Dictionary<Task<(KadMessage? Answer, Exception? Error)>, Candidate>();
        int queried = 0, responded = 0, failed = 0;
        try
        {
            while (!control.Stopped && !lookupCts.IsCancellationRequested)
            {
                var closest = all.Values.Where(c => c.State != CandidateState.Failed).OrderBy(c => c.Distance, KadDistanceComparer.Instance).Take(k).ToList();
                if (closest.Count > 0 && closest.All(c => c.State == CandidateState.Answered)) break;
                foreach (var c in closest.Where(c => c.State == CandidateState.New))
                {
                    if (inflight.Count >= Options.Alpha) break;
                    c.State = CandidateState.Waiting;
                    queried++;
                    inflight[AskAsync(c, request, lookupCts.Token)] = c;
                }
                if (inflight.Count == 0) break;
                var done = await Task.WhenAny(inflight.Keys).ConfigureAwait(false);
                var cand = inflight[done];
                inflight.Remove(done);
                var (answer, error) = await done.ConfigureAwait(false);
                if (answer is null)
                {
                    cand.State = CandidateState.Failed;
                    failed++;
                    if (!lookupCts.IsCancellationRequested && Table.Remove(cand.Peer))
                        Log.PeerRemoved(_log, cand.Peer.ToString(), "did not answer: " + error?.Message);
                    continue;
                }
                cand.State = CandidateState.Answered;
                responded++;
                foreach (var p in answer.CloserPeers)
                {
                    if (p.Id == _host.PeerId) continue;
                    var addrs = Shareable(p.Addresses);
                    if (all.TryGetValue(p.Id, out var known))
                    {
                        if (known.State == CandidateState.New)
                            foreach (var a in addrs.Where(a => !known.Addresses.Contains(a)).Take(KadMessage.MaxAddressesPerPeer - known.Addresses.Count))
                                known.Addresses.Add(a);
                        continue;
                    }
                    all[p.Id] = new Candidate(p.Id, KadId.FromPeer(p.Id).Xor(target), cand.Depth + 1, addrs);
                }
                onAnswer?.Invoke(control, cand, answer);
            }
        }
        finally
        {
            // Requests still in flight are no longer wanted.
            lookupCts.Cancel();
            try { await Task.WhenAll(inflight.Keys).ConfigureAwait(false); } catch (Exception) { /* AskAsync does not throw */ }
        }
        ct.ThrowIfCancellationRequested();
        var answered = all.Values.Where(c => c.State == CandidateState.Answered).OrderBy(c => c.Distance, KadDistanceComparer.Instance).Take(k).ToList();
        var hops = control.FoundAtDepth >= 0 ? control.FoundAtDepth : answered.Count == 0 ? 0 : answered.Max(c => c.Depth);
        var elapsed = _host.Time.GetElapsedTime(started);
        _lookupSeconds.Record(elapsed.TotalSeconds, new KeyValuePair<string, object?>("type", request.Type.ToString()));
        _lookupHops.Record(hops, new KeyValuePair<string, object?>("type", request.Type.ToString()));
        return new LookupOutcome(answered, new KadQueryStats(queried, responded, failed, hops, elapsed));
    }

    private async Task<(KadMessage? Answer, Exception? Error)> AskAsync(Candidate c, KadMessage request, CancellationToken ct)
    {
        try
        {
            return (await RequestAsync(c.Peer, c.Addresses, request, expectAnswer: true, ct).ConfigureAwait(false), null);
        }
        catch (Exception ex)
        {
            if (!ct.IsCancellationRequested) Log.RequestFailed(_log, request.Type.ToString(), c.Peer.ToString(), ex.Message);
            return (null, ex);
        }
    }

    private KadPeer Describe(PeerId peer) =>
        new(peer, Shareable(_host.Peers.Get(peer)?.Addresses ?? []), _host.GetConnection(peer) is { IsClosed: false } ? KadConnectionType.Connected : KadConnectionType.NotConnected);

    /// <summary>The k peers closest to <paramref name="key"/> that answered (FIND_NODE lookup).</summary>
    public async Task<KadClosestPeers> GetClosestPeersAsync(byte[] key, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(key);
        var outcome = await LookupAsync(key, new KadMessage { Type = KadMessageType.FindNode, Key = key }, null, ct).ConfigureAwait(false);
        return new KadClosestPeers(outcome.Closest.Select(c => Describe(c.Peer)).ToList(), outcome.Stats);
    }

    /// <summary>
    /// The addresses of <paramref name="peer"/>: at once if connected, else from a FIND_NODE lookup that ends as
    /// soon as some peer names it with addresses (or it answers itself). Null when nobody knows it. Found
    /// addresses go to the peer store, so the host can dial it.
    /// </summary>
    public async Task<KadPeerFound?> FindPeerAsync(PeerId peer, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(peer);
        if (_host.GetConnection(peer) is { IsClosed: false } conn)
        {
            var known = _host.Peers.Get(peer)?.Addresses is { Count: > 0 } a ? a : [conn.RemoteAddress.WithoutPeerId()];
            return new KadPeerFound(peer, known, new KadQueryStats(0, 0, 0, 0, TimeSpan.Zero));
        }
        IReadOnlyList<Multiaddr>? found = null;
        var key = peer.Bytes.ToArray();
        var outcome = await LookupAsync(key, new KadMessage { Type = KadMessageType.FindNode, Key = key }, (control, from, answer) =>
        {
            if (from.Peer == peer && from.Addresses.Count > 0)
            {
                found = from.Addresses;
            }
            else if (answer.CloserPeers.FirstOrDefault(p => p.Id == peer && p.Addresses.Count > 0) is { } p)
            {
                found = Shareable(p.Addresses);
            }
            if (found is null) return;
            control.Found(from);
            control.Stop();
        }, ct).ConfigureAwait(false);
        if (found is null || found.Count == 0) return null;
        _host.Peers.AddAddresses(peer, found, _host.Time.GetUtcNow());
        return new KadPeerFound(peer, found, outcome.Stats);
    }

    /// <summary>
    /// Validates and stores the record here, then sends it to the k peers closest to <paramref name="key"/>.
    /// Throws <see cref="ArgumentException"/> when no validator accepts it.
    /// </summary>
    public async Task<KadStoreResult> PutValueAsync(byte[] key, byte[] value, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(key);
        ArgumentNullException.ThrowIfNull(value);
        if (Options.Validators.Validate(key, value) is { } why) throw new ArgumentException($"record refused: {why}", nameof(value));
        var record = new KadRecord { Key = key, Value = value, TimeReceived = KadRecord.FormatTime(_host.Time.GetUtcNow()) };
        _records.Put(record, _host.Time.GetUtcNow());
        var closest = await LookupAsync(key, new KadMessage { Type = KadMessageType.FindNode, Key = key }, null, ct).ConfigureAwait(false);
        var put = new KadMessage { Type = KadMessageType.PutValue, Key = key, Record = record };
        var stored = await SendToAllAsync(closest.Closest, put, expectAnswer: true, ct).ConfigureAwait(false);
        return new KadStoreResult(stored, closest.Closest.Count, closest.Stats);
    }

    private async Task<int> SendToAllAsync(IReadOnlyList<Candidate> peers, KadMessage message, bool expectAnswer, CancellationToken ct)
    {
        var results = await Task.WhenAll(peers.Select(async c =>
        {
            try
            {
                await RequestAsync(c.Peer, c.Addresses, message, expectAnswer, ct).ConfigureAwait(false);
                return true;
            }
            catch (Exception ex) when (ex is not OperationCanceledException || !ct.IsCancellationRequested)
            {
                Log.RequestFailed(_log, message.Type.ToString(), c.Peer.ToString(), ex.Message);
                return false;
            }
        })).ConfigureAwait(false);
        return results.Count(r => r);
    }

    /// <summary>
    /// The best valid value of <paramref name="key"/>: ours if stored, and those of the peers a GET_VALUE lookup
    /// reaches, until <see cref="KadOptions.GetQuorum"/> values are in. Peers among the closest that returned
    /// another value or none are sent the best one afterwards (entry correction). Null when nobody has a valid value.
    /// </summary>
    public async Task<KadValue?> GetValueAsync(byte[] key, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(key);
        var values = new List<(PeerId Peer, KadRecord Record)>();
        if (_records.Get(key, _host.Time.GetUtcNow()) is { } local) values.Add((_host.PeerId, local));
        var outcome = await LookupAsync(key, new KadMessage { Type = KadMessageType.GetValue, Key = key }, (control, from, answer) =>
        {
            if (answer.Record is not { } r || !r.Key.AsSpan().SequenceEqual(key) || Options.Validators.Validate(key, r.Value) is not null) return;
            values.Add((from.Peer, r));
            control.Found(from);
            if (values.Count >= Options.GetQuorum) control.Stop();
        }, ct).ConfigureAwait(false);
        if (values.Count == 0) return null;
        var best = values[Options.Validators.Select(key, values.Select(v => v.Record.Value).ToList())].Record;
        var holders = values.Where(v => v.Record.Value.AsSpan().SequenceEqual(best.Value)).Select(v => v.Peer).ToList();
        var outdated = outcome.Closest.Where(c => !holders.Contains(c.Peer)).ToList();
        if (outdated.Count > 0)
        {
            var correction = new KadMessage { Type = KadMessageType.PutValue, Key = key, Record = best with { TimeReceived = KadRecord.FormatTime(_host.Time.GetUtcNow()) } };
            _ = Task.Run(() => SendToAllAsync(outdated, correction, expectAnswer: true, _stopping.Token));
        }
        var stats = values.All(v => v.Peer == _host.PeerId) ? outcome.Stats with { Hops = 0 } : outcome.Stats;
        return new KadValue(best, holders, stats);
    }

    /// <summary>Announces us as a provider of <paramref name="key"/> here and to the k peers closest to it (ADD_PROVIDER).</summary>
    public async Task<KadStoreResult> ProvideAsync(ContentKey key, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(key);
        var self = new KadPeer(_host.PeerId, Shareable(_host.AdvertisedAddresses));
        _providers.Add(key, _host.PeerId, self.Addresses, _host.Time.GetUtcNow());
        var mh = key.Multihash.ToArray();
        var closest = await LookupAsync(mh, new KadMessage { Type = KadMessageType.FindNode, Key = mh }, null, ct).ConfigureAwait(false);
        var add = new KadMessage { Type = KadMessageType.AddProvider, Key = mh, ProviderPeers = [self] };
        var stored = await SendToAllAsync(closest.Closest, add, expectAnswer: false, ct).ConfigureAwait(false);
        return new KadStoreResult(stored, closest.Closest.Count, closest.Stats);
    }

    /// <summary>
    /// Up to <paramref name="max"/> providers of <paramref name="key"/>: those stored here, then those a
    /// GET_PROVIDERS lookup finds. Their addresses go to the peer store.
    /// </summary>
    public async Task<KadProviders> FindProvidersAsync(ContentKey key, int max = 20, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(key);
        ArgumentOutOfRangeException.ThrowIfLessThan(max, 1);
        var now = _host.Time.GetUtcNow();
        var found = new Dictionary<PeerId, KadPeer>();
        foreach (var p in _providers.Get(key, now).Take(max)) found[p.Peer] = ProviderPeer(p, now);
        var mh = key.Multihash.ToArray();
        var stats = new KadQueryStats(0, 0, 0, 0, TimeSpan.Zero);
        if (found.Count < max)
        {
            var outcome = await LookupAsync(mh, new KadMessage { Type = KadMessageType.GetProviders, Key = mh }, (control, from, answer) =>
            {
                foreach (var p in answer.ProviderPeers)
                {
                    if (found.Count >= max) break;
                    var addrs = Shareable(p.Addresses);
                    if (found.TryGetValue(p.Id, out var had) && had.Addresses.Count >= addrs.Count) continue;
                    found[p.Id] = new KadPeer(p.Id, addrs, p.Connection);
                    control.Found(from);
                }
                if (found.Count >= max) control.Stop();
            }, ct).ConfigureAwait(false);
            stats = outcome.Stats;
        }
        foreach (var p in found.Values.Where(p => p.Id != _host.PeerId && p.Addresses.Count > 0)) _host.Peers.AddAddresses(p.Id, p.Addresses, now);
        return new KadProviders(found.Values.ToList(), stats);
    }

    /// <summary>A stored provider as handed out: its own addresses while fresh, else what the peer store knows.</summary>
    private KadPeer ProviderPeer(ProviderEntry p, DateTimeOffset now)
    {
        if (p.Peer == _host.PeerId) return new KadPeer(p.Peer, Shareable(_host.AdvertisedAddresses), KadConnectionType.Connected);
        var addrs = now - p.Added < Options.ProviderAddressTtl && p.Addresses.Count > 0 ? Shareable(p.Addresses) : Describe(p.Peer).Addresses;
        return new KadPeer(p.Peer, addrs, _host.GetConnection(p.Peer) is { IsClosed: false } ? KadConnectionType.Connected : KadConnectionType.NotConnected);
    }
}
