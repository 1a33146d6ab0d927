using System.Net.WebSockets;
using Weft.Cloud.Directory;
using Weft.HubLink;
using Weft.Wire;
using Weft.Wire.Hub;

namespace Weft.Cloud.Hub;

/// <summary>One edge node's session on this replica: its hub socket and its ownership claim.</summary>
public sealed class NodeSession
{
    private readonly HubSocket _socket;

    public NodeSession(string node, string remote, WebSocket ws, Config.HubOptions options, TimeProvider time)
    {
        Node = node;
        Remote = remote;
        Since = time.GetUtcNow();
        Claim = new Claim(node, 0);
        _socket = new HubSocket(ws, new HubSocketOptions(options.MaxMessageBytes, options.ReadTimeout, options.WriteTimeout, options.KeepaliveInterval, options.SessionQueueLength),
            () => new HubMessage
            {
                Id = Guid.NewGuid().ToString(), Timestamp = time.GetUtcNow().ToUnixTimeMilliseconds(),
                Source = HubNames.SourceCloudHub, Group = HubNames.GroupResource, Operation = HubNames.OpKeepalive, Resource = "node",
            }, time, "node " + node);
    }

    public string Node { get; }

    public string Remote { get; }

    public DateTimeOffset Since { get; }

    public Claim Claim { get; }

    public int QueueDepth => _socket.QueueDepth;

    public bool IsClosed => _socket.IsClosed;

    public string CloseReason => _socket.CloseReason;

    /// <summary>Queues a message; false when the queue is full or the session is closed.</summary>
    public bool TrySend(HubMessage m) => _socket.TrySend(m);

    /// <summary>Sends a request and waits for the message whose parent is its id (<see cref="HubQueueFullException"/>, <see cref="HubLinkClosedException"/>).</summary>
    public Task<HubMessage> RequestAsync(HubMessage request, CancellationToken ct) => _socket.RequestAsync(request, ct);

    public void Close(string reason) => _socket.Close(reason);

    public Task RunAsync(Func<NodeSession, HubMessage, Task> onMessage, Action<ProtocolViolationException> onViolation) =>
        _socket.RunAsync(m => onMessage(this, m), onViolation);
}
