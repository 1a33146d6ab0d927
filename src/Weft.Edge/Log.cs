using Microsoft.Extensions.Logging;

namespace Weft.Edge;

internal static partial class Log
{
    [LoggerMessage(5100, LogLevel.Information, "Cloud link: connected to {Replica} via {Url} (epoch {Epoch})")]
    public static partial void Connected(ILogger logger, string replica, string url, long epoch);

    [LoggerMessage(5101, LogLevel.Information, "Cloud link: {Url} failed: {Error}; next try in {Ms} ms")]
    public static partial void LinkDown(ILogger logger, string url, string error, long ms);

    [LoggerMessage(5102, LogLevel.Warning, "Cloud link: servicebus call to {Url} failed: {Error}")]
    public static partial void AppCallFailed(ILogger logger, string url, string error);

    [LoggerMessage(5103, LogLevel.Debug, "Cloud link: ignored a message (source {Source}, operation {Operation})")]
    public static partial void Ignored(ILogger logger, string source, string operation);

    [LoggerMessage(5104, LogLevel.Information, "MQTT: connected to {Broker}")]
    public static partial void MqttUp(ILogger logger, string broker);

    [LoggerMessage(5105, LogLevel.Information, "MQTT: link to {Broker} down: {Error}")]
    public static partial void MqttDown(ILogger logger, string broker, string error);

    [LoggerMessage(5106, LogLevel.Warning, "Cloud link: eventbus message {Id} not published: {Error}")]
    public static partial void PublishFailed(ILogger logger, string id, string error);
}
