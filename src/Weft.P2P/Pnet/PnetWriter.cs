using System.IO.Pipelines;
using Weft.Wire.Pnet;

namespace Weft.P2P.Pnet;

/// <summary>
/// Hands out the inner writer's buffers and encrypts what was written into them when it is committed with
/// <see cref="Advance"/>, so nothing is copied.
/// </summary>
internal sealed class PnetWriter(PipeWriter inner, XSalsa20 cipher) : PipeWriter
{
    private Memory<byte> _current;

    public override Memory<byte> GetMemory(int sizeHint = 0) => _current = inner.GetMemory(sizeHint);

    public override Span<byte> GetSpan(int sizeHint = 0) => (_current = inner.GetMemory(sizeHint)).Span;

    public override void Advance(int bytes)
    {
        if ((uint)bytes > (uint)_current.Length)
            throw new ArgumentOutOfRangeException(nameof(bytes), "cannot advance past the buffer that was handed out");
        cipher.Xor(_current.Span[..bytes]);
        _current = _current[bytes..];
        inner.Advance(bytes);
    }

    public override ValueTask<FlushResult> WriteAsync(ReadOnlyMemory<byte> source, CancellationToken cancellationToken = default)
    {
        // Encrypt straight from the caller's buffer into the transport's.
        var data = source.Span;
        while (!data.IsEmpty)
        {
            var span = inner.GetSpan(1);
            var n = Math.Min(span.Length, data.Length);
            cipher.Xor(data[..n], span);
            inner.Advance(n);
            data = data[n..];
        }
        _current = default;
        return inner.FlushAsync(cancellationToken);
    }

    // The inner writer may hand _current's memory back to its pool once flushed or completed: forget it then.
    public override ValueTask<FlushResult> FlushAsync(CancellationToken cancellationToken = default)
    {
        _current = default;
        return inner.FlushAsync(cancellationToken);
    }

    public override void CancelPendingFlush() => inner.CancelPendingFlush();

    public override void Complete(Exception? exception = null)
    {
        _current = default;
        inner.Complete(exception);
    }

    public override ValueTask CompleteAsync(Exception? exception = null)
    {
        _current = default;
        return inner.CompleteAsync(exception);
    }

    public override bool CanGetUnflushedBytes => inner.CanGetUnflushedBytes;

    public override long UnflushedBytes => inner.UnflushedBytes;
}
