using System.Diagnostics.Metrics;

namespace Weft.P2P.Host;

/// <summary>Instruments of the libp2p host (meter "Weft.P2P").</summary>
public sealed class P2PMetrics : IDisposable
{
    public const string MeterName = "Weft.P2P";
    private readonly Meter _meter;

    public P2PMetrics(IMeterFactory? factory = null)
    {
        _meter = factory?.Create(MeterName) ?? new Meter(MeterName);
        ConnectionsOpened = _meter.CreateCounter<long>("weft_p2p_connections_opened", description: "connections established, by direction");
        ConnectionsClosed = _meter.CreateCounter<long>("weft_p2p_connections_closed", description: "connections closed");
        HandshakeFailures = _meter.CreateCounter<long>("weft_p2p_handshake_failures", description: "failed upgrades, by reason");
        StreamsOpened = _meter.CreateCounter<long>("weft_p2p_streams_opened", description: "streams negotiated, by protocol and direction");
        DialDuration = _meter.CreateHistogram<double>("weft_p2p_dial_seconds", "s", "time from dial to a usable connection");
    }

    public Counter<long> ConnectionsOpened { get; }
    public Counter<long> ConnectionsClosed { get; }
    public Counter<long> HandshakeFailures { get; }
    public Counter<long> StreamsOpened { get; }
    public Histogram<double> DialDuration { get; }

    public void Dispose() => _meter.Dispose();
}
