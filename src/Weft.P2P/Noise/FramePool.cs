using System.Buffers;
using Weft.Wire.Noise;

namespace Weft.P2P.Noise;

/// <summary>
/// Memory for the plaintext pipes, in blocks whose usable length is a multiple of the largest frame payload
/// (65519 bytes). A pipe fills its blocks completely, so full frames line up with blocks: the outbound pump
/// encrypts straight from a block without first copying a frame that would straddle two, and the inbound pump
/// decrypts each full frame into exactly one block.
/// </summary>
internal sealed class FramePool : MemoryPool<byte>
{
    public static readonly FramePool Instance = new();

    private const int Unit = NoiseFrame.MaxPlaintextLength;

    public override int MaxBufferSize => 16 * Unit;

    public override IMemoryOwner<byte> Rent(int minBufferSize = -1)
    {
        var units = Math.Max(1, (Math.Max(minBufferSize, 1) + Unit - 1) / Unit);
        return new Block(units * Unit);
    }

    protected override void Dispose(bool disposing)
    {
    }

    private sealed class Block(int length) : IMemoryOwner<byte>
    {
        private byte[]? _array = ArrayPool<byte>.Shared.Rent(length);

        public Memory<byte> Memory => (_array ?? throw new ObjectDisposedException(nameof(Block))).AsMemory(0, length);

        public void Dispose()
        {
            var array = Interlocked.Exchange(ref _array, null);
            if (array is not null) ArrayPool<byte>.Shared.Return(array);
        }
    }
}
