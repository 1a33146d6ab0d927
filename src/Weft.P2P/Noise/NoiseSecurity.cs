using System.Buffers;
using System.Diagnostics;
using System.IO.Pipelines;
using Microsoft.Extensions.Logging;
using Weft.Wire;
using Weft.Wire.Identity;
using Weft.Wire.Noise;

namespace Weft.P2P.Noise;

/// <summary>
/// libp2p Noise (<c>/noise</c>): the XX handshake over a raw connection, authenticating each side's
/// identity key, then an encrypted <see cref="SecureConnection"/>. A fresh static X25519 key is made per
/// handshake (the spec allows it; nothing is stored).
/// </summary>
public static class NoiseSecurity
{
    public const string ProtocolId = "/noise";

    /// <summary>Handshake as the dialer. <paramref name="expectedRemote"/>, when given, must match the peer's key.</summary>
    public static Task<SecureConnection> SecureOutboundAsync(IDuplexPipe transport, Ed25519PrivateKey localKey, PeerId? expectedRemote,
        NoiseOptions options, ILogger logger, CancellationToken ct)
        => HandshakeAsync(transport, localKey, initiator: true, expectedRemote, options, logger, ct);

    /// <summary>Handshake as the listener.</summary>
    public static Task<SecureConnection> SecureInboundAsync(IDuplexPipe transport, Ed25519PrivateKey localKey,
        NoiseOptions options, ILogger logger, CancellationToken ct)
        => HandshakeAsync(transport, localKey, initiator: false, expectedRemote: null, options, logger, ct);

    private static async Task<SecureConnection> HandshakeAsync(IDuplexPipe transport, Ed25519PrivateKey localKey, bool initiator,
        PeerId? expectedRemote, NoiseOptions options, ILogger logger, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(transport);
        ArgumentNullException.ThrowIfNull(localKey);
        ArgumentNullException.ThrowIfNull(options);
        var started = Stopwatch.GetTimestamp();
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(options.HandshakeTimeout);
        var token = timeout.Token;

        using var staticKey = X25519Key.Generate();
        using var hs = new HandshakeState(initiator, staticKey);
        var ourPayload = BuildPayload(localKey, staticKey.PublicKey, options.Muxers);
        try
        {
            NoiseHandshakePayload remotePayload;
            if (initiator)
            {
                await WriteMessageAsync(transport.Output, hs, ReadOnlyMemory<byte>.Empty, token).ConfigureAwait(false);
                remotePayload = ParsePayload(await ReadMessageAsync(transport.Input, hs, token).ConfigureAwait(false));
                var remote = Authenticate(remotePayload, hs.RemoteStaticKey, expectedRemote);
                await WriteMessageAsync(transport.Output, hs, ourPayload, token).ConfigureAwait(false);
                return Finish(transport, hs, remote, options.Muxers, RemoteMuxers(remotePayload), initiator, logger, started);
            }
            else
            {
                // Message 1 carries only the initiator's ephemeral key; any payload is unauthenticated and ignored.
                await ReadMessageAsync(transport.Input, hs, token).ConfigureAwait(false);
                await WriteMessageAsync(transport.Output, hs, ourPayload, token).ConfigureAwait(false);
                remotePayload = ParsePayload(await ReadMessageAsync(transport.Input, hs, token).ConfigureAwait(false));
                var remote = Authenticate(remotePayload, hs.RemoteStaticKey, expectedRemote: null);
                return Finish(transport, hs, remote, RemoteMuxers(remotePayload), options.Muxers, initiator, logger, started);
            }
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested && !ct.IsCancellationRequested)
        {
            throw new TimeoutException($"Noise handshake did not finish within {options.HandshakeTimeout.TotalMilliseconds:0} ms");
        }
    }

    private static SecureConnection Finish(IDuplexPipe transport, HandshakeState hs, PublicKey remoteKey,
        IReadOnlyList<string> initiatorMuxers, IReadOnlyList<string> responderMuxers, bool initiator, ILogger logger, long started)
    {
        var muxer = NoiseExtensions.SelectMuxer(initiatorMuxers, responderMuxers, out var disjoint);
        if (disjoint)
        {
            throw new ProtocolViolationException("noise",
                $"no stream muxer in common: the dialer offers [{string.Join(", ", initiatorMuxers)}], the listener offers [{string.Join(", ", responderMuxers)}]");
        }
        var (send, receive) = hs.Split();
        var peer = remoteKey.ToPeerId();
        if (logger.IsEnabled(LogLevel.Debug))
        {
            Log.HandshakeCompleted(logger, initiator ? "dialer" : "listener", peer.ToString(),
                (long)Stopwatch.GetElapsedTime(started).TotalMilliseconds, muxer ?? "none");
        }
        return new SecureConnection(transport, send, receive, peer, remoteKey, muxer, logger);
    }

    private static byte[] BuildPayload(Ed25519PrivateKey localKey, ReadOnlySpan<byte> staticKey, IReadOnlyList<string> muxers)
    {
        var payload = new NoiseHandshakePayload
        {
            IdentityKey = localKey.PublicKey.ToProtobuf(),
            IdentitySignature = localKey.Sign(NoiseHandshakePayload.StaticKeySignedData(staticKey)),
            Extensions = muxers.Count == 0 ? null : new NoiseExtensions { StreamMuxers = muxers },
        };
        return payload.ToProtobuf();
    }

    private static NoiseHandshakePayload ParsePayload(byte[] bytes) => NoiseHandshakePayload.FromProtobuf(bytes);

    private static IReadOnlyList<string> RemoteMuxers(NoiseHandshakePayload payload) => payload.Extensions?.StreamMuxers ?? [];

    /// <summary>Checks that the identity key signed the static key it was sent with, and is the peer we expected.</summary>
    private static PublicKey Authenticate(NoiseHandshakePayload payload, ReadOnlySpan<byte> remoteStaticKey, PeerId? expectedRemote)
    {
        PublicKey key;
        try
        {
            key = PublicKey.FromProtobuf(payload.IdentityKey);
        }
        catch (ProtocolViolationException e)
        {
            throw new ProtocolViolationException("noise", $"the peer's identity key is unusable: {e.Detail}", e);
        }
        bool valid;
        try
        {
            valid = key.Verify(NoiseHandshakePayload.StaticKeySignedData(remoteStaticKey), payload.IdentitySignature);
        }
        catch (Exception e) when (e is ProtocolViolationException or System.Security.Cryptography.CryptographicException or ArgumentException)
        {
            valid = false;
        }
        if (!valid)
            throw new ProtocolViolationException("noise", $"the signature of {key.ToPeerId()} over its Noise static key is invalid");
        if (expectedRemote is not null)
        {
            var actual = key.ToPeerId();
            if (!actual.Equals(expectedRemote))
                throw new ProtocolViolationException("noise", $"peer id mismatch: expected {expectedRemote}, but the peer is {actual}");
        }
        return key;
    }

    private static async ValueTask WriteMessageAsync(PipeWriter output, HandshakeState hs, ReadOnlyMemory<byte> payload, CancellationToken ct)
    {
        var length = payload.Length + HandshakeState.MessageOverhead(hs.MessageIndex);
        var span = output.GetSpan(NoiseFrame.HeaderLength + length);
        var written = hs.WriteMessage(payload.Span, span[NoiseFrame.HeaderLength..]);
        NoiseFrame.WriteHeader(span, written);
        output.Advance(NoiseFrame.HeaderLength + written);
        var flush = await output.FlushAsync(ct).ConfigureAwait(false);
        if (flush.IsCompleted)
            throw new ProtocolViolationException("noise", $"the peer closed the connection during the handshake (before message {hs.MessageIndex + 1})");
    }

    /// <summary>Reads and processes the next handshake message; returns its payload.</summary>
    private static async ValueTask<byte[]> ReadMessageAsync(PipeReader input, HandshakeState hs, CancellationToken ct)
    {
        var number = hs.MessageIndex + 1;
        while (true)
        {
            var result = await input.ReadAsync(ct).ConfigureAwait(false);
            var buffer = result.Buffer;
            if (NoiseFrame.TryRead(ref buffer, out var message))
            {
                // The message is copied and measured before AdvanceTo: after it the segments belong to the pipe again.
                var length = (int)message.Length;
                var bytes = ArrayPool<byte>.Shared.Rent(length);
                try
                {
                    message.CopyTo(bytes);
                    input.AdvanceTo(buffer.Start);
                    var payload = new byte[length];
                    var n = hs.ReadMessage(bytes.AsSpan(0, length), payload);
                    return payload.AsSpan(0, n).ToArray();
                }
                finally
                {
                    ArrayPool<byte>.Shared.Return(bytes);
                }
            }
            var pending = buffer.Length;
            input.AdvanceTo(buffer.Start, buffer.End);
            if (result.IsCompleted)
            {
                throw new ProtocolViolationException("noise", pending == 0
                    ? $"the peer closed the connection during the handshake (before message {number})"
                    : $"the peer closed the connection in the middle of handshake message {number} ({pending} bytes received)");
            }
            if (result.IsCanceled) throw new OperationCanceledException("handshake read canceled");
        }
    }
}
