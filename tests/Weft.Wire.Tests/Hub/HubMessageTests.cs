using System.Buffers;
using System.Text;
using System.Text.Json;
using Weft.Wire.Hub;

namespace Weft.Wire.Tests.Hub;

public class HubMessageTests
{
    // The wire examples of KubeEdge's router (reference §8.5), as EdgeCore and CloudCore write them.
    private static readonly string[] Frames =
    [
        """{"header":{"msg_id":"u1","timestamp":1722222222222},"route":{"source":"websocket","group":"resource","operation":"keepalive","resource":"node"},"content":"ping"}""",
        """{"header":{"msg_id":"u2","timestamp":1722222222223},"route":{"source":"router_eventbus","group":"user","operation":"subscribe","resource":"default/test"},"content":null}""",
        """{"header":{"msg_id":"r1","timestamp":1},"route":{"source":"router_eventbus","group":"user","operation":"publish","resource":"topic-test/sub"},"content":"Hello World!"}""",
        """{"header":{"msg_id":"r2","timestamp":2},"route":{"source":"router_servicebus","group":"user","operation":"POST","resource":"6666:/target/sub"},"content":{"header":{"Content-Type":["application/json"]},"body":"eyJtZXNzYWdlIjoiMTIzIn0=","method":"POST","url":""}}""",
        """{"header":{"msg_id":"u3","parent_msg_id":"r2","timestamp":3},"route":{"source":"servicebus","group":"user","operation":"upload"},"content":{"header":{"Content-Type":["text/plain"]},"status_code":200,"body":"SGVsbG8="}}""",
        """{"header":{"msg_id":"u4","parent_msg_id":"o","timestamp":4,"resourceversion":"12","sync":true,"type":"t"},"route":{"source":"a","destination":"b","group":"resource","operation":"response","resource":"x"},"content":"OK"}""",
    ];

    public static TheoryData<string> KubeEdgeFrames => new(Frames);

    [Theory]
    [MemberData(nameof(KubeEdgeFrames))]
    public void KubeEdge_frames_round_trip_byte_for_byte(string json)
    {
        var bytes = Encoding.UTF8.GetBytes(json);
        var m = HubMessage.ReadFrame(bytes);
        Assert.Equal(json, Encoding.UTF8.GetString(m.ToJson()));
    }

    [Theory]
    [MemberData(nameof(KubeEdgeFrames))]
    public void Every_split_reads_the_same_message(string json)
    {
        var bytes = Encoding.UTF8.GetBytes(json + "\n" + json + " ");
        var expected = HubMessage.ReadFrame(Encoding.UTF8.GetBytes(json)).ToJson();
        for (var cut = 0; cut <= bytes.Length; cut++)
        {
            var seq = TestSequences.Split(bytes, cut);
            Assert.True(HubMessage.TryRead(ref seq, out var a));
            Assert.True(HubMessage.TryRead(ref seq, out var b));
            Assert.False(HubMessage.TryRead(ref seq, out _));
            Assert.Equal(expected, a.ToJson());
            Assert.Equal(expected, b.ToJson());
        }
        var bytewise = TestSequences.ByteByByte(bytes);
        Assert.True(HubMessage.TryRead(ref bytewise, out var c));
        Assert.Equal(expected, c.ToJson());
    }

    [Theory]
    [MemberData(nameof(KubeEdgeFrames))]
    public void Every_truncation_needs_more_and_leaves_the_input_alone(string json)
    {
        var bytes = Encoding.UTF8.GetBytes(json);
        for (var n = 0; n < bytes.Length; n++)
        {
            var seq = new ReadOnlySequence<byte>(bytes, 0, n);
            var before = seq;
            Assert.False(HubMessage.TryRead(ref seq, out _));
            Assert.Equal(before.Length, seq.Length);
            Assert.Throws<ProtocolViolationException>(() => HubMessage.ReadFrame(bytes.AsMemory(0, n)));
        }
    }

    [Fact]
    public void Fields_read_as_KubeEdge_meant_them()
    {
        var m = HubMessage.ReadFrame(Encoding.UTF8.GetBytes(Frames[3]));
        Assert.Equal("r2", m.Id);
        Assert.Equal("router_servicebus", m.Source);
        Assert.Equal("POST", m.Operation);
        Assert.Equal("6666:/target/sub", m.Resource);
        var req = HubHttpRequest.FromJson(m.Content);
        Assert.Equal("POST", req.Method);
        Assert.Equal("{\"message\":\"123\"}", Encoding.UTF8.GetString(req.Body));
        Assert.Equal(["application/json"], req.Header["content-type"]);
        var resp = HubHttpResponse.FromJson(HubMessage.ReadFrame(Encoding.UTF8.GetBytes(Frames[4])).Content);
        Assert.Equal(200, resp.StatusCode);
        Assert.Equal("Hello", Encoding.UTF8.GetString(resp.Body));
    }

    [Fact]
    public void Http_contents_round_trip_with_binary_bodies_and_the_deadline()
    {
        var body = Enumerable.Range(0, 300).Select(i => (byte)i).ToArray();
        var req = new HubHttpRequest { Method = "PUT", Body = body, TimeoutMs = 1234, Header = new() { ["X-A"] = ["1", "2"] } };
        var back = HubHttpRequest.FromJson(HubMessage.ReadFrame(new HubMessage { Id = "x", Content = req.ToJson() }.ToJson()).Content);
        Assert.Equal(body, back.Body);
        Assert.Equal(1234, back.TimeoutMs);
        Assert.Equal(["1", "2"], back.Header["x-a"]);
        var resp = HubHttpResponse.FromJson(new HubHttpResponse { StatusCode = 418, Body = body }.ToJson());
        Assert.Equal(418, resp.StatusCode);
        Assert.Equal(body, resp.Body);
        var welcome = HubWelcome.FromJson(new HubWelcome("cloud-a", 7, 5000).ToJson());
        Assert.Equal(new HubWelcome("cloud-a", 7, 5000), welcome);
    }

    public static TheoryData<string, string> Malformed => new()
    {
        { "[]", "must be a JSON object" },
        { "\"x\"", "must be a JSON object" },
        { "{}", "no header" },
        { """{"header":{}}""", "msg_id" },
        { """{"header":{"msg_id":""}}""", "msg_id" },
        { """{"header":{"msg_id":7}}""", "must be a string" },
        { """{"header":[]}""", "header must be a JSON object" },
        { """{"header":{"msg_id":"a","timestamp":"x"}}""", "timestamp" },
        { """{"header":{"msg_id":"a","timestamp":1.5}}""", "timestamp" },
        { """{"header":{"msg_id":"a","sync":1}}""", "sync" },
        { """{"header":{"msg_id":"a"},"route":"x"}""", "route must be a JSON object" },
        { """{"header":{"msg_id":"a"},"route":{"resource":{}}}""", "route.resource" },
        { """{"header":{"msg_id":"a"} x""", "malformed JSON" },
        { """{"header":{"msg_id":"a",}}""", "malformed JSON" },
        { "{\"header\":{\"msg_id\":\"\\ud800\"}}", "malformed JSON" },
    };

    [Theory]
    [MemberData(nameof(Malformed))]
    public void Malformed_messages_throw_a_typed_violation(string json, string why)
    {
        var ex = Assert.Throws<ProtocolViolationException>(() => HubMessage.ReadFrame(Encoding.UTF8.GetBytes(json)));
        Assert.Equal("hub", ex.Protocol);
        Assert.Contains(why, ex.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public void Invalid_utf8_and_extra_values_are_violations()
    {
        var bad = Encoding.UTF8.GetBytes("""{"header":{"msg_id":"ab"}}""");
        bad[20] = 0xFF;
        Assert.Throws<ProtocolViolationException>(() => HubMessage.ReadFrame(bad));
        Assert.Throws<ProtocolViolationException>(() => HubMessage.ReadFrame(Encoding.UTF8.GetBytes("""{"header":{"msg_id":"a"}} {}""")));
        Assert.Throws<ProtocolViolationException>(() => HubMessage.ReadFrame(ReadOnlyMemory<byte>.Empty));
    }

    [Fact]
    public void Limits_are_enforced_before_and_after_the_object_is_complete()
    {
        var limits = new HubLimits { MaxMessageBytes = 100, MaxIdLength = 4, MaxDepth = 4 };
        var big = Encoding.UTF8.GetBytes("{\"header\":{\"msg_id\":\"a\"},\"content\":\"" + new string('x', 200));
        var seq = new ReadOnlySequence<byte>(big);
        Assert.Throws<ProtocolViolationException>(() => HubMessage.TryRead(ref seq, out _, limits));
        var complete = Encoding.UTF8.GetBytes("{\"header\":{\"msg_id\":\"a\"},\"content\":\"" + new string('x', 200) + "\"}");
        Assert.Throws<ProtocolViolationException>(() => HubMessage.ReadFrame(complete, limits));
        Assert.Throws<ProtocolViolationException>(() => HubMessage.ReadFrame(Encoding.UTF8.GetBytes("""{"header":{"msg_id":"abcde"}}"""), limits));
        Assert.Throws<ProtocolViolationException>(() => HubMessage.ReadFrame(Encoding.UTF8.GetBytes("""{"header":{"msg_id":"a"},"content":[[[[[1]]]]]}"""), limits));
    }

    [Fact]
    public void Unknown_fields_are_ignored_as_Go_does()
    {
        var m = HubMessage.ReadFrame(Encoding.UTF8.GetBytes("""{"x":[1,{"y":2}],"header":{"msg_id":"a","z":{}},"route":{"q":1,"operation":"publish"},"content":{"k":[true]}}"""));
        Assert.Equal("a", m.Id);
        Assert.Equal("publish", m.Operation);
        Assert.Equal(JsonValueKind.Object, m.Content!.Value.ValueKind);
    }

    [Fact]
    public void Wrongly_shaped_http_contents_are_violations()
    {
        Assert.Throws<ProtocolViolationException>(() => HubHttpRequest.FromJson(null));
        Assert.Throws<ProtocolViolationException>(() => HubHttpRequest.FromJson(Json("""{"body":"not base64!"}""")));
        Assert.Throws<ProtocolViolationException>(() => HubHttpRequest.FromJson(Json("""{"header":{"a":"b"}}""")));
        Assert.Throws<ProtocolViolationException>(() => HubHttpRequest.FromJson(Json("""{"header":{"a":[null]}}""")));
        Assert.Throws<ProtocolViolationException>(() => HubHttpResponse.FromJson(Json("""{"status_code":42}""")));
        Assert.Throws<ProtocolViolationException>(() => HubHttpResponse.FromJson(Json("""{"status_code":"200"}""")));
        Assert.Throws<ProtocolViolationException>(() => HubWelcome.FromJson(Json("""{"replica":"","epoch":1,"keepalive_ms":1}""")));
    }

    [Fact]
    public void Random_and_mutated_input_only_ever_throws_violations()
    {
        var rng = new Random(7);
        var seeds = Frames.Select(f => Encoding.UTF8.GetBytes(f)).ToArray();
        for (var i = 0; i < 20_000; i++)
        {
            byte[] data;
            if (i % 2 == 0)
            {
                data = new byte[rng.Next(0, 64)];
                rng.NextBytes(data);
                if (data.Length > 0 && i % 4 == 0) data[0] = (byte)'{';
            }
            else
            {
                data = (byte[])seeds[rng.Next(seeds.Length)].Clone();
                for (var k = rng.Next(1, 4); k > 0; k--) data[rng.Next(data.Length)] = (byte)rng.Next(256);
            }
            var seq = TestSequences.Split(data, rng.Next(data.Length + 1));
            try
            {
                while (HubMessage.TryRead(ref seq, out var m))
                {
                    Assert.False(string.IsNullOrEmpty(m.Id));
                    _ = HubMessage.ReadFrame(m.ToJson());
                }
            }
            catch (ProtocolViolationException) { }
        }
    }

    private static JsonElement Json(string s)
    {
        using var d = JsonDocument.Parse(s);
        return d.RootElement.Clone();
    }
}
