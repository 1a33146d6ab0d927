namespace Weft.Wire.Relay;

/// <summary>Status codes of hop and stop STATUS messages. Values outside this list are carried through as numbers.</summary>
public enum RelayStatus
{
    Ok = 100,
    ReservationRefused = 200,
    ResourceLimitExceeded = 201,
    PermissionDenied = 202,
    ConnectionFailed = 203,
    NoReservation = 204,
    MalformedMessage = 400,
    UnexpectedMessage = 401,
}
