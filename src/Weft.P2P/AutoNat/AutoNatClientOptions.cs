namespace Weft.P2P.AutoNat;

/// <summary>Limits, intervals and thresholds of an <see cref="AutoNatClient"/>. Defaults follow go-libp2p's AutoNAT v1.</summary>
public sealed record AutoNatClientOptions
{
    /// <summary>Servers asked at once in one probe (connected peers speaking AutoNAT over a direct connection).</summary>
    public int MaxServersPerProbe { get; init; } = 3;

    /// <summary>
    /// Highest confidence in the current reachability. Each agreeing answer raises it by one up to this; each contrary
    /// one lowers it, and a contrary answer at confidence 0 flips the state. So a settled Public (confidence at this
    /// maximum) turns Private only after <c>MaxConfidence + 1</c> consecutive E_DIAL_ERROR answers, whereas one OK
    /// makes any state Public (someone did reach us) and, from Unknown, the first answer decides.
    /// </summary>
    public int MaxConfidence { get; init; } = 3;

    /// <summary>One request to one server: opening the stream, the server's dial-back (up to its own timeout) and the answer.</summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Delay before the first probe of the background loop, and before a probe prompted by a newly available server
    /// while reachability is unknown (lets a few connections come up first).
    /// </summary>
    public TimeSpan FirstProbeDelay { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>Between background probes once the state is settled (confidence at <see cref="MaxConfidence"/>).</summary>
    public TimeSpan RefreshInterval { get; init; } = TimeSpan.FromMinutes(15);

    /// <summary>
    /// Between background probes while reachability is unknown, not settled (after a change), every server refused,
    /// or no server or candidate address was available.
    /// </summary>
    public TimeSpan RetryInterval { get; init; } = TimeSpan.FromMinutes(1);

    /// <summary>Candidate addresses sent in one request (at most <see cref="Weft.Wire.AutoNat.AutoNatMessage.MaxAddresses"/>).</summary>
    public int MaxCandidateAddresses { get; init; } = 16;

    /// <summary>Also ask about loopback addresses (tests on one machine). Off by default.</summary>
    public bool AllowLoopbackCandidates { get; init; }
}
