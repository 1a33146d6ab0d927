using System.Buffers;
using System.Text.Json;

namespace Weft.Wire.Hub;

/// <summary>
/// One cloud⇄edge message in KubeEdge's beehive shape (<c>model.Message</c>), carried as one JSON text frame:
/// <c>{"header":{"msg_id","parent_msg_id","timestamp","resourceversion","sync","type"},
/// "route":{"source","destination","group","operation","resource"},"content":…}</c>. Field names and
/// omit-when-empty rules follow the Go tags, so a message round-trips with KubeEdge's encoder.
/// </summary>
public sealed record HubMessage
{
    /// <summary><c>header.msg_id</c>: unique per message; replies and acks name it as their parent. Required.</summary>
    public required string Id { get; init; }

    /// <summary><c>header.parent_msg_id</c>: the message this one answers, or null.</summary>
    public string? ParentId { get; init; }

    /// <summary><c>header.timestamp</c>: milliseconds since the Unix epoch at the sender.</summary>
    public long Timestamp { get; init; }

    /// <summary><c>header.resourceversion</c>, or null.</summary>
    public string? ResourceVersion { get; init; }

    /// <summary><c>header.sync</c>.</summary>
    public bool Sync { get; init; }

    /// <summary><c>header.type</c>, or null.</summary>
    public string? Type { get; init; }

    /// <summary><c>route.source</c>: the sending module (e.g. <c>router_servicebus</c>, <c>servicebus</c>, <c>bus</c>).</summary>
    public string Source { get; init; } = "";

    /// <summary><c>route.destination</c>.</summary>
    public string Destination { get; init; } = "";

    /// <summary><c>route.group</c> (<c>user</c> for router traffic, <c>resource</c> for keepalives).</summary>
    public string Group { get; init; } = "";

    /// <summary><c>route.operation</c> (<c>publish</c>, <c>upload</c>, <c>response</c>, <c>keepalive</c>, an HTTP method, …).</summary>
    public string Operation { get; init; } = "";

    /// <summary><c>route.resource</c> (a topic, <c>port:path</c>, a URL, …).</summary>
    public string Resource { get; init; } = "";

    /// <summary><c>content</c>: any JSON value; null when absent (written as JSON null).</summary>
    public JsonElement? Content { get; init; }

    /// <summary>The content as a string when it is a JSON string, else null.</summary>
    public string? ContentString => Content is { ValueKind: JsonValueKind.String } c ? c.GetString() : null;

    /// <summary>Writes the message as one JSON object (no trailing newline).</summary>
    public void Write(IBufferWriter<byte> output)
    {
        ArgumentNullException.ThrowIfNull(output);
        using var w = new Utf8JsonWriter(output, new JsonWriterOptions { SkipValidation = true });
        w.WriteStartObject();
        w.WriteStartObject("header");
        w.WriteString("msg_id", Id);
        if (!string.IsNullOrEmpty(ParentId)) w.WriteString("parent_msg_id", ParentId);
        w.WriteNumber("timestamp", Timestamp);
        if (!string.IsNullOrEmpty(ResourceVersion)) w.WriteString("resourceversion", ResourceVersion);
        if (Sync) w.WriteBoolean("sync", true);
        if (!string.IsNullOrEmpty(Type)) w.WriteString("type", Type);
        w.WriteEndObject();
        if (Source.Length + Destination.Length + Group.Length + Operation.Length + Resource.Length > 0)
        {
            w.WriteStartObject("route");
            if (Source.Length > 0) w.WriteString("source", Source);
            if (Destination.Length > 0) w.WriteString("destination", Destination);
            if (Group.Length > 0) w.WriteString("group", Group);
            if (Operation.Length > 0) w.WriteString("operation", Operation);
            if (Resource.Length > 0) w.WriteString("resource", Resource);
            w.WriteEndObject();
        }
        w.WritePropertyName("content");
        if (Content is { } c) c.WriteTo(w);
        else w.WriteNullValue();
        w.WriteEndObject();
    }

    /// <summary>The message as UTF-8 JSON bytes.</summary>
    public byte[] ToJson()
    {
        var buffer = new ArrayBufferWriter<byte>(256);
        Write(buffer);
        return buffer.WrittenSpan.ToArray();
    }

    /// <summary>
    /// Reads one message from a stream of JSON objects (whitespace between them is skipped). False: the object is
    /// not complete yet and <paramref name="input"/> is untouched. On success <paramref name="input"/> is advanced
    /// past the object. Throws <see cref="ProtocolViolationException"/> ("hub") for malformed JSON, a value that is
    /// not an object, fields of the wrong type, a missing <c>header.msg_id</c>, a limit in
    /// <paramref name="limits"/> exceeded, or an incomplete object already longer than
    /// <see cref="HubLimits.MaxMessageBytes"/>.
    /// </summary>
    public static bool TryRead(ref ReadOnlySequence<byte> input, out HubMessage message, HubLimits? limits = null)
    {
        limits ??= HubLimits.Default;
        message = null!;
        var start = SkipWhitespace(input);
        var rest = input.Slice(start);
        if (rest.IsEmpty) return false;
        var reader = new Utf8JsonReader(rest, isFinalBlock: false, new JsonReaderState(new JsonReaderOptions { MaxDepth = limits.MaxDepth }));
        try
        {
            if (!reader.Read()) return TooLongOrNeedMore(rest, limits);
            if (reader.TokenType != JsonTokenType.StartObject)
                throw new ProtocolViolationException(Codec, $"a message must be a JSON object, got {reader.TokenType}");
            if (!reader.TrySkip()) return TooLongOrNeedMore(rest, limits);
        }
        catch (JsonException ex)
        {
            throw new ProtocolViolationException(Codec, "malformed JSON: " + ex.Message, ex);
        }
        var length = reader.BytesConsumed;
        if (length > limits.MaxMessageBytes)
            throw new ProtocolViolationException(Codec, $"message of {length} bytes is over the limit of {limits.MaxMessageBytes}");
        message = Parse(rest.Slice(0, length), limits);
        input = rest.Slice(length);
        return true;
    }

    /// <summary>
    /// Reads a whole frame that must hold exactly one message (whitespace around it allowed). Throws
    /// <see cref="ProtocolViolationException"/> if the frame is incomplete, malformed or holds more.
    /// </summary>
    public static HubMessage ReadFrame(ReadOnlySequence<byte> frame, HubLimits? limits = null)
    {
        if (!TryRead(ref frame, out var message, limits))
            throw new ProtocolViolationException(Codec, frame.IsEmpty ? "empty frame" : "frame ends inside the message");
        if (!frame.Slice(SkipWhitespace(frame)).IsEmpty)
            throw new ProtocolViolationException(Codec, "frame holds more than one JSON value");
        return message;
    }

    /// <summary>Reads a whole frame held in one buffer; see <see cref="ReadFrame(ReadOnlySequence{byte}, HubLimits?)"/>.</summary>
    public static HubMessage ReadFrame(ReadOnlyMemory<byte> frame, HubLimits? limits = null) =>
        ReadFrame(new ReadOnlySequence<byte>(frame), limits);

    private const string Codec = "hub";

    private static bool TooLongOrNeedMore(ReadOnlySequence<byte> rest, HubLimits limits)
    {
        if (rest.Length > limits.MaxMessageBytes)
            throw new ProtocolViolationException(Codec, $"message is over the limit of {limits.MaxMessageBytes} bytes");
        return false;
    }

    private static long SkipWhitespace(ReadOnlySequence<byte> input)
    {
        long n = 0;
        foreach (var segment in input)
        {
            var span = segment.Span;
            for (var i = 0; i < span.Length; i++)
            {
                if (span[i] is not ((byte)' ' or (byte)'\t' or (byte)'\r' or (byte)'\n')) return n + i;
            }
            n += span.Length;
        }
        return n;
    }

    private static HubMessage Parse(ReadOnlySequence<byte> json, HubLimits limits)
    {
        var reader = new Utf8JsonReader(json, new JsonReaderOptions { MaxDepth = limits.MaxDepth });
        string? id = null, parent = null, rv = null, type = null;
        long timestamp = 0;
        bool sync = false, sawHeader = false;
        string source = "", destination = "", group = "", operation = "", resource = "";
        JsonElement? content = null;
        try
        {
            reader.Read();
            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                var name = reader.GetString();
                reader.Read();
                switch (name)
                {
                    case "header":
                        sawHeader = true;
                        ExpectObject(ref reader, "header");
                        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
                        {
                            var field = reader.GetString();
                            reader.Read();
                            switch (field)
                            {
                                case "msg_id": id = ReadString(ref reader, "header.msg_id", limits.MaxIdLength); break;
                                case "parent_msg_id": parent = ReadString(ref reader, "header.parent_msg_id", limits.MaxIdLength); break;
                                case "resourceversion": rv = ReadString(ref reader, "header.resourceversion", limits.MaxFieldLength); break;
                                case "type": type = ReadString(ref reader, "header.type", limits.MaxFieldLength); break;
                                case "timestamp":
                                    if (reader.TokenType == JsonTokenType.Null) break;
                                    if (reader.TokenType != JsonTokenType.Number || !reader.TryGetInt64(out timestamp))
                                        throw new ProtocolViolationException(Codec, "header.timestamp must be a whole number of milliseconds");
                                    break;
                                case "sync":
                                    if (reader.TokenType == JsonTokenType.Null) break;
                                    if (reader.TokenType is not (JsonTokenType.True or JsonTokenType.False))
                                        throw new ProtocolViolationException(Codec, "header.sync must be true or false");
                                    sync = reader.GetBoolean();
                                    break;
                                default: reader.Skip(); break;
                            }
                        }
                        break;
                    case "route":
                        if (reader.TokenType == JsonTokenType.Null) break;
                        ExpectObject(ref reader, "route");
                        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
                        {
                            var field = reader.GetString();
                            reader.Read();
                            switch (field)
                            {
                                case "source": source = ReadString(ref reader, "route.source", limits.MaxFieldLength) ?? ""; break;
                                case "destination": destination = ReadString(ref reader, "route.destination", limits.MaxFieldLength) ?? ""; break;
                                case "group": group = ReadString(ref reader, "route.group", limits.MaxFieldLength) ?? ""; break;
                                case "operation": operation = ReadString(ref reader, "route.operation", limits.MaxFieldLength) ?? ""; break;
                                case "resource": resource = ReadString(ref reader, "route.resource", limits.MaxFieldLength) ?? ""; break;
                                default: reader.Skip(); break;
                            }
                        }
                        break;
                    case "content":
                        content = JsonElement.ParseValue(ref reader);
                        if (content.Value.ValueKind == JsonValueKind.Null) content = null;
                        break;
                    default:
                        reader.Skip();
                        break;
                }
            }
        }
        catch (JsonException ex)
        {
            throw new ProtocolViolationException(Codec, "malformed JSON: " + ex.Message, ex);
        }
        catch (InvalidOperationException ex)
        {
            throw new ProtocolViolationException(Codec, "malformed JSON: " + ex.Message, ex);
        }
        if (!sawHeader) throw new ProtocolViolationException(Codec, "the message has no header");
        if (string.IsNullOrEmpty(id)) throw new ProtocolViolationException(Codec, "header.msg_id is missing or empty");
        return new HubMessage
        {
            Id = id, ParentId = parent, Timestamp = timestamp, ResourceVersion = rv, Sync = sync, Type = type,
            Source = source, Destination = destination, Group = group, Operation = operation, Resource = resource, Content = content,
        };
    }

    private static void ExpectObject(ref Utf8JsonReader reader, string what)
    {
        if (reader.TokenType != JsonTokenType.StartObject)
            throw new ProtocolViolationException(Codec, $"{what} must be a JSON object, got {reader.TokenType}");
    }

    private static string? ReadString(ref Utf8JsonReader reader, string what, int maxLength)
    {
        if (reader.TokenType == JsonTokenType.Null) return null;
        if (reader.TokenType != JsonTokenType.String) throw new ProtocolViolationException(Codec, $"{what} must be a string, got {reader.TokenType}");
        var s = reader.GetString()!;
        if (s.Length > maxLength) throw new ProtocolViolationException(Codec, $"{what} is {s.Length} characters, over the limit of {maxLength}");
        return s;
    }
}

/// <summary>Bounds on a decoded <see cref="HubMessage"/>.</summary>
public sealed record HubLimits
{
    /// <summary>The defaults: 16 MiB per message (a 12 MiB body in base64 plus headers), depth 64, ids of 256 and fields of 8 KiB.</summary>
    public static HubLimits Default { get; } = new();

    /// <summary>Largest message, in bytes of JSON.</summary>
    public int MaxMessageBytes { get; init; } = 16 * 1024 * 1024;

    /// <summary>Deepest nesting of JSON objects and arrays.</summary>
    public int MaxDepth { get; init; } = 64;

    /// <summary>Longest <c>msg_id</c> and <c>parent_msg_id</c>, in characters.</summary>
    public int MaxIdLength { get; init; } = 256;

    /// <summary>Longest route field, resource version or type, in characters.</summary>
    public int MaxFieldLength { get; init; } = 8 * 1024;
}
