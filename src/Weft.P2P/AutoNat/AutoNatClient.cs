using System.Diagnostics.Metrics;
using System.Net;
using Microsoft.Extensions.Logging;
using Weft.P2P.Host;
using Weft.P2P.IO;
using Weft.Wire.AutoNat;
using Weft.Wire.Identity;
using Weft.Wire.Multiformats;
using ProtocolViolationException = Weft.Wire.ProtocolViolationException;

namespace Weft.P2P.AutoNat;

/// <summary>Whether peers outside can dial us, as AutoNAT found out.</summary>
public enum Reachability
{
    /// <summary>Not known yet (no answer, or answers that said nothing).</summary>
    Unknown,

    /// <summary>A server dialled us back on a candidate address.</summary>
    Public,

    /// <summary>Servers could not dial us back: behind a NAT or firewall.</summary>
    Private,
}

/// <summary>
/// AutoNAT v1 client and the host's reachability. <see cref="ProbeAsync"/> asks up to
/// <see cref="AutoNatClientOptions.MaxServersPerProbe"/> connected peers that announce
/// <see cref="AutoNatMessage.ProtocolId"/> in identify (direct connections only) to dial us back on our candidate
/// addresses (TCP listen addresses, announced addresses and the addresses peers observe us at; loopback ones only
/// with <see cref="AutoNatClientOptions.AllowLoopbackCandidates"/>). Each answer is an observation: OK = Public,
/// E_DIAL_ERROR = Private, E_DIAL_REFUSED = none, anything else (bad request, internal error, no answer) = Unknown;
/// observations move the state with go-libp2p's confidence rule (see <see cref="AutoNatClientOptions.MaxConfidence"/>).
/// While Public, the candidate addresses servers confirmed are published with
/// <see cref="Libp2pHost.SetAddresses"/> under <see cref="AddressSource"/>; otherwise that source is cleared.
/// <see cref="Start"/> runs the background loop: a probe soon after a server becomes available while Unknown, then
/// every <see cref="AutoNatClientOptions.RetryInterval"/> until settled, then every
/// <see cref="AutoNatClientOptions.RefreshInterval"/>. One instance per host; dispose to stop.
/// </summary>
public sealed class AutoNatClient : IAsyncDisposable
{
    public const string MeterName = AutoNatServer.MeterName;

    /// <summary>The <see cref="Libp2pHost.SetAddresses"/> source of confirmed public addresses.</summary>
    public const string AddressSource = "autonat";

    private readonly Libp2pHost _host;
    private readonly ILogger _log;
    private readonly Meter _meter;
    private readonly Counter<long> _answers;
    private readonly SemaphoreSlim _probing = new(1, 1);
    private readonly CancellationTokenSource _stopping = new();
    private readonly object _gate = new();
    private TaskCompletionSource _wake = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private Reachability _reachability;
    private int _confidence;
    private IReadOnlyList<Multiaddr> _public = [];
    private Task? _loop;
    private int _disposed;

    private enum Observation { None, Public, Private, Unknown }

    private readonly record struct Outcome(Observation Observation, Multiaddr? Confirmed);

    public AutoNatClient(Libp2pHost host, AutoNatClientOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(host);
        options ??= new AutoNatClientOptions();
        ArgumentOutOfRangeException.ThrowIfLessThan(options.MaxServersPerProbe, 1, nameof(options));
        ArgumentOutOfRangeException.ThrowIfNegative(options.MaxConfidence, nameof(options));
        ArgumentOutOfRangeException.ThrowIfLessThan(options.MaxCandidateAddresses, 1, nameof(options));
        ArgumentOutOfRangeException.ThrowIfGreaterThan(options.MaxCandidateAddresses, AutoNatMessage.MaxAddresses, nameof(options));
        _host = host;
        Options = options;
        _log = host.Loggers.CreateLogger("Weft.P2P.AutoNat");
        _meter = new Meter(MeterName);
        _answers = _meter.CreateCounter<long>("weft_autonat_answers", description: "AutoNAT answers received by this host's client, by result");
        _meter.CreateObservableGauge("weft_autonat_reachability", () => (int)Reachability, description: "0 unknown, 1 public, 2 private");
        _meter.CreateObservableGauge("weft_autonat_confidence", () => Confidence, description: "confidence in the current reachability");
    }

    public AutoNatClientOptions Options { get; }

    /// <summary>The current reachability.</summary>
    public Reachability Reachability { get { lock (_gate) return _reachability; } }

    /// <summary>Confidence in <see cref="Reachability"/>, 0 to <see cref="AutoNatClientOptions.MaxConfidence"/>.</summary>
    public int Confidence { get { lock (_gate) return _confidence; } }

    /// <summary>Candidate addresses servers confirmed in the last probe that had any (empty unless Public).</summary>
    public IReadOnlyList<Multiaddr> PublicAddresses { get { lock (_gate) return _public; } }

    /// <summary>Raised (outside any lock) after a probe that changed <see cref="Reachability"/>, with the new value.</summary>
    public event Action<Reachability>? ReachabilityChanged;

    /// <summary>Raised after every probe that asked at least one server, with the reachability after it.</summary>
    public event Action<Reachability>? ProbeCompleted;

    /// <summary>Starts the background probe loop (once).</summary>
    public void Start()
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        lock (_gate)
        {
            if (_loop is not null) return;
            _host.Peers.Updated += OnPeerUpdated;
            _loop = Task.Run(() => RunAsync(_stopping.Token));
        }
    }

    /// <summary>
    /// What we ask servers to dial: TCP listen addresses, announced addresses and observed addresses, without
    /// unspecified, multicast, circuit and (unless allowed) loopback addresses; at most
    /// <see cref="AutoNatClientOptions.MaxCandidateAddresses"/>.
    /// </summary>
    public IReadOnlyList<Multiaddr> GetCandidateAddresses()
    {
        var result = new List<Multiaddr>();
        void Add(IReadOnlyList<Multiaddr> list)
        {
            foreach (var a in list)
            {
                if (result.Count >= Options.MaxCandidateAddresses) return;
                if (!a.TryGetTcpEndPoint(out var ep) || ep.Port == 0 || AddressPolicy.IsUnusable(ep.Address)) continue;
                if (IPAddress.IsLoopback(AddressPolicy.Normalize(ep.Address)) && !Options.AllowLoopbackCandidates) continue;
                var bare = a.WithoutPeerId();
                if (!result.Contains(bare)) result.Add(bare);
            }
        }
        Add(_host.ListenAddresses);
        Add(_host.Options.AnnounceAddresses);
        Add(_host.ObservedAddresses);
        return result;
    }

    /// <summary>Direct connections to peers whose identify lists AutoNAT, one per peer, shuffled, at most <see cref="AutoNatClientOptions.MaxServersPerProbe"/>.</summary>
    private List<Connection> PickServers()
    {
        var servers = new List<Connection>();
        var seen = new HashSet<PeerId>();
        foreach (var c in _host.Connections)
        {
            if (c.IsRelayed || !seen.Add(c.RemotePeer)) continue;
            if (_host.Peers.Get(c.RemotePeer) is not { } info || !Speaks(info)) continue;
            // The host's preferred direct connection: the oldest open one, not a server's short-lived dial-back.
            if (_host.GetDirectConnection(c.RemotePeer) is { } direct) servers.Add(direct);
        }
        var shuffled = servers.ToArray();
        Random.Shared.Shuffle(shuffled);
        return shuffled.Length <= Options.MaxServersPerProbe ? [.. shuffled] : [.. shuffled.AsSpan(0, Options.MaxServersPerProbe)];
    }

    private static bool Speaks(PeerInfo info)
    {
        foreach (var p in info.Protocols)
            if (p == AutoNatMessage.ProtocolId) return true;
        return false;
    }

    /// <summary>
    /// Asks up to <see cref="AutoNatClientOptions.MaxServersPerProbe"/> servers at once, records their answers and
    /// returns the reachability after them. With no server or no candidate address nothing is asked and the state
    /// stays as it is.
    /// </summary>
    public async Task<Reachability> ProbeAsync(CancellationToken ct = default) => (await ProbeCoreAsync(ct).ConfigureAwait(false)).State;

    private async Task<(Reachability State, bool Asked, bool AllRefused)> ProbeCoreAsync(CancellationToken ct)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        await _probing.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            var candidates = GetCandidateAddresses();
            if (candidates.Count == 0)
            {
                Log.ProbeSkipped(_log, "no candidate address");
                return (Reachability, false, false);
            }
            var servers = PickServers();
            if (servers.Count == 0)
            {
                Log.ProbeSkipped(_log, "no connected AutoNAT server");
                return (Reachability, false, false);
            }

            var request = AutoNatMessage.DialRequest(_host.PeerId, candidates);
            var outcomes = new List<Outcome>(servers.Count);
            var asks = new List<Task<Outcome>>(servers.Count);
            foreach (var s in servers) asks.Add(AskAsync(s, request, candidates, ct));
            await foreach (var done in Task.WhenEach(asks).WithCancellation(ct).ConfigureAwait(false))
                outcomes.Add(await done.ConfigureAwait(false));

            Reachability before, after;
            int confidence;
            IReadOnlyList<Multiaddr> published;
            var allRefused = true;
            lock (_gate)
            {
                before = _reachability;
                var confirmed = new List<Multiaddr>();
                foreach (var o in outcomes)
                {
                    if (o.Observation != Observation.None) allRefused = false;
                    Record(o.Observation);
                    if (o.Confirmed is { } c && !confirmed.Contains(c)) confirmed.Add(c);
                }
                if (_reachability != Reachability.Public) _public = [];
                else if (confirmed.Count > 0) _public = confirmed;
                after = _reachability;
                confidence = _confidence;
                published = _public;
            }
            if (Volatile.Read(ref _disposed) == 0) _host.SetAddresses(AddressSource, published);
            if (before != after)
            {
                Log.ReachabilityChanged(_log, before.ToString(), after.ToString(), confidence, string.Join(", ", published));
                Raise(ReachabilityChanged, after);
            }
            Raise(ProbeCompleted, after);
            return (after, true, allRefused);
        }
        finally
        {
            _probing.Release();
        }
    }

    private void Raise(Action<Reachability>? handler, Reachability value)
    {
        try
        {
            handler?.Invoke(value);
        }
        catch (Exception ex)
        {
            Log.LoopFailed(_log, "event handler: " + ex.Message);
        }
    }

    /// <summary>go-libp2p's rule: an OK flips to Public at once; contrary answers first wear the confidence down.</summary>
    private void Record(Observation o)
    {
        switch (o)
        {
            case Observation.Public:
                if (_reachability != Reachability.Public)
                {
                    _reachability = Reachability.Public;
                    _confidence = 0;
                }
                else if (_confidence < Options.MaxConfidence)
                {
                    _confidence++;
                }
                break;
            case Observation.Private:
                if (_reachability != Reachability.Private)
                {
                    if (_confidence > 0)
                    {
                        _confidence--;
                    }
                    else
                    {
                        _reachability = Reachability.Private;
                        _confidence = 0;
                    }
                }
                else if (_confidence < Options.MaxConfidence)
                {
                    _confidence++;
                }
                break;
            case Observation.Unknown:
                if (_confidence > 0) _confidence--;
                else _reachability = Reachability.Unknown;
                break;
        }
    }

    private async Task<Outcome> AskAsync(Connection server, AutoNatMessage request, IReadOnlyList<Multiaddr> candidates, CancellationToken ct)
    {
        var name = server.RemotePeer.ToString();
        AutoNatDialResponse response;
        try
        {
            using var timeout = new CancellationTokenSource(Options.RequestTimeout, _host.Time);
            using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct, timeout.Token);
            response = await RequestAsync(server, request, cts.Token).ConfigureAwait(false);
        }
        catch (Exception ex) when (!ct.IsCancellationRequested)
        {
            Log.AskFailed(_log, name, ex is OperationCanceledException ? "timed out" : ex.Message);
            _answers.Add(1, new KeyValuePair<string, object?>("result", "failed"));
            return new Outcome(Observation.Unknown, null);
        }
        _answers.Add(1, new KeyValuePair<string, object?>("result", AutoNatServer.ResultName(response.Status)));
        Log.ServerAnswered(_log, name, AutoNatServer.ResultName(response.Status), response.StatusText ?? "", response.Addr?.ToString() ?? "-");
        switch (response.Status)
        {
            case AutoNatResponseStatus.Ok:
                var addr = response.Addr?.WithoutPeerId();
                return new Outcome(Observation.Public, addr is not null && Contains(candidates, addr) ? addr : null);
            case AutoNatResponseStatus.DialError:
                return new Outcome(Observation.Private, null);
            case AutoNatResponseStatus.DialRefused:
                return new Outcome(Observation.None, null);
            default:
                return new Outcome(Observation.Unknown, null);
        }
    }

    private static bool Contains(IReadOnlyList<Multiaddr> list, Multiaddr a)
    {
        foreach (var x in list)
            if (x == a) return true;
        return false;
    }

    /// <summary>
    /// Sends <paramref name="request"/> on a new AutoNAT stream of <paramref name="conn"/> and reads the answer.
    /// Throws <see cref="ProtocolViolationException"/> when the answer is malformed or not a DIAL_RESPONSE, and
    /// whatever opening or reading the stream throws; bound the time with <paramref name="ct"/>.
    /// </summary>
    public static async Task<AutoNatDialResponse> RequestAsync(Connection conn, AutoNatMessage request, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(conn);
        ArgumentNullException.ThrowIfNull(request);
        var stream = await conn.OpenStreamAsync(AutoNatMessage.ProtocolId, ct).ConfigureAwait(false);
        AutoNatMessage answer;
        try
        {
            request.WriteLengthPrefixedTo(stream.Output);
            await stream.Output.FlushAsync(ct).ConfigureAwait(false);
            await stream.Output.CompleteAsync().ConfigureAwait(false);
            answer = (await stream.Input.ReadAsync<AutoNatMessage?>(AutoNatMessage.TryRead, ct).ConfigureAwait(false))!;
        }
        catch
        {
            stream.Reset();
            throw;
        }
        await stream.DisposeAsync().ConfigureAwait(false);
        if (answer.Type != AutoNatMessageType.DialResponse || answer.DialResponse is null)
            throw new ProtocolViolationException(AutoNatMessage.Codec, $"expected a DIAL_RESPONSE, got {answer.Type}");
        return answer.DialResponse;
    }

    private void OnPeerUpdated(PeerInfo info)
    {
        if (Reachability != Reachability.Unknown || !Speaks(info) || _host.GetDirectConnection(info.Peer) is null) return;
        Volatile.Read(ref _wake).TrySetResult();
    }

    private async Task RunAsync(CancellationToken ct)
    {
        var time = _host.Time;
        var next = time.GetTimestamp() + ToTicks(time, Options.FirstProbeDelay);
        var lastAsked = false;
        while (!ct.IsCancellationRequested)
        {
            var now = time.GetTimestamp();
            var wait = next > now ? time.GetElapsedTime(now, next) : TimeSpan.Zero;
            bool woken;
            try
            {
                woken = await WaitAsync(wait, ct).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            if (woken)
            {
                // A server became available while we do not know our reachability and the last attempt found
                // nobody to ask: probe soon. (Otherwise the schedule stands, so identify traffic cannot flood servers.)
                if (!lastAsked && Reachability == Reachability.Unknown)
                {
                    var soon = time.GetTimestamp() + ToTicks(time, Options.FirstProbeDelay);
                    if (soon < next) next = soon;
                }
                continue;
            }

            var interval = Options.RetryInterval;
            try
            {
                var (state, asked, allRefused) = await ProbeCoreAsync(ct).ConfigureAwait(false);
                lastAsked = asked;
                if (asked && !allRefused && state != Reachability.Unknown && Confidence >= Options.MaxConfidence)
                    interval = Options.RefreshInterval;
                Log.ProbeDone(_log, state.ToString(), Confidence, interval.TotalSeconds);
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex)
            {
                lastAsked = false;
                Log.LoopFailed(_log, ex.Message);
            }
            next = time.GetTimestamp() + ToTicks(time, interval);
        }
    }

    private static long ToTicks(TimeProvider time, TimeSpan span) => (long)(span.TotalSeconds * time.TimestampFrequency);

    /// <summary>Waits <paramref name="delay"/> on the host's clock; true when woken early by a newly available server.</summary>
    private async Task<bool> WaitAsync(TimeSpan delay, CancellationToken ct)
    {
        var wake = Volatile.Read(ref _wake);
        if (!wake.Task.IsCompleted && delay > TimeSpan.Zero)
        {
            using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
            var sleep = Task.Delay(delay, _host.Time, cts.Token);
            await Task.WhenAny(sleep, wake.Task).ConfigureAwait(false);
            cts.Cancel();
        }
        ct.ThrowIfCancellationRequested();
        if (!wake.Task.IsCompleted) return false;
        Interlocked.CompareExchange(ref _wake, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously), wake);
        return true;
    }

    /// <summary>Stops the loop, waits for it, and withdraws the published addresses.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        _host.Peers.Updated -= OnPeerUpdated;
        _stopping.Cancel();
        Task? loop;
        lock (_gate) loop = _loop;
        if (loop is not null)
        {
            try { await loop.ConfigureAwait(false); } catch (OperationCanceledException) { /* stopping */ }
        }
        lock (_gate) _public = [];
        _host.SetAddresses(AddressSource, []);
        _meter.Dispose();
        _stopping.Dispose();
    }
}
