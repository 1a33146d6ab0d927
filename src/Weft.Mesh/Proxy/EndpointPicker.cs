using System.Net;

namespace Weft.Mesh.Proxy;

/// <summary>One endpoint of one service port: where a connection goes (<see cref="NodeName"/> null or this node: dialled directly).</summary>
public sealed record EndpointTarget(string? NodeName, IPAddress Ip, int Port)
{
    public IPEndPoint EndPoint => new(Ip, Port);

    public override string ToString() => (NodeName is null ? "" : NodeName + "/") + new IPEndPoint(Ip, Port);
}

/// <summary>What the picker knows about one endpoint (for status).</summary>
public sealed record EndpointState(EndpointTarget Target, bool CoolingDown, int Failures);

/// <summary>
/// The load balancer of one service port: picks an endpoint for a new connection by the service's policy, keeps
/// ClientIP session affinity (a client IP sticks to its endpoint until it has been quiet for the timeout), and passes
/// over endpoints that failed for a cooldown that doubles with each further failure (<see cref="ProxyLimits"/>). When
/// every endpoint is cooling down they are tried anyway (a dead pool is no worse than no pool). Thread-safe.
/// </summary>
public sealed class EndpointPicker(TimeProvider time, ProxyLimits limits)
{
    private readonly object _gate = new();
    private readonly Dictionary<EndpointTarget, (long Until, int Failures)> _bad = [];
    private readonly Dictionary<IPAddress, (EndpointTarget Endpoint, long LastUsed)> _affinity = [];
    private IReadOnlyList<EndpointTarget> _endpoints = [];
    private ulong[] _hashes = [];
    private LoadBalancingPolicy _policy;
    private SessionAffinity _sessionAffinity;
    private TimeSpan _affinityTimeout;
    private long _next;

    public IReadOnlyList<EndpointTarget> Endpoints { get { lock (_gate) return _endpoints; } }

    /// <summary>Clients pinned by session affinity now (expired ones included until swept).</summary>
    public int AffinityCount { get { lock (_gate) return _affinity.Count; } }

    /// <summary>
    /// Replaces the endpoints and policy. Affinity entries and failure marks of endpoints that stay are kept; the rest
    /// are dropped.
    /// </summary>
    public void Update(IReadOnlyList<EndpointTarget> endpoints, LoadBalancingPolicy policy, SessionAffinity affinity, TimeSpan affinityTimeout)
    {
        lock (_gate)
        {
            _endpoints = endpoints.ToList();
            _hashes = _endpoints.Select(e => Hash(e.ToString())).ToArray();
            _policy = policy;
            _sessionAffinity = affinity;
            _affinityTimeout = affinityTimeout;
            var keep = _endpoints.ToHashSet();
            foreach (var k in _bad.Keys.Where(k => !keep.Contains(k)).ToList()) _bad.Remove(k);
            if (affinity == SessionAffinity.None) _affinity.Clear();
            else foreach (var (k, v) in _affinity.Where(kv => !keep.Contains(kv.Value.Endpoint)).ToList()) _affinity.Remove(k);
        }
    }

    /// <summary>
    /// The endpoint for a new connection from <paramref name="client"/>, leaving out <paramref name="tried"/> (the ones
    /// that failed for this connection already); null when none is left.
    /// </summary>
    public EndpointTarget? Pick(IPAddress client, IReadOnlyCollection<EndpointTarget>? tried = null)
    {
        if (client.IsIPv4MappedToIPv6) client = client.MapToIPv4();
        lock (_gate)
        {
            var now = time.GetTimestamp();
            var candidates = new List<int>(_endpoints.Count);
            for (var i = 0; i < _endpoints.Count; i++)
                if (tried is null || !tried.Contains(_endpoints[i])) candidates.Add(i);
            if (candidates.Count == 0) return null;
            var healthy = candidates.Where(i => !_bad.TryGetValue(_endpoints[i], out var b) || now >= b.Until).ToList();
            var pool = healthy.Count > 0 ? healthy : candidates;

            if (_sessionAffinity == SessionAffinity.ClientIP && _affinity.TryGetValue(client, out var pinned))
            {
                if (time.GetElapsedTime(pinned.LastUsed, now) < _affinityTimeout && pool.Any(i => _endpoints[i] == pinned.Endpoint))
                    return pinned.Endpoint;
                _affinity.Remove(client);
            }

            int chosen;
            switch (_policy)
            {
                case LoadBalancingPolicy.Random:
                    chosen = pool[System.Random.Shared.Next(pool.Count)];
                    break;
                case LoadBalancingPolicy.ConsistentHash:
                    // Rendezvous hashing: the endpoint with the highest score for this client IP. An endpoint leaving or
                    // failing moves only its own clients, each to its next-highest endpoint.
                    var key = Hash(client.GetAddressBytes());
                    chosen = pool.MaxBy(i => Mix(key ^ _hashes[i]));
                    break;
                default:
                    chosen = pool[(int)((ulong)_next++ % (ulong)pool.Count)];
                    break;
            }
            return _endpoints[chosen];
        }
    }

    /// <summary>A connection to <paramref name="endpoint"/> worked: its failure mark goes, and the client sticks to it (ClientIP affinity).</summary>
    public void Succeeded(IPAddress client, EndpointTarget endpoint)
    {
        if (client.IsIPv4MappedToIPv6) client = client.MapToIPv4();
        lock (_gate)
        {
            _bad.Remove(endpoint);
            if (_sessionAffinity != SessionAffinity.ClientIP) return;
            var now = time.GetTimestamp();
            if (_affinity.Count >= limits.MaxAffinityClients && !_affinity.ContainsKey(client))
            {
                foreach (var (k, v) in _affinity.Where(kv => time.GetElapsedTime(kv.Value.LastUsed, now) >= _affinityTimeout).ToList()) _affinity.Remove(k);
                if (_affinity.Count >= limits.MaxAffinityClients) return; // full of live clients: this one is not pinned
            }
            _affinity[client] = (endpoint, now);
        }
    }

    /// <summary>A connection to <paramref name="endpoint"/> failed: it is passed over for its cooldown.</summary>
    public void Failed(EndpointTarget endpoint)
    {
        lock (_gate)
        {
            var failures = _bad.TryGetValue(endpoint, out var b) ? b.Failures + 1 : 1;
            var cooldown = TimeSpan.FromTicks(Math.Min(limits.MaxEndpointCooldown.Ticks, limits.EndpointCooldown.Ticks << Math.Min(failures - 1, 20)));
            _bad[endpoint] = (time.GetTimestamp() + (long)(cooldown.TotalSeconds * time.TimestampFrequency), failures);
        }
    }

    public IReadOnlyList<EndpointState> States()
    {
        lock (_gate)
        {
            var now = time.GetTimestamp();
            return _endpoints.Select(e => _bad.TryGetValue(e, out var b) ? new EndpointState(e, now < b.Until, b.Failures) : new EndpointState(e, false, 0)).ToList();
        }
    }

    private static ulong Hash(string s) => Hash(System.Text.Encoding.UTF8.GetBytes(s));

    /// <summary>FNV-1a, finished with <see cref="Mix"/>.</summary>
    private static ulong Hash(ReadOnlySpan<byte> bytes)
    {
        var h = 14695981039346656037UL;
        foreach (var b in bytes) h = (h ^ b) * 1099511628211UL;
        return Mix(h);
    }

    /// <summary>The splitmix64 finaliser: every input bit affects every output bit.</summary>
    private static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
