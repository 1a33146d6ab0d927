using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;
using Weft.P2P.Host;
using Weft.Wire.Identity;
using Weft.Wire.Multiformats;

namespace Weft.P2P.Relay;

/// <summary>Timing of <see cref="RelayReservations"/>.</summary>
public sealed record RelayReservationOptions
{
    /// <summary>Refresh when this share of a reservation's lifetime is left (the relay's TTL, 1 h on Weft, 2 h on js).</summary>
    public double RefreshAtRemaining { get; init; } = 0.25;

    /// <summary>Shortest wait before refreshing, however short the relay's TTL.</summary>
    public TimeSpan MinRefreshDelay { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>First wait after a failed reserve or a lost relay; doubles per failure up to <see cref="MaxRetryDelay"/>.</summary>
    public TimeSpan MinRetryDelay { get; init; } = TimeSpan.FromMilliseconds(250);

    /// <summary>Longest wait between attempts on a relay that keeps failing.</summary>
    public TimeSpan MaxRetryDelay { get; init; } = TimeSpan.FromSeconds(30);
}

/// <summary>
/// Keeps a reservation on each of a list of relays: reserves, refreshes before expiry, and reserves again
/// (with capped exponential backoff) when the relay refuses, fails, restarts or its connection drops. The
/// circuit addresses of live reservations are published on the host (identify) under the source "relay".
/// </summary>
public sealed class RelayReservations : IAsyncDisposable
{
    /// <summary>The source name under which circuit addresses are added to the host's advertised addresses.</summary>
    public const string AddressSource = "relay";

    /// <summary>Relays one instance keeps reservations on.</summary>
    public const int MaxRelays = 32;

    private readonly Libp2pHost _host;
    private readonly RelayReservationOptions _options;
    private readonly IReadOnlyList<Multiaddr> _relays;
    private readonly ILogger _log;
    private readonly CancellationTokenSource _stop = new();
    private readonly ConcurrentDictionary<PeerId, RelayReservationInfo> _active = new();
    private readonly List<Task> _loops = [];
    private int _started;

    public RelayReservations(Libp2pHost host, IReadOnlyList<Multiaddr> relays, RelayReservationOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(host);
        ArgumentNullException.ThrowIfNull(relays);
        if (relays.Count > MaxRelays) throw new ArgumentException($"at most {MaxRelays} relays", nameof(relays));
        foreach (var r in relays)
            if (r.PeerId is null) throw new ArgumentException($"relay address {r} must end with /p2p/<relay id>", nameof(relays));
        _host = host;
        _relays = relays.Distinct().ToList();
        _options = options ?? new RelayReservationOptions();
        _log = host.Loggers.CreateLogger("Weft.P2P.Relay");
    }

    /// <summary>Live reservations by relay.</summary>
    public IReadOnlyDictionary<PeerId, RelayReservationInfo> Active => _active;

    /// <summary>Circuit addresses of the live reservations, each ending in <c>/p2p-circuit</c> (append <c>/p2p/&lt;our id&gt;</c> to dial us).</summary>
    public IReadOnlyList<Multiaddr> CircuitAddresses =>
        _relays.Select(r => r.PeerId!).Where(_active.ContainsKey).SelectMany(id => _active[id].CircuitAddresses).Distinct().ToList();

    /// <summary>Raised after each granted reservation (the first and every refresh or re-reservation).</summary>
    public event Action<RelayReservationInfo>? Reserved;

    /// <summary>Raised when a reservation is lost (relay gone, refused a refresh, or expired) with the reason.</summary>
    public event Action<PeerId, string>? Lost;

    /// <summary>Starts one loop per relay.</summary>
    public void Start()
    {
        if (Interlocked.Exchange(ref _started, 1) != 0) return;
        foreach (var relay in _relays) _loops.Add(Task.Run(() => KeepAsync(relay, _stop.Token)));
    }

    private async Task KeepAsync(Multiaddr relay, CancellationToken ct)
    {
        var relayId = relay.PeerId!;
        var failures = 0;
        while (!ct.IsCancellationRequested)
        {
            RelayReservationInfo info;
            try
            {
                info = await RelayClient.ReserveAsync(_host, relay, ct).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex)
            {
                Drop(relayId, ex.Message);
                var delay = Backoff(failures++);
                Log.ReserveFailed(_log, relay.ToString(), ex.Message, delay.TotalSeconds);
                if (!await WaitAsync(delay, null, ct).ConfigureAwait(false)) return;
                continue;
            }

            failures = 0;
            _active[relayId] = info;
            Publish();
            try { Reserved?.Invoke(info); } catch (Exception ex) { Log.ReserveFailed(_log, relay.ToString(), "reserved handler: " + ex.Message, 0); }

            var now = _host.Time.GetUtcNow();
            var left = info.Expire - now;
            var refreshIn = left * (1 - _options.RefreshAtRemaining);
            if (refreshIn < _options.MinRefreshDelay) refreshIn = _options.MinRefreshDelay;
            var conn = _host.GetDirectConnection(relayId);
            var stillConnected = await WaitAsync(refreshIn, conn?.Completion, ct).ConfigureAwait(false);
            if (ct.IsCancellationRequested) return;
            if (!stillConnected)
            {
                // The relay connection ended (relay restart, network loss): the reservation went with it.
                Drop(relayId, "the connection to the relay closed");
                if (!await WaitAsync(Backoff(failures++), null, ct).ConfigureAwait(false)) return;
            }
        }
    }

    /// <summary>Waits <paramref name="delay"/>; false if <paramref name="ended"/> completed first or we are stopping.</summary>
    private async Task<bool> WaitAsync(TimeSpan delay, Task? ended, CancellationToken ct)
    {
        var timer = Task.Delay(delay, _host.Time, ct);
        var done = ended is null ? await Task.WhenAny(timer).ConfigureAwait(false) : await Task.WhenAny(timer, ended).ConfigureAwait(false);
        return done == timer && timer.IsCompletedSuccessfully;
    }

    private TimeSpan Backoff(int failures)
    {
        var ms = _options.MinRetryDelay.TotalMilliseconds * Math.Pow(2, Math.Min(failures, 16));
        ms = Math.Min(ms, _options.MaxRetryDelay.TotalMilliseconds);
        return TimeSpan.FromMilliseconds(ms * (0.75 + Random.Shared.NextDouble() * 0.5));
    }

    private void Drop(PeerId relay, string why)
    {
        if (!_active.TryRemove(relay, out _)) return;
        Log.ReservationLost(_log, relay.ToString(), why);
        Publish();
        try { Lost?.Invoke(relay, why); } catch (Exception ex) { Log.ReserveFailed(_log, relay.ToString(), "lost handler: " + ex.Message, 0); }
    }

    private void Publish() => _host.SetAddresses(AddressSource, CircuitAddresses);

    public async ValueTask DisposeAsync()
    {
        if (_stop.IsCancellationRequested) return;
        _stop.Cancel();
        try { await Task.WhenAll(_loops).ConfigureAwait(false); } catch (Exception) { /* loops end on cancel */ }
        _active.Clear();
        _host.SetAddresses(AddressSource, []);
        _stop.Dispose();
    }
}
