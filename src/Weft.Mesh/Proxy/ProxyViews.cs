namespace Weft.Mesh.Proxy;

/// <summary>One port of a service as <c>/status</c> shows it: where clients connect (<see cref="Url"/>) and whether it listens.</summary>
public sealed record ServicePortView(
    string Name, int Port, string Protocol, int TargetPort, string Url, bool Listening, string? Error,
    long Connections, long Failures, int ActiveConnections, int UdpFlows, long UdpDropped);

/// <summary>One endpoint of a service, with the state of its failure cooldown.</summary>
public sealed record EndpointView(string? Node, string Ip, IReadOnlyList<int> Ports, string Path, bool CoolingDown, int Failures);

/// <summary>
/// One proxied service: <see cref="Address"/> is its service address (all its ports listen there), <see cref="Url"/>
/// the URL of its first TCP port (http:// when the port is named http...), usable on this node.
/// </summary>
public sealed record ServiceView(
    string Name, string Namespace, string? Address, string? Url, string Policy, string SessionAffinity,
    IReadOnlyList<ServicePortView> Ports, IReadOnlyList<EndpointView> Endpoints,
    long BytesFromClients, long BytesToClients, string? Error);

/// <summary>The proxy as a whole: where its catalogue came from and the last rejected update.</summary>
public sealed record ProxyView(
    bool Enabled, string ServiceCidr, string? ServicesFile, string Source, int CatalogVersion, string? LastUpdate,
    string? LastError, int ActiveConnections, int UdpFlows);
