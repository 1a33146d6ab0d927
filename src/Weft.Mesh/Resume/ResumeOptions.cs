namespace Weft.Mesh.Resume;

/// <summary>Every limit and timeout of the resumable tunnel (Weft's <c>modules.edgeTunnel.resume</c>).</summary>
public sealed record ResumeOptions
{
    /// <summary>Turn the layer off: proxied TCP connections use the plain EdgeMesh tunnel (and die with their path).</summary>
    public bool Enable { get; init; } = true;

    /// <summary>
    /// Bytes one direction of one connection may have sent but not yet had acknowledged. When full, the local socket
    /// is not read any more until acknowledgements arrive (backpressure), so this is also the most a path failure can
    /// cost to resend.
    /// </summary>
    public int ResendBufferBytes { get; init; } = 4 * 1024 * 1024;

    /// <summary>The same bound over every connection to one peer together.</summary>
    public long ResendBufferBytesPerPeer { get; init; } = 64L * 1024 * 1024;

    /// <summary>How long a connection whose path died waits to be resumed on another before both ends reset it.</summary>
    public TimeSpan Grace { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>A receiver acknowledges at least this often while data flows...</summary>
    public TimeSpan AckInterval { get; init; } = TimeSpan.FromMilliseconds(10);

    /// <summary>...and after at most this many bytes.</summary>
    public int AckEveryBytes { get; init; } = 256 * 1024;

    /// <summary>Reading the other side's hello or welcome.</summary>
    public TimeSpan HandshakeTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>First wait between attempts to re-attach after a path died (doubles up to <see cref="MaxReattachDelay"/>).</summary>
    public TimeSpan MinReattachDelay { get; init; } = TimeSpan.FromMilliseconds(20);

    public TimeSpan MaxReattachDelay { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>How often a connection on a relayed path checks for a better one (a direct path after a hole punch) to move to.</summary>
    public TimeSpan MigrateCheckInterval { get; init; } = TimeSpan.FromMilliseconds(250);

    /// <summary>Resumable connections served or opened at once, all peers.</summary>
    public int MaxSessions { get; init; } = 10240;

    /// <summary>...and per peer.</summary>
    public int MaxSessionsPerPeer { get; init; } = 1024;
}
