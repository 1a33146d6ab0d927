using Weft.P2P.Echo;
using Weft.P2P.Host;
using Weft.P2P.Relay;
using Weft.P2P.Yamux;
using Weft.Wire.Identity;
using Weft.Wire.Multiformats;

namespace Weft.Cli.Tests.Load;

/// <summary>A relayed connection held open by the load generator, with an echo stream through it.</summary>
public sealed record LiveCircuit(int Source, int Target, Connection Connection, YamuxStream Echo);

/// <summary>
/// The load generator's side of a relay load test: many dial-only hosts in this process that reserve on one
/// relay, dial each other through it and echo through the circuits. Every host is also a circuit target (stop
/// handler + echo).
/// </summary>
public sealed class RelayLoadPeers : IAsyncDisposable
{
    /// <summary>Echo payload per round and circuit.</summary>
    public const int PayloadBytes = 1024;

    private readonly Multiaddr _relay;
    private readonly List<Libp2pHost> _hosts = [];
    private readonly List<LiveCircuit?> _circuits = [];

    public RelayLoadPeers(Multiaddr relayWithPeerId)
    {
        _relay = relayWithPeerId;
        RelayId = relayWithPeerId.PeerId ?? throw new ArgumentException("the relay address needs /p2p/<id>", nameof(relayWithPeerId));
    }

    public PeerId RelayId { get; }
    public IReadOnlyList<Libp2pHost> Hosts => _hosts;

    /// <summary>Circuits opened by <see cref="OpenCircuitsAsync"/> (null where opening failed).</summary>
    public IReadOnlyList<LiveCircuit?> Circuits => _circuits;

    /// <summary>
    /// A load host costs what a real peer costs, minus the yamux keep-alive: thousands of 30 s ping timers in one
    /// test process would only add noise (the relay keeps its own keep-alive on).
    /// </summary>
    private static HostOptions NewOptions() => new()
    {
        Key = Ed25519PrivateKey.Generate(),
        Yamux = new YamuxOptions { KeepAliveInterval = TimeSpan.Zero },
    };

    /// <summary>Adds <paramref name="count"/> started, dial-only hosts that accept circuits and echo; returns the index of the first.</summary>
    public async Task<int> AddHostsAsync(int count)
    {
        var first = _hosts.Count;
        for (var i = 0; i < count; i++)
        {
            var h = new Libp2pHost(NewOptions());
            RelayClient.Register(h);
            EchoService.Register(h);
            await h.StartAsync();
            _hosts.Add(h);
        }
        return first;
    }

    /// <summary>Hosts first..first+count-1 each reserve a slot on the relay.</summary>
    public Task<BatchResult> ReserveAsync(int first, int count, int parallel, TimeSpan deadline) =>
        Bounded.ForEachAsync(count, parallel, deadline, async (i, ct) =>
        {
            var host = _hosts[first + i];
            var r = await RelayClient.ReserveAsync(host, _relay, ct);
            if (r.Relay != RelayId) throw new InvalidOperationException($"reservation from {r.Relay}, expected {RelayId}");
            if (r.Expire <= DateTimeOffset.UtcNow) throw new InvalidOperationException($"reservation already expired ({r.Expire:O})");
        });

    /// <summary>
    /// Opens one circuit per pair (source host → target host, through the relay), checks it reached the target,
    /// opens an echo stream through it and echoes one payload. Circuits stay open (see <see cref="Circuits"/>).
    /// </summary>
    public async Task<BatchResult> OpenCircuitsAsync(IReadOnlyList<(int Source, int Target)> pairs, int parallel, TimeSpan deadline)
    {
        var opened = new LiveCircuit?[pairs.Count];
        var result = await Bounded.ForEachAsync(pairs.Count, parallel, deadline, async (i, ct) =>
        {
            var (s, t) = pairs[i];
            var target = _hosts[t].PeerId;
            var conn = await RelayClient.DialViaRelayAsync(_hosts[s], Multiaddr.Parse($"{_relay}/p2p-circuit/p2p/{target}"), ct);
            YamuxStream? echo = null;
            try
            {
                if (conn.RemotePeer != target) throw new InvalidOperationException($"circuit reached {conn.RemotePeer}, expected {target}");
                if (!conn.IsRelayed) throw new InvalidOperationException($"not a relayed connection: {conn.RemoteAddress}");
                echo = await conn.OpenStreamAsync(EchoService.ProtocolId, ct);
                await EchoAsync(echo, Payload(i, 0), ct);
                opened[i] = new LiveCircuit(s, t, conn, echo);
            }
            catch
            {
                echo?.Reset();
                await conn.DisposeAsync();
                throw;
            }
        });
        _circuits.AddRange(opened);
        return result;
    }

    /// <summary>Echoes one more payload (round <paramref name="round"/>) through every open circuit.</summary>
    public Task<BatchResult> EchoAllAsync(int round, int parallel, TimeSpan deadline) =>
        Bounded.ForEachAsync(_circuits.Count, parallel, deadline, async (i, ct) =>
        {
            var c = _circuits[i] ?? throw new InvalidOperationException("this circuit never opened");
            if (c.Connection.IsClosed) throw new InvalidOperationException($"circuit {c.Source}→{c.Target} has closed");
            await EchoAsync(c.Echo, Payload(i, round), ct);
        });

    /// <summary>A payload distinct per circuit and round, so a crossed or stale echo is caught.</summary>
    public static byte[] Payload(int circuit, int round)
    {
        var p = new byte[PayloadBytes];
        for (var j = 0; j < p.Length; j++) p[j] = (byte)((j * 31) ^ (circuit * 7) ^ (round * 101) ^ (circuit >> 8));
        return p;
    }

    /// <summary>Writes <paramref name="payload"/> and reads back exactly as many bytes, checking each one.</summary>
    public static async Task EchoAsync(YamuxStream s, byte[] payload, CancellationToken ct)
    {
        var f = await s.Output.WriteAsync(payload, ct);
        if (f.IsCompleted) throw new IOException("the echo stream stopped reading");
        var got = 0;
        while (got < payload.Length)
        {
            var r = await s.Input.ReadAsync(ct);
            var buffer = r.Buffer;
            if (got + buffer.Length > payload.Length)
                throw new InvalidDataException($"echo returned {got + buffer.Length} bytes for {payload.Length} sent");
            foreach (var seg in buffer)
            {
                if (!seg.Span.SequenceEqual(payload.AsSpan(got, seg.Length)))
                    throw new InvalidDataException($"echo bytes differ within [{got}, {got + seg.Length})");
                got += seg.Length;
            }
            s.Input.AdvanceTo(buffer.End);
            if (got < payload.Length && r.IsCompleted)
                throw new EndOfStreamException($"echo ended after {got} of {payload.Length} bytes");
        }
    }

    /// <summary>Closes every host (and with them every connection and circuit) at most <paramref name="parallel"/> at once.</summary>
    public async Task<BatchResult> CloseAllAsync(int parallel, TimeSpan deadline)
    {
        var hosts = _hosts.ToList();
        _hosts.Clear();
        _circuits.Clear();
        return await Bounded.ForEachAsync(hosts.Count, parallel, deadline, async (i, _) => await hosts[i].DisposeAsync());
    }

    public async ValueTask DisposeAsync() => await CloseAllAsync(64, TimeSpan.FromSeconds(60));
}
