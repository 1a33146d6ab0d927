using Weft.Wire.Relay;

namespace Weft.P2P.Relay;

/// <summary>A relay (or the target peer behind it) answered a hop or stop request with a status other than OK.</summary>
public sealed class RelayRefusedException(RelayStatus status, string? detail = null)
    : Exception($"relay refused: {status}{(detail is null ? "" : " (" + detail + ")")}")
{
    public RelayStatus Status { get; } = status;
}
