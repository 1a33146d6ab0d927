using Microsoft.Extensions.Logging;

namespace Weft.Mesh.Proxy;

internal static partial class Log
{
    [LoggerMessage(2600, LogLevel.Information, "Proxy: catalogue from {Source} applied: {Services} service(s), {Listening} of {Ports} port(s) listening")]
    public static partial void CatalogApplied(ILogger logger, string source, int services, int listening, int ports);

    [LoggerMessage(2601, LogLevel.Debug, "Proxy: {Service} port {Port} listening at {Url}")]
    public static partial void Listening(ILogger logger, string service, string port, string url);

    [LoggerMessage(2602, LogLevel.Error, "Proxy: {Service} cannot listen at {Url}: {Error} (tried again every few seconds)")]
    public static partial void ListenFailed(ILogger logger, string service, string url, string error);

    [LoggerMessage(2603, LogLevel.Information, "Proxy: {Service} no longer listening at {Url}; open connections stay")]
    public static partial void StoppedListening(ILogger logger, string service, string url);

    [LoggerMessage(2604, LogLevel.Information, "Proxy: {Service}: endpoint {Endpoint} failed (attempt {Attempt}): {Error}; passed over for a while")]
    public static partial void EndpointFailed(ILogger logger, string service, string endpoint, int attempt, string error);

    [LoggerMessage(2605, LogLevel.Warning, "Proxy: {Service}: no endpoint reachable for {Client} after {Attempts} attempt(s); connection reset")]
    public static partial void NoEndpoint(ILogger logger, string service, string client, int attempts);

    [LoggerMessage(2606, LogLevel.Debug, "Proxy: {Service}: connection from {Client} refused: {Limit}")]
    public static partial void OverLimit(ILogger logger, string service, string client, string limit);

    [LoggerMessage(2607, LogLevel.Error, "Proxy: services file {Path} rejected; the running catalogue stays:\n{Problems}")]
    public static partial void ServicesRejected(ILogger logger, string path, string problems);

    [LoggerMessage(2608, LogLevel.Warning, "Proxy: services file {Path} changed but the catalogue now comes from {Source}; the change is not applied")]
    public static partial void ServicesFileIgnored(ILogger logger, string path, string source);

    [LoggerMessage(2609, LogLevel.Error, "Proxy: {Service} has no address: {Error}")]
    public static partial void NotPlaced(ILogger logger, string service, string error);

    [LoggerMessage(2610, LogLevel.Debug, "Proxy: {Service}: connection from {Client} to {Endpoint} over {Path} broke: {Error}")]
    public static partial void ConnectionBroken(ILogger logger, string service, string client, string endpoint, string path, string error);

    [LoggerMessage(2611, LogLevel.Debug, "Proxy: {Service}: UDP flow {Client} -> {Endpoint} over {Path} opened")]
    public static partial void FlowOpened(ILogger logger, string service, string client, string endpoint, string path);

    [LoggerMessage(2612, LogLevel.Debug, "Proxy: {Service}: UDP flow {Client} closed: {Why}")]
    public static partial void FlowClosed(ILogger logger, string service, string client, string why);

    [LoggerMessage(2613, LogLevel.Warning, "Proxy: {Service}: accepting failed: {Error}")]
    public static partial void AcceptFailed(ILogger logger, string service, string error);


    [LoggerMessage(2615, LogLevel.Debug, "Proxy: {Service}: UDP flow limit ({Limit}) reached; datagram from {Client} dropped")]
    public static partial void FlowLimit(ILogger logger, string service, int limit, string client);
}
