using System.Globalization;

namespace Weft.Cloud.Config;

/// <summary>KubeEdge RuleEndpoint: <c>ruleEndpointType</c> rest | eventbus | servicebus, <c>properties</c> (servicebus: <c>service_port</c>).</summary>
public sealed record RuleEndpoint(string Namespace, string Name, string RuleEndpointType, IReadOnlyDictionary<string, string> Properties);

/// <summary>KubeEdge Rule: <c>source</c>, <c>sourceResource</c>, <c>target</c>, <c>targetResource</c> (endpoint names in the same namespace).</summary>
public sealed record Rule(string Namespace, string Name, string Source, IReadOnlyDictionary<string, string> SourceResource, string Target, IReadOnlyDictionary<string, string> TargetResource);

public enum RouteKind
{
    RestToServiceBus,
    RestToEventBus,
    EventBusToRest,
}

/// <summary>A validated rule, ready to route.</summary>
public sealed record Route
{
    public required RouteKind Kind { get; init; }
    public required string Namespace { get; init; }
    public required string Name { get; init; }

    /// <summary>rest source: the path prefix as segments (a <c>{var}</c> segment matches any one segment).</summary>
    public IReadOnlyList<string> PathSegments { get; init; } = [];

    /// <summary>servicebus target: the edge app's port on 127.0.0.1.</summary>
    public int ServicePort { get; init; }

    /// <summary>servicebus target: the path on the edge app the sub-path is appended to.</summary>
    public string TargetPath { get; init; } = "/";

    /// <summary>eventbus target: the MQTT topic the sub-path is appended to; eventbus source: the topic after the namespace.</summary>
    public string Topic { get; init; } = "";

    /// <summary>eventbus source: the one node it applies to (KubeEdge's node_name), or null for every node.</summary>
    public string? NodeName { get; init; }

    /// <summary>rest target: the cloud app URL to POST to.</summary>
    public Uri? TargetUrl { get; init; }
}

/// <summary>The routes of one configuration: rest sources by namespace (longest prefix wins), eventbus sources by topic.</summary>
public sealed class RuleTable
{
    public static readonly RuleTable Empty = new([]);

    private readonly Dictionary<string, List<Route>> _rest = new(StringComparer.Ordinal);
    private readonly List<Route> _eventSources = [];

    public RuleTable(IReadOnlyList<Route> routes)
    {
        Routes = routes;
        foreach (var r in routes)
        {
            if (r.Kind == RouteKind.EventBusToRest)
            {
                _eventSources.Add(r);
                continue;
            }
            if (!_rest.TryGetValue(r.Namespace, out var list)) _rest[r.Namespace] = list = [];
            list.Add(r);
        }
        foreach (var list in _rest.Values) list.Sort((a, b) => b.PathSegments.Count.CompareTo(a.PathSegments.Count));
    }

    public IReadOnlyList<Route> Routes { get; }

    /// <summary>The rest-source route whose path is the longest segment prefix of <paramref name="path"/>, and the rest of the path.</summary>
    public (Route Route, string SubPath)? MatchRest(string ns, IReadOnlyList<string> path)
    {
        if (!_rest.TryGetValue(ns, out var list)) return null;
        foreach (var r in list)
        {
            if (r.PathSegments.Count > path.Count) continue;
            var ok = true;
            for (var i = 0; i < r.PathSegments.Count && ok; i++)
            {
                var p = r.PathSegments[i];
                ok = p == path[i] || (p.Length > 2 && p[0] == '{' && p[^1] == '}');
            }
            if (ok) return (r, string.Concat(path.Skip(r.PathSegments.Count).Select(s => "/" + s)));
        }
        return null;
    }

    /// <summary>The eventbus-source routes that apply to <paramref name="node"/>.</summary>
    public IEnumerable<Route> EventSourcesFor(string node) => _eventSources.Where(r => r.NodeName is null || r.NodeName == node);

    /// <summary>The eventbus-source route for a message the edge uploaded from MQTT topic <c>&lt;namespace&gt;/&lt;topic&gt;</c>.</summary>
    public Route? MatchUpload(string node, string resource) =>
        _eventSources.FirstOrDefault(r => (r.NodeName is null || r.NodeName == node) && resource == r.Namespace + "/" + r.Topic);

    /// <summary>Validates endpoints and rules as KubeEdge's admission webhook does (allowed pairs, required fields, duplicates), listing every problem.</summary>
    public static RuleTable Build(IReadOnlyList<RuleEndpoint> endpoints, IReadOnlyList<Rule> rules, List<string> problems)
    {
        var byName = new Dictionary<(string, string), RuleEndpoint>();
        foreach (var e in endpoints)
        {
            var where = $"ruleEndpoints {e.Namespace}/{e.Name}";
            if (!byName.TryAdd((e.Namespace, e.Name), e)) problems.Add($"{where}: defined twice; give each endpoint a unique name within its namespace");
            if (e.RuleEndpointType is not ("rest" or "eventbus" or "servicebus"))
                problems.Add($"{where}: ruleEndpointType '{e.RuleEndpointType}' is not one of rest, eventbus, servicebus");
            if (e.RuleEndpointType == "servicebus" && !TryPort(e.Properties.GetValueOrDefault("service_port"), out _))
                problems.Add($"{where}: a servicebus endpoint needs properties.service_port, a whole number from 1 to 65535 (the edge app's port on 127.0.0.1)");
        }
        var routes = new List<Route>();
        var restPaths = new HashSet<(string, string)>();
        var topics = new HashSet<(string, string, string?)>();
        foreach (var r in rules)
        {
            var where = $"rules {r.Namespace}/{r.Name}";
            if (!byName.TryGetValue((r.Namespace, r.Source), out var src)) { problems.Add($"{where}: source endpoint '{r.Source}' is not defined in namespace {r.Namespace}"); continue; }
            if (!byName.TryGetValue((r.Namespace, r.Target), out var dst)) { problems.Add($"{where}: target endpoint '{r.Target}' is not defined in namespace {r.Namespace}"); continue; }
            var pair = src.RuleEndpointType + "→" + dst.RuleEndpointType;
            switch ((src.RuleEndpointType, dst.RuleEndpointType))
            {
                case ("rest", "servicebus"):
                case ("rest", "eventbus"):
                {
                    var path = r.SourceResource.GetValueOrDefault("path");
                    if (string.IsNullOrEmpty(path) || path[0] != '/' || path.Contains('?', StringComparison.Ordinal))
                    {
                        problems.Add($"{where}: a rest source needs sourceResource.path starting with '/' (e.g. /demo), without a query");
                        continue;
                    }
                    var segments = path.Split('/', StringSplitOptions.RemoveEmptyEntries);
                    if (segments.Length == 0) { problems.Add($"{where}: sourceResource.path must name at least one segment"); continue; }
                    if (!restPaths.Add((r.Namespace, string.Join('/', segments)))) { problems.Add($"{where}: another rule in namespace {r.Namespace} already uses path {path}"); continue; }
                    if (dst.RuleEndpointType == "servicebus")
                    {
                        var target = r.TargetResource.GetValueOrDefault("path");
                        if (string.IsNullOrEmpty(target) || target[0] != '/') { problems.Add($"{where}: a servicebus target needs targetResource.path starting with '/'"); continue; }
                        TryPort(dst.Properties.GetValueOrDefault("service_port"), out var port);
                        routes.Add(new Route { Kind = RouteKind.RestToServiceBus, Namespace = r.Namespace, Name = r.Name, PathSegments = segments, ServicePort = port, TargetPath = target });
                    }
                    else
                    {
                        var topic = r.TargetResource.GetValueOrDefault("topic");
                        if (string.IsNullOrEmpty(topic) || topic.AsSpan().IndexOfAny('+', '#') >= 0) { problems.Add($"{where}: an eventbus target needs targetResource.topic, an MQTT topic without wildcards"); continue; }
                        routes.Add(new Route { Kind = RouteKind.RestToEventBus, Namespace = r.Namespace, Name = r.Name, PathSegments = segments, Topic = topic });
                    }
                    break;
                }
                case ("eventbus", "rest"):
                {
                    var topic = r.SourceResource.GetValueOrDefault("topic");
                    var node = r.SourceResource.GetValueOrDefault("node_name");
                    if (string.IsNullOrEmpty(topic) || topic.AsSpan().IndexOfAny('+', '#') >= 0) { problems.Add($"{where}: an eventbus source needs sourceResource.topic, without wildcards"); continue; }
                    var url = r.TargetResource.GetValueOrDefault("resource");
                    if (!Uri.TryCreate(url, UriKind.Absolute, out var u) || u.Scheme is not ("http" or "https"))
                    {
                        problems.Add($"{where}: a rest target needs targetResource.resource, an absolute http:// or https:// URL");
                        continue;
                    }
                    if (!topics.Add((r.Namespace, topic, node))) { problems.Add($"{where}: another rule already takes topic {topic} for {node ?? "every node"}"); continue; }
                    routes.Add(new Route { Kind = RouteKind.EventBusToRest, Namespace = r.Namespace, Name = r.Name, Topic = topic, NodeName = string.IsNullOrEmpty(node) ? null : node, TargetUrl = u });
                    break;
                }
                default:
                    problems.Add($"{where}: {pair} is not supported; use rest→servicebus, rest→eventbus or eventbus→rest");
                    break;
            }
        }
        return new RuleTable(routes);
    }

    private static bool TryPort(string? s, out int port) =>
        int.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out port) && port is >= 1 and <= 65535;
}
