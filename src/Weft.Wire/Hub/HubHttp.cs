using System.Text.Json;

namespace Weft.Wire.Hub;

/// <summary>Route names used on the hub link (KubeEdge's, plus Weft's additions marked as such).</summary>
public static class HubNames
{
    public const string GroupUser = "user";
    public const string GroupResource = "resource";
    public const string GroupHub = "hub";

    public const string SourceRouterServiceBus = "router_servicebus";
    public const string SourceRouterEventBus = "router_eventbus";
    public const string SourceServiceBus = "servicebus";
    public const string SourceEventBus = "eventbus";
    public const string SourceBus = "bus";
    public const string SourceEdgeHub = "websocket";
    public const string SourceCloudHub = "cloudhub";

    public const string OpKeepalive = "keepalive";
    public const string OpPublish = "publish";
    public const string OpSubscribe = "subscribe";
    public const string OpUnsubscribe = "unsubscribe";
    public const string OpUpload = "upload";
    public const string OpResponse = "response";
    public const string OpError = "error";

    /// <summary>Weft: the cloud's first message on a session once the node's ownership is recorded (content: <see cref="HubWelcome"/>).</summary>
    public const string OpConnected = "connected";

    /// <summary>The ack content KubeEdge uses.</summary>
    public const string AckOk = "OK";
}

/// <summary>
/// The content of a rest→servicebus request (KubeEdge <c>types.HTTPRequest</c>): <c>header</c> (name → values),
/// <c>body</c> (base64, as Go marshals <c>[]byte</c>), <c>method</c>, <c>url</c>; Weft adds <c>timeout_ms</c>, the
/// time left of the caller's deadline, which Go ignores.
/// </summary>
public sealed record HubHttpRequest
{
    public Dictionary<string, string[]> Header { get; init; } = new(StringComparer.OrdinalIgnoreCase);
    public byte[] Body { get; init; } = [];
    public string Method { get; init; } = "GET";
    public string Url { get; init; } = "";
    public long? TimeoutMs { get; init; }

    public JsonElement ToJson()
    {
        using var doc = JsonDocument.Parse(JsonSerializer.SerializeToUtf8Bytes(new Dto(Header, Body, Method, Url, TimeoutMs), HubJson.Options));
        return doc.RootElement.Clone();
    }

    /// <summary>Reads the content; throws <see cref="ProtocolViolationException"/> ("hub") when it has the wrong shape.</summary>
    public static HubHttpRequest FromJson(JsonElement? content)
    {
        var dto = HubJson.Read<Dto>(content, "servicebus request");
        return new HubHttpRequest
        {
            Header = HubJson.Headers(dto.Header), Body = dto.Body ?? [], Method = string.IsNullOrEmpty(dto.Method) ? "GET" : dto.Method,
            Url = dto.Url ?? "", TimeoutMs = dto.TimeoutMs,
        };
    }

    private sealed record Dto(
        [property: System.Text.Json.Serialization.JsonPropertyName("header")] Dictionary<string, string[]>? Header,
        [property: System.Text.Json.Serialization.JsonPropertyName("body")] byte[]? Body,
        [property: System.Text.Json.Serialization.JsonPropertyName("method")] string? Method,
        [property: System.Text.Json.Serialization.JsonPropertyName("url")] string? Url,
        [property: System.Text.Json.Serialization.JsonPropertyName("timeout_ms")] long? TimeoutMs);
}

/// <summary>The content of a servicebus reply (KubeEdge <c>types.HTTPResponse</c>): <c>header</c>, <c>status_code</c>, <c>body</c> (base64).</summary>
public sealed record HubHttpResponse
{
    public Dictionary<string, string[]> Header { get; init; } = new(StringComparer.OrdinalIgnoreCase);
    public int StatusCode { get; init; }
    public byte[] Body { get; init; } = [];

    public JsonElement ToJson()
    {
        using var doc = JsonDocument.Parse(JsonSerializer.SerializeToUtf8Bytes(new Dto(Header, StatusCode, Body), HubJson.Options));
        return doc.RootElement.Clone();
    }

    /// <summary>Reads the content; throws <see cref="ProtocolViolationException"/> ("hub") when it has the wrong shape.</summary>
    public static HubHttpResponse FromJson(JsonElement? content)
    {
        var dto = HubJson.Read<Dto>(content, "servicebus response");
        if (dto.StatusCode is < 100 or > 999) throw new ProtocolViolationException("hub", $"servicebus response status_code {dto.StatusCode} is not an HTTP status");
        return new HubHttpResponse { Header = HubJson.Headers(dto.Header), StatusCode = dto.StatusCode, Body = dto.Body ?? [] };
    }

    private sealed record Dto(
        [property: System.Text.Json.Serialization.JsonPropertyName("header")] Dictionary<string, string[]>? Header,
        [property: System.Text.Json.Serialization.JsonPropertyName("status_code")] int StatusCode,
        [property: System.Text.Json.Serialization.JsonPropertyName("body")] byte[]? Body);
}

/// <summary>Weft: the content of the cloud's <see cref="HubNames.OpConnected"/> message.</summary>
public sealed record HubWelcome(
    [property: System.Text.Json.Serialization.JsonPropertyName("replica")] string Replica,
    [property: System.Text.Json.Serialization.JsonPropertyName("epoch")] long Epoch,
    [property: System.Text.Json.Serialization.JsonPropertyName("keepalive_ms")] long KeepaliveMs)
{
    public JsonElement ToJson()
    {
        using var doc = JsonDocument.Parse(JsonSerializer.SerializeToUtf8Bytes(this, HubJson.Options));
        return doc.RootElement.Clone();
    }

    public static HubWelcome FromJson(JsonElement? content)
    {
        var w = HubJson.Read<HubWelcome>(content, "welcome");
        if (string.IsNullOrEmpty(w.Replica)) throw new ProtocolViolationException("hub", "welcome names no replica");
        return w;
    }
}

internal static class HubJson
{
    public static readonly JsonSerializerOptions Options = new() { MaxDepth = 16 };

    public static T Read<T>(JsonElement? content, string what)
    {
        if (content is not { ValueKind: JsonValueKind.Object } c)
            throw new ProtocolViolationException("hub", $"{what} content must be a JSON object");
        try
        {
            return c.Deserialize<T>(Options) ?? throw new ProtocolViolationException("hub", $"{what} content is null");
        }
        catch (Exception ex) when (ex is JsonException or FormatException or NotSupportedException)
        {
            throw new ProtocolViolationException("hub", $"{what} content has the wrong shape: {ex.Message}", ex);
        }
    }

    public static Dictionary<string, string[]> Headers(Dictionary<string, string[]>? h)
    {
        var d = new Dictionary<string, string[]>(StringComparer.OrdinalIgnoreCase);
        if (h is null) return d;
        foreach (var (k, v) in h)
        {
            if (v is null || v.Any(x => x is null)) throw new ProtocolViolationException("hub", $"header '{k}' has a null value");
            d[k] = v;
        }
        return d;
    }
}
