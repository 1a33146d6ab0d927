using Microsoft.Extensions.Logging;
using Weft.P2P.Host;
using Weft.P2P.IO;
using Weft.Wire;
using Weft.Wire.Identify;
using Weft.Wire.Identity;

namespace Weft.P2P.Identify;

/// <summary>
/// identify and identify push (/ipfs/id/1.0.0, /ipfs/id/push/1.0.0): asks every new connection's peer
/// who it is, answers the same question, and pushes our changes to connected peers.
/// </summary>
public sealed partial class IdentifyService
{
    private readonly Libp2pHost _host;
    private readonly ILogger _log;
    private long _recordSeq;

    internal IdentifyService(Libp2pHost host)
    {
        _host = host;
        _log = host.Loggers.CreateLogger("Weft.P2P.Identify");
        _recordSeq = host.Time.GetUtcNow().ToUnixTimeMilliseconds() * 1000;
        host.Handle(IdentifyMessage.ProtocolId, AnswerAsync);
        host.Handle(IdentifyMessage.PushProtocolId, ReceivePushAsync);
    }

    /// <summary>Our identify message as <paramref name="conn"/>'s peer should see it.</summary>
    public IdentifyMessage Build(Connection? conn)
    {
        var addrs = _host.AdvertisedAddresses;
        var record = new PeerRecord(_host.PeerId, (ulong)Interlocked.Increment(ref _recordSeq), addrs);
        return new IdentifyMessage
        {
            ProtocolVersion = _host.Options.ProtocolVersion,
            AgentVersion = _host.Options.AgentVersion,
            PublicKey = _host.Options.Key.PublicKey.ToProtobuf(),
            ListenAddrs = addrs,
            ObservedAddr = conn?.RemoteAddress,
            Protocols = _host.Protocols,
            SignedPeerRecord = record.Seal(_host.Options.Key).ToProtobuf(),
        };
    }

    private async Task AnswerAsync(IncomingStream s, CancellationToken ct)
    {
        await s.Stream.Output.WriteLengthPrefixedAsync(Build(s.Connection).ToProtobuf(), ct).ConfigureAwait(false);
        await s.Stream.Output.CompleteAsync().ConfigureAwait(false);
    }

    private async Task ReceivePushAsync(IncomingStream s, CancellationToken ct)
    {
        var bytes = await s.Stream.Input.ReadLengthPrefixedAsync(IdentifyMessage.MaxMessageLength, "identify", ct).ConfigureAwait(false);
        var msg = IdentifyMessage.FromProtobuf(bytes);
        Apply(s.Connection, msg, push: true);
    }

    /// <summary>Runs identify on a new connection; the result lands in the peer store and <see cref="Connection.Identified"/>.</summary>
    internal async Task IdentifyAsync(Connection conn, CancellationToken ct)
    {
        try
        {
            using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
            cts.CancelAfter(_host.Options.Timeouts.Identify);
            var stream = await conn.OpenStreamAsync(IdentifyMessage.ProtocolId, cts.Token).ConfigureAwait(false);
            await using (stream.ConfigureAwait(false))
            {
                await stream.Output.CompleteAsync().ConfigureAwait(false);
                var bytes = await stream.Input.ReadLengthPrefixedAsync(IdentifyMessage.MaxMessageLength, "identify", cts.Token).ConfigureAwait(false);
                var msg = IdentifyMessage.FromProtobuf(bytes);
                Apply(conn, msg, push: false);
                conn.SetIdentified(msg);
            }
        }
        catch (Exception ex)
        {
            LogFailed(_log, conn.RemotePeer.ToString(), ex.Message);
            conn.SetIdentified(null);
        }
    }

    private void Apply(Connection conn, IdentifyMessage msg, bool push)
    {
        if (msg.PublicKey is not null)
        {
            var key = PublicKey.FromProtobuf(msg.PublicKey);
            if (!conn.RemotePeer.Matches(key))
                throw new ProtocolViolationException("identify", $"public key does not match peer {conn.RemotePeer}");
        }
        _host.Peers.Update(conn.RemotePeer, p => p with
        {
            Addresses = push && msg.ListenAddrs.Count == 0 ? p.Addresses : msg.ListenAddrs.Select(a => a.WithoutPeerId()).Concat(p.Addresses).Distinct().ToList(),
            Protocols = push && msg.Protocols.Count == 0 ? p.Protocols : msg.Protocols,
            AgentVersion = msg.AgentVersion ?? p.AgentVersion,
            ProtocolVersion = msg.ProtocolVersion ?? p.ProtocolVersion,
            PublicKey = conn.RemotePublicKey,
            ObservedUs = msg.ObservedAddr ?? p.ObservedUs,
            Updated = _host.Time.GetUtcNow(),
        });
    }

    /// <summary>Our protocols or addresses changed: tell every identified peer (identify push).</summary>
    public void OnLocalChange()
    {
        if (_host.ConnectionCount == 0) return;
        foreach (var conn in _host.Connections)
            _ = Task.Run(() => PushAsync(conn, CancellationToken.None));
    }

    public async Task PushAsync(Connection conn, CancellationToken ct)
    {
        try
        {
            using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
            cts.CancelAfter(_host.Options.Timeouts.Identify);
            var stream = await conn.OpenStreamAsync(IdentifyMessage.PushProtocolId, cts.Token).ConfigureAwait(false);
            await using (stream.ConfigureAwait(false))
            {
                await stream.Output.WriteLengthPrefixedAsync(Build(conn).ToProtobuf(), cts.Token).ConfigureAwait(false);
                await stream.Output.CompleteAsync().ConfigureAwait(false);
            }
        }
        catch (Exception ex)
        {
            LogFailed(_log, conn.RemotePeer.ToString(), "push: " + ex.Message);
        }
    }

    [LoggerMessage(1, LogLevel.Debug, "Identify with {Peer} failed: {Error}")]
    private static partial void LogFailed(ILogger logger, string peer, string error);
}
