using System.Buffers;
using System.IO.Pipelines;
using System.Security.Cryptography;
using Weft.Wire;
using Weft.Wire.Pnet;

namespace Weft.P2P.Pnet;

/// <summary>
/// libp2p private networks (pnet v1, PSK): before anything else each side sends a random 24-byte nonce, then
/// every byte is XORed with XSalsa20(PSK, nonce) — our nonce for what we send, the peer's for what we receive.
/// A wrong PSK is not detected here: the peer's bytes simply decrypt to garbage, which the next layer
/// (multistream-select) rejects.
/// </summary>
public static class PnetProtector
{
    public const int NonceLength = XSalsa20.NonceLength;

    /// <summary>
    /// Exchanges nonces and returns the encrypted view of <paramref name="transport"/>. The returned pipe
    /// encrypts and decrypts in place in the transport's own buffers. Throws <see cref="TimeoutException"/>
    /// when the peer's nonce does not arrive within <paramref name="timeout"/>, and
    /// <see cref="ProtocolViolationException"/> ("pnet") when the peer closes before sending it.
    /// </summary>
    public static async Task<IDuplexPipe> ProtectAsync(IDuplexPipe transport, ReadOnlyMemory<byte> key32, TimeSpan timeout, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(transport);
        if (key32.Length != XSalsa20.KeyLength)
            throw new ArgumentException($"a pnet key is {XSalsa20.KeyLength} bytes, got {key32.Length}", nameof(key32));
        var ourNonce = RandomNumberGenerator.GetBytes(NonceLength);
        var theirNonce = new byte[NonceLength];
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        cts.CancelAfter(timeout);
        try
        {
            var flush = await transport.Output.WriteAsync(ourNonce, cts.Token).ConfigureAwait(false);
            if (flush.IsCompleted)
                throw new ProtocolViolationException("pnet", "the peer closed the connection before the nonce exchange");
            await ReadNonceAsync(transport.Input, theirNonce, cts.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (cts.IsCancellationRequested && !ct.IsCancellationRequested)
        {
            throw new TimeoutException($"pnet: the peer's nonce did not arrive within {timeout.TotalMilliseconds:0} ms (is the peer in this private network?)");
        }
        return new PnetDuplexPipe(
            new PnetReader(transport.Input, new XSalsa20(key32.Span, theirNonce)),
            new PnetWriter(transport.Output, new XSalsa20(key32.Span, ourNonce)));
    }

    private static async ValueTask ReadNonceAsync(PipeReader input, byte[] nonce, CancellationToken ct)
    {
        while (true)
        {
            var result = await input.ReadAsync(ct).ConfigureAwait(false);
            var buffer = result.Buffer;
            if (buffer.Length >= NonceLength)
            {
                buffer.Slice(0, NonceLength).CopyTo(nonce);
                input.AdvanceTo(buffer.GetPosition(NonceLength));
                return;
            }
            var got = buffer.Length;
            input.AdvanceTo(buffer.Start, buffer.End);
            if (result.IsCompleted)
            {
                throw new ProtocolViolationException("pnet",
                    $"the peer closed the connection after {got} of {NonceLength} nonce bytes (its PSK differs, or it is not in a private network)");
            }
            if (result.IsCanceled) throw new OperationCanceledException("pnet nonce read canceled");
        }
    }
}

internal sealed class PnetDuplexPipe(PipeReader input, PipeWriter output) : IDuplexPipe
{
    public PipeReader Input { get; } = input;
    public PipeWriter Output { get; } = output;
}
