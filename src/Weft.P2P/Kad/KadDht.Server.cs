using Weft.P2P.Host;
using Weft.P2P.IO;
using Weft.Wire.Identity;
using Weft.Wire.Kad;
using ProtocolViolationException = Weft.Wire.ProtocolViolationException;

namespace Weft.P2P.Kad;

/// <summary>The server side: answering requests on inbound streams (server mode only).</summary>
public sealed partial class KadDht
{
    private const string Codec = "kad";

    private static readonly byte[] PublicKeyPrefix = "/pk/"u8.ToArray();

    /// <summary>
    /// Answers requests on one stream, one after another (the spec lets a peer send several), until the peer
    /// closes it, <see cref="KadOptions.MaxRequestsPerStream"/> were answered or none came for
    /// <see cref="KadOptions.InboundIdleTimeout"/>. A malformed request resets the stream only.
    /// </summary>
    private async Task HandleStreamAsync(IncomingStream s, CancellationToken ct)
    {
        var from = s.Connection.RemotePeer;
        for (var i = 0; i < Options.MaxRequestsPerStream; i++)
        {
            KadMessage request;
            using (var idle = CancellationTokenSource.CreateLinkedTokenSource(ct))
            {
                idle.CancelAfter(Options.InboundIdleTimeout);
                try
                {
                    request = (await s.Stream.Input.ReadAsync<KadMessage?>(KadMessage.TryRead, idle.Token).ConfigureAwait(false))!;
                }
                catch (EndOfStreamException)
                {
                    return;
                }
                catch (OperationCanceledException) when (!ct.IsCancellationRequested)
                {
                    return;
                }
                catch (ProtocolViolationException ex)
                {
                    Malformed(s, from, ex);
                    return;
                }
            }
            KadMessage? answer;
            try
            {
                answer = Answer(request, s.Connection);
            }
            catch (ProtocolViolationException ex)
            {
                Malformed(s, from, ex);
                return;
            }
            _requestsIn.Add(1, new KeyValuePair<string, object?>("type", request.Type.ToString()));
            if (answer is null) continue;
            answer.WriteLengthPrefixedTo(s.Stream.Output);
            await s.Stream.Output.FlushAsync(ct).ConfigureAwait(false);
        }
    }

    private void Malformed(IncomingStream s, PeerId from, ProtocolViolationException ex)
    {
        _requestsIn.Add(1, new KeyValuePair<string, object?>("type", "malformed"));
        Log.BadRequest(_log, from.ToString(), ex.Message);
        s.Stream.Reset();
    }

    /// <summary>The answer to one request (null: none is sent, as for ADD_PROVIDER). Throws <see cref="ProtocolViolationException"/> for a request that breaks the spec.</summary>
    private KadMessage? Answer(KadMessage request, Connection conn)
    {
        var from = conn.RemotePeer;
        var now = _host.Time.GetUtcNow();
        switch (request.Type)
        {
            case KadMessageType.FindNode:
            {
                var key = RequireKey(request);
                var closer = Closer(key, from).ToList();
                if (PeerId.TryFromBytes(key, out var wanted) && wanted != from)
                {
                    // Known but maybe not in the table (a client-mode peer): name it first, as js does.
                    if (wanted == _host.PeerId) closer.Insert(0, new KadPeer(wanted, Shareable(_host.AdvertisedAddresses), KadConnectionType.Connected));
                    else if (closer.All(p => p.Id != wanted) && Describe(wanted) is { Addresses.Count: > 0 } known) closer.Insert(0, known);
                }
                return new KadMessage { Type = KadMessageType.FindNode, Key = key, ClusterLevelRaw = request.ClusterLevelRaw, CloserPeers = closer };
            }
            case KadMessageType.GetValue:
            {
                var key = RequireKey(request);
                var record = _records.Get(key, now) ?? PublicKeyRecord(key, now);
                return new KadMessage { Type = KadMessageType.GetValue, Key = key, ClusterLevelRaw = request.ClusterLevelRaw, Record = record, CloserPeers = Closer(key, from).ToList() };
            }
            case KadMessageType.PutValue:
            {
                var record = request.Record ?? throw new ProtocolViolationException(Codec, "PUT_VALUE without a record");
                if (request.Key is { } k && !k.AsSpan().SequenceEqual(record.Key)) throw new ProtocolViolationException(Codec, "PUT_VALUE key differs from its record's key");
                if (Options.Validators.Validate(record.Key, record.Value) is { } why)
                {
                    _rejected.Add(1, new KeyValuePair<string, object?>("reason", "invalid_record"));
                    throw new ProtocolViolationException(Codec, "record refused: " + why);
                }
                var stored = record with { TimeReceived = KadRecord.FormatTime(now) };
                if (_records.Get(record.Key, now) is { } existing && Options.Validators.Select(record.Key, [existing.Value, record.Value]) == 0
                    && !existing.Value.AsSpan().SequenceEqual(record.Value))
                {
                    stored = existing; // ours ranks higher: keep it (and still echo, as the spec asks)
                }
                if (!_records.Put(stored, now))
                {
                    _rejected.Add(1, new KeyValuePair<string, object?>("reason", "store_full"));
                    throw new ProtocolViolationException(Codec, "record store is full");
                }
                return request;
            }
            case KadMessageType.AddProvider:
            {
                var key = RequireContentKey(request);
                foreach (var p in request.ProviderPeers)
                {
                    if (p.Id != from)
                    {
                        _rejected.Add(1, new KeyValuePair<string, object?>("reason", "provider_not_sender"));
                        Log.Refused(_log, from.ToString(), $"ADD_PROVIDER for another peer {p.Id}");
                        continue;
                    }
                    var addrs = Shareable(p.Addresses);
                    if (_providers.Add(key, from, addrs, now) is { } full)
                    {
                        _rejected.Add(1, new KeyValuePair<string, object?>("reason", "provider_store_full"));
                        Log.Refused(_log, from.ToString(), $"provider store limit reached ({full})");
                        continue;
                    }
                    if (addrs.Count > 0) _host.Peers.AddAddresses(from, addrs, now);
                }
                return null;
            }
            case KadMessageType.GetProviders:
            {
                var key = RequireContentKey(request);
                return new KadMessage
                {
                    Type = KadMessageType.GetProviders,
                    Key = request.Key,
                    ClusterLevelRaw = request.ClusterLevelRaw,
                    ProviderPeers = _providers.Get(key, now).Take(Options.BucketSize).Select(p => ProviderPeer(p, now)).ToList(),
                    CloserPeers = Closer(key.Multihash.ToArray(), from).ToList(),
                };
            }
            case KadMessageType.Ping:
                return request;
            default:
                throw new ProtocolViolationException(Codec, $"unknown message type {(int)request.Type}");
        }
    }

    private static byte[] RequireKey(KadMessage m) =>
        m.Key is { Length: > 0 } k ? k : throw new ProtocolViolationException(Codec, $"{m.Type} without a key");

    private static ContentKey RequireContentKey(KadMessage m) =>
        ContentKey.TryFromWire(RequireKey(m), out var key) ? key : throw new ProtocolViolationException(Codec, $"{m.Type} key is not a multihash or CID");

    /// <summary>The k peers of our table closest to <paramref name="key"/> with addresses to give, never the asker.</summary>
    private IEnumerable<KadPeer> Closer(byte[] key, PeerId asker) =>
        Table.Closest(KadId.FromKey(key), Options.BucketSize, p => p == asker).Select(e => Describe(e.Peer)).Where(p => p.Addresses.Count > 0);

    /// <summary>A /pk/ record built from a public key we know (identify, or inlined in an Ed25519 peer ID).</summary>
    private KadRecord? PublicKeyRecord(byte[] key, DateTimeOffset now)
    {
        if (!key.AsSpan().StartsWith(PublicKeyPrefix) || !PeerId.TryFromBytes(key.AsSpan(PublicKeyPrefix.Length), out var peer)) return null;
        var pk = peer == _host.PeerId ? _host.Options.Key.PublicKey : _host.Peers.Get(peer)?.PublicKey ?? peer.TryExtractPublicKey();
        return pk is null ? null : new KadRecord { Key = key, Value = pk.ToProtobuf(), TimeReceived = KadRecord.FormatTime(now) };
    }
}
