namespace Weft.Cloud.Directory;

/// <summary>Who holds node <see cref="Node"/>'s session: replica <see cref="Replica"/>, whose router is at <see cref="Address"/>, since <see cref="Epoch"/> (grows with every claim).</summary>
public sealed record OwnerRecord(string Node, string Replica, Uri Address, long Epoch);

/// <summary>The directory's state: healthy, or degraded (backend unreachable; routing goes on from the cache) with the reason.</summary>
public sealed record DirectoryHealth(bool Healthy, string? Reason, DateTimeOffset Since)
{
    public static DirectoryHealth Ok(TimeProvider time) => new(true, null, time.GetUtcNow());
}

/// <summary>This replica's claim on a node; <see cref="Epoch"/> moves on when the record is written again (a renewed lease).</summary>
public sealed class Claim(string node, long epoch)
{
    private long _epoch = epoch;

    public string Node { get; } = node;

    public long Epoch
    {
        get => Interlocked.Read(ref _epoch);
        internal set => Interlocked.Exchange(ref _epoch, value);
    }

    /// <summary>False until the record is written (the backend may be down when the session opens).</summary>
    public bool Recorded => Epoch > 0;
}

/// <summary>The backend was not reachable or refused the call in time.</summary>
public sealed class DirectoryUnavailableException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// node → owning replica, shared by all replicas. Reads come from a local cache kept current by the backend's
/// watch, so routing goes on while the backend is down (then <see cref="Health"/> says degraded). Writes
/// (claims, releases, outbox) go to the backend and fail with <see cref="DirectoryUnavailableException"/>.
/// The outbox holds rest→eventbus messages until the edge acknowledges them, so they outlive the replica that
/// accepted them.
/// </summary>
public interface IOwnershipDirectory : IAsyncDisposable
{
    /// <summary>"embedded" or "etcd".</summary>
    string Backend { get; }

    DirectoryHealth Health { get; }

    /// <summary>Raised (on a background thread) when the cache learns of a new owner for a node.</summary>
    event Action<OwnerRecord>? OwnerChanged;

    /// <summary>Loads the cache and starts the watch and lease upkeep; does not fail when the backend is down (degraded instead).</summary>
    Task StartAsync(CancellationToken ct);

    /// <summary>Records this replica as the owner of <paramref name="node"/> with a new, larger epoch; remembers the node as known.</summary>
    Task<Claim> ClaimAsync(string node, CancellationToken ct);

    /// <summary>Writes a claim that failed earlier (or whose lease was lost); updates <see cref="Claim.Epoch"/>.</summary>
    Task RecordAsync(Claim claim, CancellationToken ct);

    /// <summary>Deletes the record only if it is still this claim's (same epoch); forgets the claim either way.</summary>
    Task ReleaseAsync(Claim claim, CancellationToken ct);

    /// <summary>The cached owner of a node, or null.</summary>
    OwnerRecord? Lookup(string node);

    /// <summary>True if the node has ever been claimed (so a request for it is not a 404).</summary>
    bool IsKnown(string node);

    Task PutOutboxAsync(string node, string id, byte[] data, CancellationToken ct);

    Task DeleteOutboxAsync(string node, string id, CancellationToken ct);

    Task<IReadOnlyList<KeyValuePair<string, byte[]>>> ListOutboxAsync(string node, CancellationToken ct);
}
