using System.Buffers;

namespace Weft.P2P.Yamux;

/// <summary>
/// The buffers behind every yamux stream's pipes: two block sizes (small for chatty streams, large for bulk data),
/// each kept on a bounded free list shared by all sessions. <see cref="ArrayPool{T}.Shared"/> keeps only a few
/// arrays per core and size, fewer than a fast stream holds in flight, so bulk transfers through it allocate.
/// </summary>
internal sealed class YamuxBufferPool : MemoryPool<byte>
{
    /// <summary>Blocks for requests up to this size come from the small list.</summary>
    public const int SmallBlockSize = 4 * 1024;

    /// <summary>The largest block; requests above it are served by the array pool by the pipe itself.</summary>
    public const int LargeBlockSize = 64 * 1024;

    private const int MaxRetainedSmallBlocks = 1024;   // 4 MiB
    private const int MaxRetainedLargeBlocks = 256;    // 16 MiB

    public static new readonly YamuxBufferPool Shared = new();

    private readonly FreeList _small = new(SmallBlockSize, MaxRetainedSmallBlocks);
    private readonly FreeList _large = new(LargeBlockSize, MaxRetainedLargeBlocks);

    public override int MaxBufferSize => LargeBlockSize;

    public override IMemoryOwner<byte> Rent(int minBufferSize = -1)
    {
        if (minBufferSize > LargeBlockSize) throw new ArgumentOutOfRangeException(nameof(minBufferSize));
        return minBufferSize <= SmallBlockSize ? _small.Rent() : _large.Rent();
    }

    protected override void Dispose(bool disposing) { }

    private sealed class FreeList(int blockSize, int capacity)
    {
        private readonly Block[] _items = new Block[capacity];
        private int _count;

        public Block Rent()
        {
            lock (_items)
            {
                if (_count > 0)
                {
                    var b = _items[--_count];
                    _items[_count] = null!;
                    b.Rented = true;
                    return b;
                }
            }
            return new Block(this, GC.AllocateUninitializedArray<byte>(blockSize)) { Rented = true };
        }

        public void Return(Block block)
        {
            lock (_items)
            {
                if (!block.Rented) return;
                block.Rented = false;
                if (_count < _items.Length) _items[_count++] = block;
            }
        }
    }

    private sealed class Block(FreeList owner, byte[] array) : IMemoryOwner<byte>
    {
        public bool Rented;

        public Memory<byte> Memory => array;

        public void Dispose() => owner.Return(this);
    }
}
