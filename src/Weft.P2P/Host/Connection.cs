using Weft.P2P.Multistream;
using Weft.P2P.Noise;
using Weft.P2P.Transport;
using Weft.P2P.Yamux;
using Weft.Wire.Identify;
using Weft.Wire.Identity;
using Weft.Wire.Multiformats;

namespace Weft.P2P.Host;

public enum Direction { Inbound, Outbound }

/// <summary>An upgraded connection to one peer: secured, multiplexed, identified in the background.</summary>
public sealed class Connection : IAsyncDisposable
{
    private readonly RawConnection _raw;
    private readonly SecureConnection _secure;
    private readonly Libp2pHost _host;
    private readonly TaskCompletionSource<IdentifyMessage?> _identified = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _closed;

    internal Connection(Libp2pHost host, RawConnection raw, SecureConnection secure, YamuxSession session, Direction direction, string muxer)
    {
        _host = host;
        _raw = raw;
        _secure = secure;
        Session = session;
        Direction = direction;
        Muxer = muxer;
        Opened = host.Time.GetUtcNow();
        Id = Interlocked.Increment(ref s_nextId);
    }

    private static long s_nextId;

    public long Id { get; }
    public PeerId RemotePeer => _secure.RemotePeer;
    public PublicKey RemotePublicKey => _secure.RemotePublicKey;
    public Multiaddr RemoteAddress => _raw.RemoteAddress;
    public Multiaddr LocalAddress => _raw.LocalAddress;
    public Direction Direction { get; }

    /// <summary>True for a connection carried through a relay (its remote address is a <c>/p2p-circuit</c> one).</summary>
    public bool IsRelayed => RemoteAddress.IsCircuit;

    /// <summary>The limit the relay announced for this relayed connection (null: direct, or none announced).</summary>
    public Relay.RelayCircuitLimit? RelayLimit { get; internal set; }
    public string Security => NoiseSecurity.ProtocolId;
    public string Muxer { get; }

    /// <summary>True when the muxer was agreed inside the Noise handshake, false when by multistream-select after it.</summary>
    public bool MuxerInHandshake => _secure.EarlyMuxer is not null;
    public DateTimeOffset Opened { get; }
    public bool IsClosed => Volatile.Read(ref _closed) != 0 || Session.IsClosed;
    internal YamuxSession Session { get; }

    /// <summary>Inbound handlers running now, by protocol (bounded by ConnectionLimits.MaxInboundStreamsPerProtocol).</summary>
    internal System.Collections.Concurrent.ConcurrentDictionary<string, int> ActiveInbound { get; } = new();

    /// <summary>Completes when the session ends (faulted with the cause if it failed).</summary>
    public Task Completion => Session.Completion;

    /// <summary>The peer's identify answer, or null if identify failed.</summary>
    public Task<IdentifyMessage?> Identified => _identified.Task;

    internal void SetIdentified(IdentifyMessage? msg) => _identified.TrySetResult(msg);

    /// <summary>Round trip of a yamux ping on this connection: answered by the peer's muxer, no stream needed.</summary>
    public ValueTask<TimeSpan> PingAsync(CancellationToken ct) => Session.PingAsync(ct);

    /// <summary>When bytes last arrived on this connection (a <see cref="TimeProvider.GetTimestamp"/> value of the host's clock; 0 before any).</summary>
    public long LastReceivedTimestamp => Session.LastReceived;

    /// <summary>Streams open on this connection now.</summary>
    public int ActiveStreams => Session.ActiveStreams;

    /// <summary>The relay a relayed connection goes through (from its <c>/p2p/RELAY/p2p-circuit</c> address); null when direct.</summary>
    public PeerId? Relay => IsRelayed ? RemoteAddress.Decapsulate(MultiaddrProtocol.P2PCircuit)?.PeerId : null;

    /// <summary>Opens a stream and negotiates one of <paramref name="protocols"/> (first supported wins).</summary>
    public async Task<(YamuxStream Stream, string Protocol)> OpenStreamAsync(IReadOnlyList<string> protocols, CancellationToken ct)
    {
        var stream = await Session.OpenStreamAsync(ct).ConfigureAwait(false);
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        cts.CancelAfter(_host.Options.Timeouts.StreamNegotiation);
        try
        {
            var p = await MultistreamSelect.SelectOutboundAsync(stream, protocols, cts.Token).ConfigureAwait(false);
            stream.Protocol = p;
            _host.Metrics.StreamsOpened.Add(1, new("protocol", p), new("direction", "outbound"));
            return (stream, p);
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            stream.Reset();
            throw new TimeoutException($"negotiating {string.Join("|", protocols)} with {RemotePeer} timed out after {_host.Options.Timeouts.StreamNegotiation.TotalSeconds:0.#} s");
        }
        catch
        {
            stream.Reset();
            throw;
        }
    }

    public async Task<YamuxStream> OpenStreamAsync(string protocol, CancellationToken ct) =>
        (await OpenStreamAsync([protocol], ct).ConfigureAwait(false)).Stream;

    /// <summary>Closes the connection: resets its streams and the socket.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _closed, 1) != 0) return;
        _identified.TrySetResult(null);
        try { await Session.DisposeAsync().ConfigureAwait(false); } catch (Exception) { /* closing anyway */ }
        try { await _secure.DisposeAsync().ConfigureAwait(false); } catch (Exception) { /* closing anyway */ }
        _raw.Abort();
        await _raw.DisposeAsync().ConfigureAwait(false);
    }

    public override string ToString() => $"{Direction} {RemotePeer} {RemoteAddress}";
}
