using System.Buffers;
using System.IO.Pipelines;
using System.Runtime.InteropServices;
using Weft.Wire.Pnet;

namespace Weft.P2P.Pnet;

/// <summary>
/// Decrypts the inner reader's bytes in place the first time they are returned. <c>_decrypted</c> counts the
/// bytes at the front of the inner buffer that are already plaintext (returned earlier but not consumed), so
/// every byte goes through the key stream exactly once and in order.
/// </summary>
internal sealed class PnetReader(PipeReader inner, XSalsa20 cipher) : PipeReader
{
    private long _decrypted;
    private ReadOnlySequence<byte> _last;

    public override ValueTask<ReadResult> ReadAsync(CancellationToken cancellationToken = default)
    {
        var pending = inner.ReadAsync(cancellationToken);
        return pending.IsCompletedSuccessfully ? new ValueTask<ReadResult>(Decrypt(pending.Result)) : Slow(pending);

        async ValueTask<ReadResult> Slow(ValueTask<ReadResult> p) => Decrypt(await p.ConfigureAwait(false));
    }

    public override bool TryRead(out ReadResult result)
    {
        if (!inner.TryRead(out var r))
        {
            result = default;
            return false;
        }
        result = Decrypt(r);
        return true;
    }

    private ReadResult Decrypt(ReadResult result)
    {
        var buffer = result.Buffer;
        if (buffer.Length > _decrypted)
        {
            foreach (var segment in buffer.Slice(_decrypted))
                cipher.Xor(MemoryMarshal.AsMemory(segment).Span);
            _decrypted = buffer.Length;
        }
        _last = buffer;
        return result;
    }

    public override void AdvanceTo(SequencePosition consumed) => AdvanceTo(consumed, consumed);

    public override void AdvanceTo(SequencePosition consumed, SequencePosition examined)
    {
        _decrypted -= _last.Slice(_last.Start, consumed).Length;
        _last = default;
        inner.AdvanceTo(consumed, examined);
    }

    public override void CancelPendingRead() => inner.CancelPendingRead();

    public override void Complete(Exception? exception = null) => inner.Complete(exception);

    public override ValueTask CompleteAsync(Exception? exception = null) => inner.CompleteAsync(exception);
}
