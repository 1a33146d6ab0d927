using System.Diagnostics.Metrics;

namespace Weft.Mesh.Proxy;

/// <summary>The proxy's instruments, on meter <see cref="MeterName"/> (exported with the agent's other metrics).</summary>
internal sealed class ProxyMetrics : IDisposable
{
    public const string MeterName = "Weft.Mesh.Proxy";

    private readonly Meter _meter;

    public ProxyMetrics(Func<IEnumerable<Measurement<long>>> activeConnections, Func<IEnumerable<Measurement<long>>> udpFlows, object? scope = null)
    {
        _meter = new Meter(MeterName, null, null, scope);
        Connections = _meter.CreateCounter<long>("weft_proxy_connections", description: "TCP connections accepted by service listeners, by service and result (ok, failed: no endpoint reachable, limit: over a connection limit)");
        Bytes = _meter.CreateCounter<long>("weft_proxy_bytes", "By", "bytes proxied, by service, protocol and direction (rx: from clients, tx: to clients)");
        EndpointFailures = _meter.CreateCounter<long>("weft_proxy_endpoint_failures", description: "attempts to reach an endpoint that failed (the next endpoint is tried), by service and path (local, tunnel)");
        ConnectSeconds = _meter.CreateHistogram<double>("weft_proxy_connect_seconds", "s", "time to reach the endpoint of a new connection or flow, by path (local, direct, relay)");
        UdpDatagrams = _meter.CreateCounter<long>("weft_proxy_udp_datagrams", description: "UDP datagrams proxied, by service and direction (rx: from clients, tx: to clients)");
        UdpDropped = _meter.CreateCounter<long>("weft_proxy_udp_dropped", description: "UDP datagrams dropped by the proxy, by service and reason (queue: flow queue full, flows: flow limit, unreachable: no endpoint)");
        UdpFlowsOpened = _meter.CreateCounter<long>("weft_proxy_udp_flows_opened", description: "UDP flows opened, by service");
        _meter.CreateObservableGauge("weft_proxy_active_connections", activeConnections, description: "TCP connections open now, by service");
        _meter.CreateObservableGauge("weft_proxy_udp_flows", udpFlows, description: "UDP flows tracked now, by service");
    }

    public Counter<long> Connections { get; }
    public Counter<long> Bytes { get; }
    public Counter<long> EndpointFailures { get; }
    public Histogram<double> ConnectSeconds { get; }
    public Counter<long> UdpDatagrams { get; }
    public Counter<long> UdpDropped { get; }
    public Counter<long> UdpFlowsOpened { get; }

    public void Dispose() => _meter.Dispose();
}
