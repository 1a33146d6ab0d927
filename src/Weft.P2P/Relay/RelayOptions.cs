using Weft.Wire.Relay;

namespace Weft.P2P.Relay;

/// <summary>
/// What a relay grants each relayed connection. <see cref="Default"/> follows the spec's suggestion (2 minutes,
/// 128 KiB counted over both directions together, as js does); <see cref="Off"/> sends no Limit and enforces none.
/// </summary>
public sealed record RelayLimitPolicy
{
    /// <summary>2 minutes and 128 KiB per circuit.</summary>
    public static RelayLimitPolicy Default { get; } = new() { Duration = TimeSpan.FromMinutes(2), Data = 128 * 1024 };

    /// <summary>No limit advertised or enforced (a private relay for our own peers).</summary>
    public static RelayLimitPolicy Off { get; } = new();

    /// <summary>Longest life of a circuit; null = unlimited. Sent on the wire in whole seconds (at least 1).</summary>
    public TimeSpan? Duration { get; init; }

    /// <summary>Most bytes relayed on a circuit, both directions together; null = unlimited.</summary>
    public ulong? Data { get; init; }

    public bool IsOff => Duration is null && Data is null;

    /// <summary>The Limit message for this policy (null when off).</summary>
    internal RelayLimit? ToWire() => IsOff
        ? null
        : new RelayLimit
        {
            Duration = Duration is { } d ? (uint)Math.Clamp(Math.Ceiling(d.TotalSeconds), 1, uint.MaxValue) : null,
            Data = Data,
        };
}

/// <summary>Every limit and timeout of a <see cref="RelayServer"/>.</summary>
public sealed record RelayServerOptions
{
    /// <summary>Reservations held at once by all peers. Past it RESERVE is answered RESERVATION_REFUSED.</summary>
    public int MaxReservations { get; init; } = 128;

    /// <summary>Reservations held at once by peers connecting from one IP address.</summary>
    public int MaxReservationsPerIp { get; init; } = 8;

    /// <summary>How long a reservation lasts (peers refresh it before it expires). It also ends when the peer disconnects.</summary>
    public TimeSpan ReservationTtl { get; init; } = TimeSpan.FromHours(1);

    /// <summary>Circuits relayed at once. Past it CONNECT is answered RESOURCE_LIMIT_EXCEEDED.</summary>
    public int MaxCircuits { get; init; } = 64;

    /// <summary>Circuits relayed at once to or from one peer.</summary>
    public int MaxCircuitsPerPeer { get; init; } = 16;

    /// <summary>Limit announced to both ends and enforced on each circuit.</summary>
    public RelayLimitPolicy Limit { get; init; } = RelayLimitPolicy.Default;

    /// <summary>Reading a hop request, and opening the stop stream plus reading its answer.</summary>
    public TimeSpan MessageTimeout { get; init; } = TimeSpan.FromSeconds(10);
}
