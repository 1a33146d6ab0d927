using System.Diagnostics.Metrics;
using Microsoft.Extensions.Logging;
using Weft.P2P.Host;
using Weft.P2P.Kad;
using Weft.Wire.Identity;
using Weft.Wire.Kad;
using Weft.Wire.Multiformats;

namespace Weft.P2P.Discovery;

/// <summary>Every timer and bound of a <see cref="RendezvousService"/>.</summary>
public sealed record RendezvousOptions
{
    /// <summary>The rendezvous string; its DHT key is the CID v1 raw of its sha2-256 (EdgeMesh's default: "EDGEMESH_PLAYGOUND").</summary>
    public string Rendezvous { get; init; } = Mdns.MdnsOptions.EdgeMeshRendezvous;

    /// <summary>Announce ourselves as a provider (false: only look for others).</summary>
    public bool Advertise { get; init; } = true;

    /// <summary>How often the provider record is written again (providers expire after 48 h; EdgeMesh re-advertises every 2 h 37 min).</summary>
    public TimeSpan ProvideInterval { get; init; } = TimeSpan.FromMinutes(30);

    /// <summary>How often providers are looked up, so that peers joining later are found (EdgeMesh's finderPeriod is 60 s; EdgeMesh itself looks only once).</summary>
    public TimeSpan FindInterval { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>Gaps between the first lookups, before <see cref="FindInterval"/> applies (peers starting together find each other sooner).</summary>
    public IReadOnlyList<TimeSpan> StartupFindGaps { get; init; } = [TimeSpan.FromSeconds(2), TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(15)];

    /// <summary>After a failed provide, or while the DHT has no peers, the next try comes this soon.</summary>
    public TimeSpan RetryInterval { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Providers asked for per lookup.</summary>
    public int MaxProvidersPerFind { get; init; } = 100;

    /// <summary>Peers remembered (to report each once); past it the least recently seen is forgotten.</summary>
    public int MaxTrackedPeers { get; init; } = 1024;

    /// <summary>A peer not seen in any lookup for this long is forgotten, and reported again if it comes back.</summary>
    public TimeSpan ForgetAfter { get; init; } = TimeSpan.FromMinutes(30);

    /// <summary>Providers without addresses whose addresses are looked up (FIND_NODE) per round.</summary>
    public int MaxPeerLookupsPerFind { get; init; } = 8;

    public IReadOnlyList<string> Validate()
    {
        var p = new List<string>();
        if (string.IsNullOrEmpty(Rendezvous)) p.Add("the rendezvous string must not be empty");
        if (ProvideInterval <= TimeSpan.Zero || FindInterval <= TimeSpan.Zero || RetryInterval <= TimeSpan.Zero || ForgetAfter <= TimeSpan.Zero)
            p.Add("ProvideInterval, FindInterval, RetryInterval and ForgetAfter must be positive");
        if (MaxProvidersPerFind < 1 || MaxTrackedPeers < 1) p.Add("MaxProvidersPerFind and MaxTrackedPeers must be at least 1");
        if (MaxPeerLookupsPerFind < 0) p.Add("MaxPeerLookupsPerFind must not be negative");
        return p;
    }
}

/// <summary>
/// EdgeMesh's DHT rendezvous, done continuously: we provide the rendezvous key (CID v1 raw sha2-256 of the
/// string) and look up its providers every <see cref="RendezvousOptions.FindInterval"/>, so peers that join
/// later are found too (EdgeMesh looks once, at start). Each provider other than us is reported once through
/// <see cref="Discovered"/> (again if its addresses change, or after <see cref="RendezvousOptions.ForgetAfter"/>);
/// its addresses go to the host's peer store.
/// </summary>
public sealed class RendezvousService : IPeerDiscovery, IAsyncDisposable
{
    public const string MeterName = "Weft.P2P.Rendezvous";

    private readonly Libp2pHost _host;
    private readonly KadDht _dht;
    private readonly ILogger _log;
    private readonly CancellationTokenSource _stopping = new();
    private readonly SemaphoreSlim _wake = new(0, int.MaxValue);
    private readonly Dictionary<PeerId, (IReadOnlyList<Multiaddr> Addresses, DateTimeOffset Seen)> _known = new();
    private readonly Lock _gate = new();
    private readonly Meter _meter;
    private readonly Counter<long> _rounds;
    private readonly Counter<long> _discovered;
    private Task? _loop;
    private DateTimeOffset _nextProvide = DateTimeOffset.MinValue;
    private int _disposed;

    public RendezvousService(Libp2pHost host, KadDht dht, RendezvousOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(host);
        ArgumentNullException.ThrowIfNull(dht);
        Options = options ?? new RendezvousOptions();
        var problems = Options.Validate();
        if (problems.Count > 0) throw new ArgumentException("invalid rendezvous options: " + string.Join("; ", problems), nameof(options));
        _host = host;
        _dht = dht;
        _log = host.Loggers.CreateLogger("Weft.P2P.Rendezvous");
        Key = ContentKey.ForText(Options.Rendezvous);
        _meter = new Meter(MeterName);
        _rounds = _meter.CreateCounter<long>("weft_rendezvous_rounds", description: "provide and find rounds, by step and result");
        _discovered = _meter.CreateCounter<long>("weft_rendezvous_discovered", description: "peers reported as discovered");
    }

    public RendezvousOptions Options { get; }

    /// <summary>The provider key; <c>Key.ToCidString()</c> is the CID go and js print.</summary>
    public ContentKey Key { get; }

    public event Action<PeerDiscovery>? Discovered;

    /// <summary>Starts providing and finding in the background (waiting for the DHT to have peers).</summary>
    public void Start()
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        if (_loop is not null) return;
        _dht.PeerAdded += OnPeerAdded;
        _host.AddressesChanged += OnAddressesChanged;
        _loop = Task.Run(LoopAsync);
    }

    /// <summary>
    /// Our addresses changed (a relay reservation came, say): the provider record carries them, so provide again now
    /// rather than at the next <see cref="RendezvousOptions.ProvideInterval"/>, or others find only stale addresses.
    /// </summary>
    private void OnAddressesChanged()
    {
        if (!Options.Advertise || _nextProvide == DateTimeOffset.MinValue) return;
        _nextProvide = DateTimeOffset.MinValue;
        _wake.Release();
    }

    /// <summary>Shortest gap between lookups asked for with <see cref="LookNow"/>.</summary>
    public static readonly TimeSpan MinLookNowGap = TimeSpan.FromSeconds(1);

    private long _lastLookNow = long.MinValue / 2;

    /// <summary>
    /// Runs the next round now instead of at the timer (someone is looking for a peer this side does not know yet);
    /// at most once per <see cref="MinLookNowGap"/>. True when a round was asked for.
    /// </summary>
    public bool LookNow()
    {
        var now = _host.Time.GetTimestamp();
        var last = Interlocked.Read(ref _lastLookNow);
        if (_host.Time.GetElapsedTime(last, now) < MinLookNowGap) return false;
        if (Interlocked.CompareExchange(ref _lastLookNow, now, last) != last) return false;
        _wake.Release();
        return true;
    }

    private void OnPeerAdded(PeerId _)
    {
        if (_dht.Table.Count == 1) _wake.Release(); // the first peer: no need to wait for the retry timer
    }

    private async Task LoopAsync()
    {
        var ct = _stopping.Token;
        var rounds = 0;
        while (!ct.IsCancellationRequested)
        {
            var wait = Options.FindInterval;
            try
            {
                if (_dht.Table.Count == 0)
                {
                    wait = Options.RetryInterval;
                }
                else
                {
                    wait = await RunOnceAsync(ct).ConfigureAwait(false);
                    if (rounds < Options.StartupFindGaps.Count && Options.StartupFindGaps[rounds] < wait) wait = Options.StartupFindGaps[rounds];
                    rounds++;
                }
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested) { return; }
            catch (Exception ex)
            {
                Log.RoundFailed(_log, ex.Message);
                wait = Options.RetryInterval;
            }
            try
            {
                await _wake.WaitAsync(wait, ct).ConfigureAwait(false);
            }
            catch (OperationCanceledException) { return; }
        }
    }

    /// <summary>One round: provide when due, then look up the providers. Returns how long to wait before the next.</summary>
    public async Task<TimeSpan> RunOnceAsync(CancellationToken ct = default)
    {
        var wait = Options.FindInterval;
        var now = _host.Time.GetUtcNow();
        if (Options.Advertise && now >= _nextProvide)
        {
            var r = await _dht.ProvideAsync(Key, ct).ConfigureAwait(false);
            var ok = r.Stored > 0;
            _rounds.Add(1, new("step", "provide"), new("result", ok ? "ok" : "none"));
            Log.Provided(_log, Options.Rendezvous, Key.ToCidString(), r.Stored, r.Tried);
            _nextProvide = now + (ok ? Options.ProvideInterval : Options.RetryInterval);
            if (!ok && Options.RetryInterval < wait) wait = Options.RetryInterval;
        }
        var found = await _dht.FindProvidersAsync(Key, Options.MaxProvidersPerFind, ct).ConfigureAwait(false);
        _rounds.Add(1, new("step", "find"), new("result", found.Providers.Count > 1 ? "ok" : "none"));
        var lookups = 0;
        foreach (var p in found.Providers)
        {
            if (p.Id == _host.PeerId) continue;
            var addrs = p.Addresses;
            if (addrs.Count == 0 && lookups++ < Options.MaxPeerLookupsPerFind)
                addrs = (await _dht.FindPeerAsync(p.Id, ct).ConfigureAwait(false))?.Addresses ?? [];
            if (addrs.Count > 0) Report(p.Id, addrs);
        }
        Forget(_host.Time.GetUtcNow());
        return wait;
    }

    private void Report(PeerId peer, IReadOnlyList<Multiaddr> addrs)
    {
        var now = _host.Time.GetUtcNow();
        lock (_gate)
        {
            var had = _known.TryGetValue(peer, out var old);
            _known[peer] = (addrs, now);
            if (had && old.Addresses.SequenceEqual(addrs)) return;
            if (_known.Count > Options.MaxTrackedPeers) _known.Remove(_known.MinBy(kv => kv.Value.Seen).Key);
        }
        _host.Peers.AddAddresses(peer, addrs, now);
        _discovered.Add(1);
        Log.Discovered(_log, peer.ToString(), string.Join(' ', addrs));
        try
        {
            Discovered?.Invoke(new PeerDiscovery(peer, addrs, DiscoverySource.Rendezvous, now));
        }
        catch (Exception ex)
        {
            Log.HandlerFailed(_log, ex.Message);
        }
    }

    private void Forget(DateTimeOffset now)
    {
        lock (_gate)
            foreach (var p in _known.Where(kv => now - kv.Value.Seen > Options.ForgetAfter).Select(kv => kv.Key).ToList()) _known.Remove(p);
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        _dht.PeerAdded -= OnPeerAdded;
        _host.AddressesChanged -= OnAddressesChanged;
        _stopping.Cancel();
        if (_loop is not null)
        {
            try { await _loop.ConfigureAwait(false); } catch (Exception) { /* ends on cancel */ }
        }
        _meter.Dispose();
    }
}
