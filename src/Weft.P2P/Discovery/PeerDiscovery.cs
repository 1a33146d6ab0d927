using System.Runtime.CompilerServices;
using System.Threading.Channels;
using Weft.Wire.Identity;
using Weft.Wire.Multiformats;

namespace Weft.P2P.Discovery;

/// <summary>How a peer was found.</summary>
public enum DiscoverySource
{
    /// <summary>Multicast DNS on a local network.</summary>
    Mdns,

    /// <summary>A provider of the rendezvous key in the DHT.</summary>
    Rendezvous,
}

/// <summary>A peer found by a discovery service: its ID, the addresses it gave (without /p2p/), how and when.</summary>
public sealed record PeerDiscovery(PeerId Peer, IReadOnlyList<Multiaddr> Addresses, DiscoverySource Source, DateTimeOffset At);

/// <summary>A service that finds peers and says so once per new peer (or when a peer's addresses change).</summary>
public interface IPeerDiscovery
{
    /// <summary>Raised from the service's own task; handlers must not block.</summary>
    event Action<PeerDiscovery>? Discovered;
}

public static class PeerDiscoveryExtensions
{
    /// <summary>Largest backlog <see cref="WatchAsync"/> keeps for a slow reader; past it the oldest discovery is dropped.</summary>
    public const int WatchBacklog = 1024;

    /// <summary>
    /// The discoveries made from now on, as an async stream that ends when <paramref name="ct"/> is cancelled.
    /// A reader that falls more than <see cref="WatchBacklog"/> behind loses the oldest ones.
    /// </summary>
    public static async IAsyncEnumerable<PeerDiscovery> WatchAsync(this IPeerDiscovery source, [EnumeratorCancellation] CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(source);
        var channel = Channel.CreateBounded<PeerDiscovery>(new BoundedChannelOptions(WatchBacklog) { FullMode = BoundedChannelFullMode.DropOldest, SingleReader = true });
        void On(PeerDiscovery d) => channel.Writer.TryWrite(d);
        source.Discovered += On;
        try
        {
            while (true)
            {
                PeerDiscovery item;
                try
                {
                    item = await channel.Reader.ReadAsync(ct).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    yield break;
                }
                yield return item;
            }
        }
        finally
        {
            source.Discovered -= On;
        }
    }
}
