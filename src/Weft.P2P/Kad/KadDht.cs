using System.Diagnostics.Metrics;
using System.Net;
using Microsoft.Extensions.Logging;
using Weft.P2P.AutoNat;
using Weft.P2P.Host;
using Weft.P2P.IO;
using Weft.Wire.Identity;
using Weft.Wire.Kad;
using Weft.Wire.Multiformats;

namespace Weft.P2P.Kad;

/// <summary>
/// The libp2p Kademlia DHT (kad-dht/README.md) on one protocol ID (<c>/ipfs/kad/1.0.0</c> or the LAN one):
/// k-bucket routing table, iterative lookups (α requests in flight, ended when the k closest peers seen have
/// answered), FIND_NODE, GET_VALUE/PUT_VALUE with record validation, ADD_PROVIDER/GET_PROVIDERS, client and
/// server modes, bootstrap from configured peers and a periodic refresh. Peers enter the table only once they
/// are connected and show the protocol in identify (server mode) or have answered a request; one IP holds at
/// most <see cref="KadOptions.MaxPeersPerIpPerBucket"/> places per bucket, and a full bucket only takes a
/// newcomer in place of a peer found dead. Every store is bounded (<see cref="KadOptions"/>).
/// </summary>
public sealed partial class KadDht : IAsyncDisposable
{
    public const string MeterName = "Weft.P2P.Kad";

    private readonly Libp2pHost _host;
    private readonly ILogger _log;
    private readonly RecordStore _records;
    private readonly ProviderStore _providers;
    private readonly SemaphoreSlim _evictionChecks;
    private readonly CancellationTokenSource _stopping = new();
    private readonly SemaphoreSlim _wake = new(0, int.MaxValue);
    private readonly Meter _meter;
    private readonly Counter<long> _requestsIn;
    private readonly Counter<long> _requestsOut;
    private readonly Counter<long> _rejected;
    private readonly Histogram<double> _lookupSeconds;
    private readonly Histogram<long> _lookupHops;
    private Task? _maintenance;
    private int _started;
    private int _disposed;

    /// <param name="host">The host to run on; it must not have a handler for <see cref="KadOptions.Protocol"/> yet.</param>
    /// <param name="options">Invalid options throw <see cref="ArgumentException"/> listing every problem.</param>
    public KadDht(Libp2pHost host, KadOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(host);
        Options = options ?? new KadOptions();
        var problems = Options.Validate();
        if (problems.Count > 0) throw new ArgumentException("invalid DHT options: " + string.Join("; ", problems), nameof(options));
        _host = host;
        _log = host.Loggers.CreateLogger("Weft.P2P.Kad");
        Table = new RoutingTable(host.PeerId, Options.BucketSize, Options.MaxPeersPerIpPerBucket);
        _records = new RecordStore(Options.MaxRecords, Options.MaxRecordBytes, Options.RecordTtl);
        _providers = new ProviderStore(Options.MaxProviderKeys, Options.MaxProvidersPerKey, Options.MaxKeysPerProvider, Options.ProviderTtl);
        _evictionChecks = new SemaphoreSlim(Options.MaxConcurrentEvictionChecks);
        Mode = Options.Mode;
        _meter = new Meter(MeterName);
        _requestsIn = _meter.CreateCounter<long>("weft_kad_requests_received", description: "DHT requests answered, by type (and 'malformed')");
        _requestsOut = _meter.CreateCounter<long>("weft_kad_requests_sent", description: "DHT requests sent, by type and result");
        _rejected = _meter.CreateCounter<long>("weft_kad_rejected", description: "peers, records and providers refused, by reason");
        _lookupSeconds = _meter.CreateHistogram<double>("weft_kad_lookup_seconds", "s", "duration of lookups");
        _lookupHops = _meter.CreateHistogram<long>("weft_kad_lookup_hops", description: "requests in sequence that led to a lookup's result");
        _meter.CreateObservableGauge("weft_kad_routing_table_peers", () => Table.Count, description: "peers in the routing table");
        _meter.CreateObservableGauge("weft_kad_records", () => _records.Count, description: "records stored");
        _meter.CreateObservableGauge("weft_kad_provider_records", () => _providers.RecordCount, description: "provider records stored");
    }

    public KadOptions Options { get; }

    public KadMode Mode { get; private set; }

    /// <summary>The routing table (read it; the DHT maintains it).</summary>
    public RoutingTable Table { get; }

    /// <summary>Records stored here.</summary>
    public int RecordCount => _records.Count;

    /// <summary>Provider records stored here.</summary>
    public int ProviderRecordCount => _providers.RecordCount;

    /// <summary>Raised when a peer enters the routing table.</summary>
    public event Action<PeerId>? PeerAdded;

    /// <summary>Raised when a peer is refused a place in the routing table, with the reason (ip_cap, bucket_full, not_lan).</summary>
    public event Action<PeerId, string>? PeerRejected;

    /// <summary>Raised after each bootstrap or refresh round.</summary>
    public event Action<int>? Refreshed;

    /// <summary>Registers the handler (server mode), starts watching connections, bootstraps and refreshes in the background.</summary>
    public void Start()
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        if (Interlocked.Exchange(ref _started, 1) != 0) return;
        if (Mode == KadMode.Server) RegisterHandler();
        _host.ConnectionOpened += OnConnectionOpened;
        _host.Peers.Updated += OnPeerUpdated;
        foreach (var c in _host.Connections) OnConnectionOpened(c);
        Log.Started(_log, Options.Protocol, Mode.ToString().ToLowerInvariant());
        _maintenance = Task.Run(MaintainAsync);
    }

    /// <summary>Switches mode: a server answers requests and says so in identify (pushed to connected peers).</summary>
    public void SetMode(KadMode mode)
    {
        if (mode == Mode) return;
        Mode = mode;
        if (Volatile.Read(ref _started) == 0) return;
        if (mode == KadMode.Server) RegisterHandler();
        else _host.Unhandle(Options.Protocol);
    }

    private void RegisterHandler() => _host.Handle(Options.Protocol, HandleStreamAsync, maxInboundPerConnection: Options.MaxInboundStreamsPerConnection);

    /// <summary>
    /// Runs one bootstrap and refresh round now (the background loop started by <see cref="Start"/> does so every
    /// <see cref="KadOptions.RefreshInterval"/>): connects the bootstrap peers, looks up our own ID, then a random
    /// ID in each bucket in use.
    /// </summary>
    public async Task BootstrapAsync(CancellationToken ct = default)
    {
        await JoinAsync(ct).ConfigureAwait(false);
        if (Table.Count == 0) return;
        await GetClosestPeersAsync(_host.PeerId.Bytes.ToArray(), ct).ConfigureAwait(false);
        var deepest = Math.Min(Table.DeepestBucket, Options.MaxRefreshedBuckets - 1);
        for (var cpl = 0; cpl <= deepest && !ct.IsCancellationRequested; cpl++)
            await GetClosestPeersAsync(RandomKeyInBucket(cpl), ct).ConfigureAwait(false);
        Log.Refreshed(_log, Table.Count);
        Refreshed?.Invoke(Table.Count);
    }

    /// <summary>A made-up peer ID (sha2-256 multihash form) whose keyspace point falls in bucket <paramref name="cpl"/> of our table.</summary>
    private byte[] RandomKeyInBucket(int cpl)
    {
        var key = new byte[34];
        key[0] = 0x12;
        key[1] = 0x20;
        // About 2^(cpl+1) tries; buckets beyond MaxRefreshedBuckets (16) are never asked for.
        while (true)
        {
            System.Security.Cryptography.RandomNumberGenerator.Fill(key.AsSpan(2));
            if (Table.SelfId.CommonPrefixLength(KadId.FromKey(key)) == cpl) return key;
        }
    }

    /// <summary>
    /// Connects the bootstrap peers and puts those that serve the DHT in the table; returns the table's size. Enough
    /// for a one-shot client (no <see cref="Start"/>): its first lookup walks on from there.
    /// </summary>
    public async Task<int> JoinAsync(CancellationToken ct = default)
    {
        await ConnectBootstrapPeersAsync(ct).ConfigureAwait(false);
        return Table.Count;
    }

    private async Task ConnectBootstrapPeersAsync(CancellationToken ct)
    {
        await Task.WhenAll(Options.BootstrapPeers.Where(b => b.PeerId != _host.PeerId).Select(async b =>
        {
            try
            {
                using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
                cts.CancelAfter(Options.RequestTimeout);
                var conn = await _host.DialPeerAsync(b.PeerId!, [b.WithoutPeerId()], cts.Token).ConfigureAwait(false);
                var id = await conn.Identified.WaitAsync(cts.Token).ConfigureAwait(false);
                if (id?.Protocols.Contains(Options.Protocol) == true) TryAddPeer(conn);
                else Log.PeerRejected(_log, conn.RemotePeer.ToString(), $"bootstrap peer does not serve {Options.Protocol}");
            }
            catch (Exception ex) when (ex is not OperationCanceledException || !ct.IsCancellationRequested)
            {
                Log.BootstrapFailed(_log, b.ToString(), ex.Message);
            }
        })).ConfigureAwait(false);
    }

    private async Task MaintainAsync()
    {
        var ct = _stopping.Token;
        while (!ct.IsCancellationRequested)
        {
            try
            {
                await BootstrapAsync(ct).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested) { return; }
            catch (Exception ex)
            {
                Log.MaintenanceFailed(_log, ex.Message);
            }
            var wait = Table.Count == 0 ? Options.BootstrapRetryInterval : Options.RefreshInterval;
            try
            {
                await _wake.WaitAsync(wait, ct).ConfigureAwait(false);
            }
            catch (OperationCanceledException) { return; }
        }
    }

    private void OnConnectionOpened(Connection conn)
    {
        if (conn.IsRelayed) return;
        _ = Task.Run(async () =>
        {
            try
            {
                var id = await conn.Identified.WaitAsync(_host.Options.Timeouts.Identify, _stopping.Token).ConfigureAwait(false);
                if (id?.Protocols.Contains(Options.Protocol) == true) TryAddPeer(conn);
            }
            catch (Exception ex) when (ex is TimeoutException or OperationCanceledException) { }
        });
    }

    /// <summary>A peer that switches to server mode tells us by identify push.</summary>
    private void OnPeerUpdated(PeerInfo info)
    {
        if (!info.Protocols.Contains(Options.Protocol) || Table.Contains(info.Peer)) return;
        if (_host.GetDirectConnection(info.Peer) is { } conn) TryAddPeer(conn);
    }

    private static IPAddress? IpOf(Connection conn) =>
        conn.RemoteAddress.TryGetTcpEndPoint(out var ep) ? AddressPolicy.Normalize(ep.Address) : null;

    private static bool IsLanIp(IPAddress ip) => IPAddress.IsLoopback(ip) || AddressPolicy.IsPrivate(ip);

    /// <summary>Addresses as this DHT hands them out: only LAN ones in a LAN-only DHT.</summary>
    private IReadOnlyList<Multiaddr> Shareable(IEnumerable<Multiaddr> addrs)
    {
        var list = addrs.Select(a => a.WithoutPeerId()).Distinct();
        if (Options.LanOnly) list = list.Where(a => a.TryGetTcpEndPoint(out var ep) && IsLanIp(ep.Address));
        return list.Take(KadMessage.MaxAddressesPerPeer).ToList();
    }

    /// <summary>Offers the peer on <paramref name="conn"/> to the routing table (a full bucket checks its oldest peer first).</summary>
    private void TryAddPeer(Connection conn)
    {
        if (conn.IsRelayed || conn.IsClosed) return;
        var peer = conn.RemotePeer;
        var ip = IpOf(conn);
        if (Options.LanOnly && (ip is null || !IsLanIp(ip)))
        {
            Reject(peer, "not on a LAN address", "not_lan");
            return;
        }
        var now = _host.Time.GetUtcNow();
        switch (Table.TryAdd(peer, ip, now, out var oldest))
        {
            case RoutingAddResult.Added:
                Added(peer);
                break;
            case RoutingAddResult.IpCapped:
                Reject(peer, $"bucket {Table.BucketOf(peer)} already holds {Options.MaxPeersPerIpPerBucket} peers from {ip}", "ip_cap");
                break;
            case RoutingAddResult.BucketFull:
                CheckOldest(oldest!, peer, ip);
                break;
        }
    }

    private void Added(PeerId peer)
    {
        var bucket = Table.BucketOf(peer);
        Log.PeerAdded(_log, peer.ToString(), bucket, Table.Count);
        try
        {
            PeerAdded?.Invoke(peer);
        }
        catch (Exception ex)
        {
            Log.MaintenanceFailed(_log, "PeerAdded handler: " + ex.Message);
        }
    }

    private void Reject(PeerId peer, string why, string reason)
    {
        _rejected.Add(1, new KeyValuePair<string, object?>("reason", reason));
        Log.PeerRejected(_log, peer.ToString(), why);
        try
        {
            PeerRejected?.Invoke(peer, reason);
        }
        catch (Exception ex)
        {
            Log.MaintenanceFailed(_log, "PeerRejected handler: " + ex.Message);
        }
    }

    /// <summary>Kademlia keeps old peers: the newcomer gets the place only if the bucket's oldest peer does not answer.</summary>
    private void CheckOldest(RoutingEntry oldest, PeerId newcomer, IPAddress? ip)
    {
        if (_host.GetConnection(oldest.Peer) is { IsClosed: false })
        {
            Table.Touch(oldest.Peer, _host.Time.GetUtcNow());
            Reject(newcomer, $"bucket {Table.BucketOf(newcomer)} is full of live peers", "bucket_full");
            return;
        }
        if (!_evictionChecks.Wait(0))
        {
            Reject(newcomer, "eviction checks busy", "bucket_full");
            return;
        }
        _ = Task.Run(async () =>
        {
            try
            {
                var ping = new KadMessage { Type = KadMessageType.FindNode, Key = _host.PeerId.Bytes.ToArray() };
                await RequestAsync(oldest.Peer, [], ping, expectAnswer: true, _stopping.Token).ConfigureAwait(false);
                Table.Touch(oldest.Peer, _host.Time.GetUtcNow());
                Reject(newcomer, $"bucket {Table.BucketOf(newcomer)} is full and its oldest peer answered", "bucket_full");
            }
            catch (Exception ex) when (ex is not OperationCanceledException || !_stopping.IsCancellationRequested)
            {
                if (Table.Replace(oldest.Peer, newcomer, ip, _host.Time.GetUtcNow()))
                {
                    Log.PeerRemoved(_log, oldest.Peer.ToString(), "did not answer: " + ex.Message);
                    Added(newcomer);
                }
            }
            finally
            {
                _evictionChecks.Release();
            }
        });
    }

    /// <summary>
    /// One request: dial (or reuse the connection), open a stream, send, read one answer when
    /// <paramref name="expectAnswer"/>, close. An answering peer is offered to the routing table.
    /// </summary>
    private async Task<KadMessage?> RequestAsync(PeerId peer, IReadOnlyList<Multiaddr> addrs, KadMessage request, bool expectAnswer, CancellationToken ct)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct, _stopping.Token);
        cts.CancelAfter(Options.RequestTimeout);
        var type = request.Type.ToString();
        try
        {
            var conn = await _host.DialPeerAsync(peer, addrs, cts.Token).ConfigureAwait(false);
            var stream = await conn.OpenStreamAsync(Options.Protocol, cts.Token).ConfigureAwait(false);
            KadMessage? answer = null;
            try
            {
                request.WriteLengthPrefixedTo(stream.Output);
                await stream.Output.FlushAsync(cts.Token).ConfigureAwait(false);
                if (expectAnswer)
                {
                    answer = (await stream.Input.ReadAsync<KadMessage?>(KadMessage.TryRead, cts.Token).ConfigureAwait(false))!;
                    if (answer.Type != request.Type)
                        throw new Wire.ProtocolViolationException("kad", $"answer of type {answer.Type} to {request.Type}");
                }
            }
            catch
            {
                stream.Reset();
                throw;
            }
            await stream.DisposeAsync().ConfigureAwait(false);
            _requestsOut.Add(1, new("type", type), new("result", "ok"));
            if (expectAnswer)
            {
                if (!Table.Touch(peer, _host.Time.GetUtcNow())) TryAddPeer(conn);
            }
            return answer;
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested && !_stopping.IsCancellationRequested)
        {
            _requestsOut.Add(1, new("type", type), new("result", "timeout"));
            throw new TimeoutException($"{request.Type} to {peer} timed out after {Options.RequestTimeout.TotalSeconds:0.#} s");
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            _requestsOut.Add(1, new("type", type), new("result", "error"));
            throw;
        }
    }

    /// <summary>Unregisters the handler and stops the background work.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        _host.ConnectionOpened -= OnConnectionOpened;
        _host.Peers.Updated -= OnPeerUpdated;
        if (Volatile.Read(ref _started) != 0 && Mode == KadMode.Server) _host.Unhandle(Options.Protocol);
        _stopping.Cancel();
        if (_maintenance is not null)
        {
            try { await _maintenance.ConfigureAwait(false); } catch (Exception) { /* ends on cancel */ }
        }
        _meter.Dispose();
    }
}
