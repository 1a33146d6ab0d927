using System.Globalization;
using System.Net;
using System.Text;
using Weft.Lab.Services;

namespace Weft.Cloud.Tests;

/// <summary>Writes a `weft cloud` config for tests: plain ws hub (lab mode), free ports, the standard rules.</summary>
public sealed class CloudConfig
{
    public required string Name { get; init; }
    public int HubPort { get; init; } = LabService.FreePort(IPAddress.Loopback);
    public int RouterPort { get; init; } = LabService.FreePort(IPAddress.Loopback);
    public required string SecretFile { get; init; }
    public int AppPort { get; init; }
    public Uri? IngestUrl { get; init; }
    public Uri? Etcd { get; init; }
    public string? EmbeddedPath { get; init; }
    public string Extra { get; init; } = "";
    public string HubExtra { get; init; } = "";

    public Uri RouterUrl => new($"http://127.0.0.1:{RouterPort}");
    public Uri HubUrl => new($"ws://127.0.0.1:{HubPort}");
    public IPEndPoint HubEndPoint => new(IPAddress.Loopback, HubPort);
    public IPEndPoint RouterEndPoint => new(IPAddress.Loopback, RouterPort);

    public static string NewSecret(string folder)
    {
        var path = Path.Combine(folder, "secret");
        if (!File.Exists(path)) File.WriteAllBytes(path, System.Security.Cryptography.RandomNumberGenerator.GetBytes(32));
        return path;
    }

    public string Yaml()
    {
        var sb = new StringBuilder();
        sb.Append(CultureInfo.InvariantCulture, $$"""
            replica:
              name: {{Name}}
            hub:
              listen: 127.0.0.1:{{HubPort}}
              allowPlaintext: true
              tokenSecretFile: {{SecretFile}}
              keepaliveInterval: 500ms
              readTimeout: 3s
            {{HubExtra}}
            router:
              listen: 127.0.0.1:{{RouterPort}}
              requestTimeout: 10s
              maxBodyBytes: 1MiB
            eventBus:
              resendInterval: 500ms
            directory:

            """);
        if (Etcd is not null) sb.Append(CultureInfo.InvariantCulture, $"  backend: etcd\n  etcdEndpoints: [{Etcd}]\n  leaseTtl: 3s\n  requestTimeout: 500ms\n");
        else if (EmbeddedPath is not null) sb.Append(CultureInfo.InvariantCulture, $"  backend: embedded\n  embeddedPath: {EmbeddedPath}\n  leaseTtl: 3s\n");
        else sb.Append("  backend: embedded\n");
        var ingest = IngestUrl ?? new Uri("http://127.0.0.1:9/ingest");
        sb.Append(CultureInfo.InvariantCulture, $$"""
            ruleEndpoints:
              - {name: rest, ruleEndpointType: rest}
              - {name: app, ruleEndpointType: servicebus, properties: {service_port: "{{AppPort}}"} }
              - {name: mq, ruleEndpointType: eventbus}
              - {name: cloudapp, ruleEndpointType: rest}
            rules:
              - {name: demo, source: rest, sourceResource: {path: /demo}, target: app, targetResource: {path: /} }
              - {name: events, source: rest, sourceResource: {path: /events}, target: mq, targetResource: {topic: cloud/events} }
              - {name: telemetry, source: mq, sourceResource: {topic: telemetry}, target: cloudapp, targetResource: {resource: "{{ingest}}"} }

            """);
        sb.Append(Extra);
        return sb.ToString();
    }

    public string Write(string folder)
    {
        var path = Path.Combine(folder, Name + ".yaml");
        File.WriteAllText(path, Yaml());
        return path;
    }
}
