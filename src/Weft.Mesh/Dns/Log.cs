using Microsoft.Extensions.Logging;

namespace Weft.Mesh.Dns;

internal static partial class Log
{
    [LoggerMessage(2700, LogLevel.Information, "Edge DNS: listening at {EndPoint} (UDP and TCP) for *.svc.{Domain}; other names go to {Upstreams}")]
    public static partial void Listening(ILogger logger, string endPoint, string domain, string upstreams);

    [LoggerMessage(2701, LogLevel.Error, "Edge DNS: cannot listen at {EndPoint}: {Error}; tried again every few seconds")]
    public static partial void ListenFailed(ILogger logger, string endPoint, string error);

    [LoggerMessage(2702, LogLevel.Warning, "Edge DNS: {Limit} queries are being forwarded already (modules.edgeDNS.limits.maxForwarding); answered SERVFAIL")]
    public static partial void ForwardLimit(ILogger logger, int limit);

    [LoggerMessage(2703, LogLevel.Warning, "Edge DNS: {Client} closed at accept: {Limit} TCP connections are open (modules.edgeDNS.limits.maxTcpConnections)")]
    public static partial void TcpLimit(ILogger logger, string client, int limit);

    [LoggerMessage(2704, LogLevel.Debug, "Edge DNS: forwarding {Name} failed: {Error}")]
    public static partial void UpstreamFailed(ILogger logger, string name, string error);
}
