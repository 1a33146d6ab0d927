using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.Logging;
using Weft.Mesh.Identity;
using Weft.P2P.Discovery;
using Weft.P2P.Host;
using Weft.P2P.IO;
using Weft.Wire.Identity;
using Weft.Wire.Multiformats;
using Weft.Wire.Tunnel;
using ProtocolViolationException = Weft.Wire.ProtocolViolationException;

namespace Weft.Mesh.Discovery;

/// <summary>How much a claimed node name is trusted.</summary>
public enum NodeNameCheck
{
    /// <summary>Believe it, as EdgeMesh does (the PSK is the only gate).</summary>
    None,

    /// <summary>Accept a name only from the peer whose EdgeMesh-derived ID it is (all peers use legacy identities).</summary>
    LegacyIdentity,
}

/// <summary>Every name, limit and timeout of a <see cref="NodeNameExchange"/>.</summary>
public sealed record NodeNameExchangeOptions
{
    /// <summary>Our node name, sent in every exchange.</summary>
    public required string NodeName { get; init; }

    public NodeNameCheck Check { get; init; } = NodeNameCheck.None;

    /// <summary>Dialling the peer and the whole exchange.</summary>
    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Exchanges we start at once (discoveries beyond wait their turn).</summary>
    public int MaxConcurrentExchanges { get; init; } = 8;

    /// <summary>Discoveries waiting for an exchange; past it new ones are dropped (the peer will be found again).</summary>
    public int MaxQueuedExchanges { get; init; } = 256;

    /// <summary>A peer discovered again within this time after a successful exchange is not asked again.</summary>
    public TimeSpan ReExchangeAfter { get; init; } = TimeSpan.FromMinutes(5);

    /// <summary>Inbound exchanges handled at once on one connection.</summary>
    public int MaxInboundPerConnection { get; init; } = 4;

    /// <summary>Longest node name accepted in bytes (Kubernetes names are at most 253 characters).</summary>
    public int MaxNodeNameLength { get; init; } = 253;

    public IReadOnlyList<string> Validate()
    {
        var p = new List<string>();
        if (string.IsNullOrEmpty(NodeName)) p.Add("the node name must not be empty");
        else if (System.Text.Encoding.UTF8.GetByteCount(NodeName) > MaxNodeNameLength) p.Add($"the node name is longer than {MaxNodeNameLength} bytes");
        if (Timeout <= TimeSpan.Zero) p.Add("Timeout must be positive");
        if (MaxConcurrentExchanges < 1 || MaxQueuedExchanges < 1 || MaxInboundPerConnection < 1) p.Add("MaxConcurrentExchanges, MaxQueuedExchanges and MaxInboundPerConnection must be at least 1");
        return p;
    }
}

/// <summary>
/// EdgeMesh's node-name exchange on <c>/libp2p/tunnel-discovery/1.0.0</c> (reference/edgemesh.md §5.3, §6), byte
/// compatible with Go agents. The dialer sends <c>Discovery{CONNECT, "MDNS"|"DHT", its node name}</c>; the handler
/// answers <c>SUCCESS</c> with the protocol echoed and its own node name; both record name ⇄ peer ID in the
/// <see cref="Directory"/>. <see cref="Attach"/> runs an exchange for every peer a discovery service reports.
/// A request that is not CONNECT gets no answer (as in EdgeMesh); an empty, over-long or (with
/// <see cref="NodeNameCheck.LegacyIdentity"/>) unproven name gets <c>FAILED</c>; a malformed one resets the stream.
/// </summary>
public sealed class NodeNameExchange : IAsyncDisposable
{
    public const string MeterName = "Weft.Mesh.Discovery";

    private readonly Libp2pHost _host;
    private readonly ILogger _log;
    private readonly SemaphoreSlim _slots;
    private readonly ConcurrentDictionary<PeerId, byte> _pending = new();
    private readonly ConcurrentDictionary<PeerId, DateTimeOffset> _done = new();
    private readonly List<IPeerDiscovery> _sources = [];
    private readonly CancellationTokenSource _stopping = new();
    private readonly Meter _meter;
    private readonly Counter<long> _exchanges;
    private int _queued;
    private int _started;
    private int _disposed;

    public NodeNameExchange(Libp2pHost host, NodeNameExchangeOptions options, NodeDirectory? directory = null)
    {
        ArgumentNullException.ThrowIfNull(host);
        ArgumentNullException.ThrowIfNull(options);
        var problems = options.Validate();
        if (problems.Count > 0) throw new ArgumentException("invalid node-name exchange options: " + string.Join("; ", problems), nameof(options));
        _host = host;
        Options = options;
        Directory = directory ?? new NodeDirectory();
        _log = host.Loggers.CreateLogger("Weft.Mesh.Discovery");
        _slots = new SemaphoreSlim(options.MaxConcurrentExchanges);
        _meter = new Meter(MeterName);
        _exchanges = _meter.CreateCounter<long>("weft_node_exchanges", description: "node-name exchanges, by direction and result");
        _meter.CreateObservableGauge("weft_node_directory_size", () => Directory.Count, description: "node names known");
    }

    public NodeNameExchangeOptions Options { get; }

    /// <summary>What the exchanges learned.</summary>
    public NodeDirectory Directory { get; }

    /// <summary>Raised when an exchange we started fails (the peer, why).</summary>
    public event Action<PeerId, string>? Failed;

    /// <summary>Installs the handler.</summary>
    public void Start()
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        if (Interlocked.Exchange(ref _started, 1) != 0) return;
        _host.Handle(DiscoveryMessage.ProtocolId, HandleAsync, maxInboundPerConnection: Options.MaxInboundPerConnection);
    }

    /// <summary>Runs an exchange (in the background, bounded) with every peer <paramref name="source"/> reports.</summary>
    public void Attach(IPeerDiscovery source)
    {
        ArgumentNullException.ThrowIfNull(source);
        lock (_sources) _sources.Add(source);
        source.Discovered += OnDiscovered;
    }

    private void OnDiscovered(PeerDiscovery d)
    {
        if (d.Peer == _host.PeerId || _stopping.IsCancellationRequested) return;
        if (_done.TryGetValue(d.Peer, out var when) && _host.Time.GetUtcNow() - when < Options.ReExchangeAfter) return;
        if (!_pending.TryAdd(d.Peer, 0)) return;
        if (Interlocked.Increment(ref _queued) > Options.MaxQueuedExchanges)
        {
            Interlocked.Decrement(ref _queued);
            _pending.TryRemove(d.Peer, out _);
            _exchanges.Add(1, new("direction", "outbound"), new("result", "dropped"));
            return;
        }
        var how = d.Source == DiscoverySource.Mdns ? DiscoveryMessage.Mdns : DiscoveryMessage.Dht;
        _ = Task.Run(async () =>
        {
            try
            {
                await _slots.WaitAsync(_stopping.Token).ConfigureAwait(false);
                try
                {
                    await ExchangeAsync(d.Peer, d.Addresses, how, _stopping.Token).ConfigureAwait(false);
                }
                finally
                {
                    _slots.Release();
                }
            }
            catch (Exception ex) when (ex is not OperationCanceledException || !_stopping.IsCancellationRequested)
            {
                try { Failed?.Invoke(d.Peer, ex.Message); } catch (Exception) { /* a handler's problem */ }
            }
            catch (OperationCanceledException) { }
            finally
            {
                Interlocked.Decrement(ref _queued);
                _pending.TryRemove(d.Peer, out _);
            }
        });
    }

    /// <summary>
    /// Dials <paramref name="peer"/> (at <paramref name="addresses"/>, or what the peer store knows), sends CONNECT
    /// saying how we found it (<see cref="DiscoveryMessage.Mdns"/> or <see cref="DiscoveryMessage.Dht"/>) and returns
    /// the node name it answers with, which is also recorded. Throws when it does not answer SUCCESS with a name.
    /// </summary>
    public async Task<string> ExchangeAsync(PeerId peer, IReadOnlyList<Multiaddr> addresses, string how, CancellationToken ct = default)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct, _stopping.Token);
        cts.CancelAfter(Options.Timeout);
        try
        {
            var conn = await _host.DialPeerAsync(peer, addresses, cts.Token).ConfigureAwait(false);
            var stream = await conn.OpenStreamAsync(DiscoveryMessage.ProtocolId, cts.Token).ConfigureAwait(false);
            DiscoveryMessage reply;
            try
            {
                await stream.Output.WriteLengthPrefixedAsync(new DiscoveryMessage { Type = DiscoveryType.Connect, Protocol = how, NodeName = Options.NodeName }.ToProtobuf(), cts.Token).ConfigureAwait(false);
                reply = (await stream.Input.ReadAsync<DiscoveryMessage?>(DiscoveryMessage.TryRead, cts.Token).ConfigureAwait(false))!;
            }
            finally
            {
                // EdgeMesh resets the stream once it has the answer; nothing else is sent on it.
                stream.Reset();
            }
            if (reply.Type != DiscoveryType.Success) throw new InvalidOperationException($"{peer} answered {reply.Type}");
            var name = reply.NodeName;
            if (Refuse(name, peer) is { } why) throw new ProtocolViolationException("tunnel-discovery", why);
            _done[peer] = _host.Time.GetUtcNow();
            Directory.Set(name!, peer, how, _host.Time.GetUtcNow());
            _exchanges.Add(1, new("direction", "outbound"), new("result", "ok"));
            Log.Learned(_log, name!, peer.ToString(), how);
            return name!;
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested && !_stopping.IsCancellationRequested)
        {
            _exchanges.Add(1, new("direction", "outbound"), new("result", "timeout"));
            throw new TimeoutException($"node-name exchange with {peer} timed out after {Options.Timeout.TotalSeconds:0.#} s");
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            _exchanges.Add(1, new("direction", "outbound"), new("result", "error"));
            Log.ExchangeFailed(_log, peer.ToString(), ex.Message);
            throw;
        }
    }

    /// <summary>Why a claimed name is not accepted from <paramref name="peer"/>, or null.</summary>
    private string? Refuse(string? name, PeerId peer)
    {
        if (string.IsNullOrEmpty(name)) return "no node name";
        if (System.Text.Encoding.UTF8.GetByteCount(name) > Options.MaxNodeNameLength) return $"node name longer than {Options.MaxNodeNameLength} bytes";
        if (Options.Check == NodeNameCheck.LegacyIdentity && LegacyIdentity.DerivePeerId(name) != peer) return $"{peer} is not the EdgeMesh identity of \"{name}\"";
        return null;
    }

    private async Task HandleAsync(IncomingStream s, CancellationToken ct)
    {
        var peer = s.Connection.RemotePeer;
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        cts.CancelAfter(Options.Timeout);
        DiscoveryMessage request;
        try
        {
            request = (await s.Stream.Input.ReadAsync<DiscoveryMessage?>(DiscoveryMessage.TryRead, cts.Token).ConfigureAwait(false))!;
        }
        catch (ProtocolViolationException ex)
        {
            _exchanges.Add(1, new("direction", "inbound"), new("result", "malformed"));
            Log.BadRequest(_log, peer.ToString(), ex.Message);
            s.Stream.Reset();
            return;
        }
        catch (Exception ex) when (ex is EndOfStreamException or OperationCanceledException && !ct.IsCancellationRequested)
        {
            _exchanges.Add(1, new("direction", "inbound"), new("result", "incomplete"));
            return;
        }
        if (request.Type != DiscoveryType.Connect)
        {
            _exchanges.Add(1, new("direction", "inbound"), new("result", "not_connect"));
            Log.BadRequest(_log, peer.ToString(), $"{request.Type} instead of CONNECT");
            return;
        }
        if (Refuse(request.NodeName, peer) is { } why)
        {
            _exchanges.Add(1, new("direction", "inbound"), new("result", "refused"));
            Log.BadRequest(_log, peer.ToString(), why);
            await s.Stream.Output.WriteLengthPrefixedAsync(new DiscoveryMessage { Type = DiscoveryType.Failed }.ToProtobuf(), cts.Token).ConfigureAwait(false);
            return;
        }
        var answer = request with { Type = DiscoveryType.Success, NodeName = Options.NodeName };
        await s.Stream.Output.WriteLengthPrefixedAsync(answer.ToProtobuf(), cts.Token).ConfigureAwait(false);
        Directory.Set(request.NodeName!, peer, "inbound", _host.Time.GetUtcNow());
        _exchanges.Add(1, new("direction", "inbound"), new("result", "ok"));
        Log.Learned(_log, request.NodeName!, peer.ToString(), "inbound " + request.Protocol);
    }

    public ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return ValueTask.CompletedTask;
        lock (_sources)
        {
            foreach (var s in _sources) s.Discovered -= OnDiscovered;
            _sources.Clear();
        }
        if (Volatile.Read(ref _started) != 0) _host.Unhandle(DiscoveryMessage.ProtocolId);
        _stopping.Cancel();
        _meter.Dispose();
        return ValueTask.CompletedTask;
    }
}
