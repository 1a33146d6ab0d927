using System.Text;
using Microsoft.Extensions.Logging;
using Weft.Cloud.Config;
using Weft.Cloud.Directory;
using Weft.Cloud.Hub;
using Weft.Wire;
using Weft.Wire.Hub;

namespace Weft.Cloud.Router;

/// <summary>What a rest→eventbus request got.</summary>
public enum DeliveryOutcome
{
    /// <summary>The edge acknowledged that its MQTT broker has the message.</summary>
    Delivered,

    /// <summary>Stored in the outbox; it is sent again on every new session of the node (on any replica) until acknowledged.</summary>
    Queued,

    /// <summary>Neither delivered nor stored (the outbox was unreachable and the edge did not acknowledge in time).</summary>
    NotQueued,

    /// <summary>Too many messages already wait for this node.</summary>
    Full,
}

/// <summary>
/// rest→eventbus delivery, at least once: a message is written to the outbox (the directory backend, so it
/// outlives this replica) before it is sent; the edge acknowledges once its broker has it (PUBACK), which
/// deletes it from the outbox; the edge drops repeats by message id. Unacknowledged messages are sent again
/// every <see cref="EventBusOptions.ResendInterval"/> on the live session and in full on every new session.
/// </summary>
public sealed class EventDelivery
{
    private readonly IOwnershipDirectory _directory;
    private readonly EventBusOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger _log;
    private readonly Dictionary<string, NodeState> _nodes = new(StringComparer.Ordinal);
    private readonly Lock _gate = new();

    public EventDelivery(IOwnershipDirectory directory, EventBusOptions options, TimeProvider time, ILogger log)
    {
        _directory = directory;
        _options = options;
        _time = time;
        _log = log;
    }

    private sealed class Pending(HubMessage message)
    {
        public HubMessage Message { get; } = message;
        public TaskCompletionSource Acked { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public long LastSent { get; set; }
    }

    private sealed class NodeState
    {
        public Dictionary<string, Pending> Pending { get; } = new(StringComparer.Ordinal);
        public HashSet<string> Delivered { get; } = new(StringComparer.Ordinal);
        public Queue<string> DeliveredOrder { get; } = new();
    }

    /// <summary>Messages waiting for an acknowledgement on this replica, all nodes.</summary>
    public int PendingCount
    {
        get { lock (_gate) return _nodes.Values.Sum(n => n.Pending.Count); }
    }

    /// <summary>Builds the publish message KubeEdge's edge expects: resource = topic, content = the body as a string (base64 with type "base64" when it is not UTF-8).</summary>
    public HubMessage BuildPublish(string id, string topic, byte[] body)
    {
        string content;
        string? type = null;
        try
        {
            content = new UTF8Encoding(false, true).GetString(body);
        }
        catch (DecoderFallbackException)
        {
            content = Convert.ToBase64String(body);
            type = "base64";
        }
        return new HubMessage
        {
            Id = id, Timestamp = _time.GetUtcNow().ToUnixTimeMilliseconds(), Type = type,
            Source = HubNames.SourceRouterEventBus, Group = HubNames.GroupUser, Operation = HubNames.OpPublish, Resource = topic,
            Content = System.Text.Json.JsonSerializer.SerializeToElement(content),
        };
    }

    /// <summary>
    /// Delivers on the local session <paramref name="session"/> (null: the node has no session here; the message is
    /// only queued). Waits for the acknowledgement until <paramref name="deadline"/>.
    /// </summary>
    public async Task<(DeliveryOutcome Outcome, bool Duplicate)> PublishAsync(string node, HubMessage message, NodeSession? session, CancellationToken deadline)
    {
        Pending p;
        var fresh = false;
        lock (_gate)
        {
            var state = State(node);
            if (state.Delivered.Contains(message.Id)) return (DeliveryOutcome.Delivered, true);
            if (!state.Pending.TryGetValue(message.Id, out p!))
            {
                if (state.Pending.Count >= _options.MaxQueuedPerNode) return (DeliveryOutcome.Full, false);
                p = new Pending(message);
                state.Pending[message.Id] = p;
                fresh = true;
            }
        }
        var stored = true;
        if (fresh)
        {
            try
            {
                await _directory.PutOutboxAsync(node, message.Id, message.ToJson(), deadline).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is DirectoryUnavailableException or IOException or UnauthorizedAccessException or OperationCanceledException)
            {
                stored = false;
                Log.OutboxFailed(_log, node, ex.Message);
            }
            if (session is not null) Send(session, p);
        }
        try
        {
            await p.Acked.Task.WaitAsync(deadline).ConfigureAwait(false);
            return (DeliveryOutcome.Delivered, false);
        }
        catch (OperationCanceledException)
        {
            if (stored || p.Acked.Task.IsCompleted) return (p.Acked.Task.IsCompleted ? DeliveryOutcome.Delivered : DeliveryOutcome.Queued, false);
            lock (_gate)
            {
                // Not stored and not acknowledged: forget it so the answer "not queued" stays true.
                if (_nodes.TryGetValue(node, out var s) && s.Pending.TryGetValue(message.Id, out var cur) && cur == p) s.Pending.Remove(message.Id);
            }
            return (DeliveryOutcome.NotQueued, false);
        }
    }

    /// <summary>Stores a message for a node that has no session here (or whose owner could not be reached).</summary>
    public async Task<DeliveryOutcome> QueueOnlyAsync(string node, HubMessage message, CancellationToken ct)
    {
        try
        {
            await _directory.PutOutboxAsync(node, message.Id, message.ToJson(), ct).ConfigureAwait(false);
            return DeliveryOutcome.Queued;
        }
        catch (Exception ex) when (ex is DirectoryUnavailableException or IOException or UnauthorizedAccessException)
        {
            Log.OutboxFailed(_log, node, ex.Message);
            return DeliveryOutcome.NotQueued;
        }
    }

    /// <summary>The edge acknowledged <paramref name="id"/>.</summary>
    public void OnAck(string node, string id)
    {
        Pending? p;
        lock (_gate)
        {
            var state = State(node);
            state.Pending.Remove(id, out p);
            if (state.Delivered.Add(id))
            {
                state.DeliveredOrder.Enqueue(id);
                while (state.DeliveredOrder.Count > _options.DedupWindow) state.Delivered.Remove(state.DeliveredOrder.Dequeue());
            }
        }
        p?.Acked.TrySetResult();
        _ = DeleteQuietlyAsync(node, id);
    }

    private async Task DeleteQuietlyAsync(string node, string id)
    {
        try
        {
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            await _directory.DeleteOutboxAsync(node, id, cts.Token).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is DirectoryUnavailableException or IOException or OperationCanceledException or UnauthorizedAccessException)
        {
            // Left in the outbox: the next session sends it again and the edge answers the repeat without publishing it twice.
            Log.OutboxFailed(_log, node, ex.Message);
        }
    }

    /// <summary>A session opened: load the node's outbox and send everything not yet acknowledged.</summary>
    public async Task OnSessionOpenedAsync(NodeSession session, CancellationToken ct)
    {
        IReadOnlyList<KeyValuePair<string, byte[]>> stored;
        try
        {
            stored = await _directory.ListOutboxAsync(session.Node, ct).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is DirectoryUnavailableException or IOException or UnauthorizedAccessException)
        {
            Log.OutboxFailed(_log, session.Node, ex.Message);
            stored = [];
        }
        var toSend = new List<Pending>();
        lock (_gate)
        {
            var state = State(session.Node);
            foreach (var (id, json) in stored)
            {
                if (state.Pending.ContainsKey(id) || state.Delivered.Contains(id)) continue;
                try
                {
                    state.Pending[id] = new Pending(HubMessage.ReadFrame(json));
                }
                catch (ProtocolViolationException ex)
                {
                    Log.OutboxFailed(_log, session.Node, $"stored message {id} is unreadable: {ex.Message}");
                }
            }
            toSend.AddRange(state.Pending.Values);
        }
        foreach (var p in toSend) Send(session, p);
    }

    /// <summary>Sends again what has waited longer than the resend interval on the live sessions.</summary>
    public void Resend(Func<string, NodeSession?> sessionOf)
    {
        var now = _time.GetTimestamp();
        var due = new List<(NodeSession, Pending)>();
        lock (_gate)
        {
            foreach (var (node, state) in _nodes)
            {
                if (state.Pending.Count == 0 || sessionOf(node) is not { } s) continue;
                foreach (var p in state.Pending.Values)
                    if (_time.GetElapsedTime(p.LastSent, now) >= _options.ResendInterval) due.Add((s, p));
            }
        }
        foreach (var (s, p) in due) Send(s, p);
    }

    /// <summary>Forgets the in-memory state of a node whose session moved elsewhere (its outbox stays).</summary>
    public void Forget(string node)
    {
        lock (_gate)
        {
            if (_nodes.TryGetValue(node, out var s) && s.Pending.Count == 0) _nodes.Remove(node);
        }
    }

    private void Send(NodeSession s, Pending p)
    {
        p.LastSent = _time.GetTimestamp();
        s.TrySend(p.Message);
    }

    private NodeState State(string node)
    {
        if (!_nodes.TryGetValue(node, out var s)) _nodes[node] = s = new NodeState();
        return s;
    }
}
