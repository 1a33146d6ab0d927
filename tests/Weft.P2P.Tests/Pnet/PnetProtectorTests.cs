using System.Buffers;
using System.Diagnostics;
using System.IO.Pipelines;
using Weft.P2P.Pnet;
using Weft.P2P.Transport;
using Weft.Wire;
using Weft.Wire.Pnet;

namespace Weft.P2P.Tests.Pnet;

public class PnetProtectorTests
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(10);
    private static readonly byte[] Key = Enumerable.Range(1, 32).Select(i => (byte)i).ToArray();

    private static async Task<(IDuplexPipe A, IDuplexPipe B)> ProtectedPairAsync(byte[]? keyA = null, byte[]? keyB = null)
    {
        var (a, b) = DuplexPipePair.Create();
        var pa = PnetProtector.ProtectAsync(a, keyA ?? Key, Deadline, default);
        var pb = PnetProtector.ProtectAsync(b, keyB ?? Key, Deadline, default);
        return (await pa.WaitAsync(Deadline), await pb.WaitAsync(Deadline));
    }

    private static async Task<byte[]> ReadExactlyAsync(PipeReader reader, int count)
    {
        var result = await reader.ReadAtLeastAsync(count).AsTask().WaitAsync(Deadline);
        Assert.True(result.Buffer.Length >= count, "connection ended early");
        var bytes = result.Buffer.Slice(0, count).ToArray();
        reader.AdvanceTo(result.Buffer.GetPosition(count));
        return bytes;
    }

    [Fact]
    public async Task Wire_format_is_nonce_then_xsalsa20_of_the_data_both_ways()
    {
        var (a, raw) = DuplexPipePair.Create();
        var protect = PnetProtector.ProtectAsync(a, Key, Deadline, default);
        var theirNonce = await ReadExactlyAsync(raw.Input, PnetProtector.NonceLength);
        var ourNonce = Enumerable.Range(100, 24).Select(i => (byte)i).ToArray();
        await raw.Output.WriteAsync(ourNonce);
        var secured = await protect.WaitAsync(Deadline);

        await secured.Output.WriteAsync("/multistream/1.0.0\n"u8.ToArray());
        var onWire = await ReadExactlyAsync(raw.Input, 19);
        var expected = "/multistream/1.0.0\n"u8.ToArray();
        new XSalsa20(Key, theirNonce).Xor(expected);
        Assert.Equal(expected, onWire);

        var reply = "hello from the raw side"u8.ToArray();
        var encrypted = (byte[])reply.Clone();
        new XSalsa20(Key, ourNonce).Xor(encrypted);
        await raw.Output.WriteAsync(encrypted);
        Assert.Equal(reply, await ReadExactlyAsync(secured.Input, reply.Length));
    }

    [Fact]
    public async Task Nonces_are_random()
    {
        var nonces = new HashSet<string>();
        for (var i = 0; i < 4; i++)
        {
            var (a, raw) = DuplexPipePair.Create();
            _ = PnetProtector.ProtectAsync(a, Key, Deadline, default);
            nonces.Add(Convert.ToHexString(await ReadExactlyAsync(raw.Input, 24)));
            raw.Output.Complete();
        }
        Assert.Equal(4, nonces.Count);
    }

    [Fact]
    public async Task Round_trip_in_both_directions_with_every_write_style()
    {
        var (a, b) = await ProtectedPairAsync();
        var data = new byte[3 * 1024 * 1024 + 17];
        new Random(1).NextBytes(data);
        var back = new byte[1024 * 1024 + 5];
        new Random(2).NextBytes(back);
        await Task.WhenAll(
            WriteInPiecesAsync(a.Output, data, 1),
            WriteInPiecesAsync(b.Output, back, 2),
            ReadAllAndCompareAsync(b.Input, data, 3),
            ReadAllAndCompareAsync(a.Input, back, 4)).WaitAsync(TimeSpan.FromSeconds(30));
    }

    [Fact]
    public async Task Every_split_of_a_message_decrypts_the_same()
    {
        var message = Enumerable.Range(0, 100).Select(i => (byte)i).ToArray();
        for (var cut = 0; cut <= message.Length; cut += 7)
        {
            var (a, b) = await ProtectedPairAsync();
            await a.Output.WriteAsync(message.AsMemory(0, cut));
            await a.Output.WriteAsync(message.AsMemory(cut));
            Assert.Equal(message, await ReadExactlyAsync(b.Input, message.Length));
        }
    }

    [Fact]
    public async Task Partly_consumed_reads_decrypt_every_byte_exactly_once()
    {
        var (a, b) = await ProtectedPairAsync();
        var data = Enumerable.Range(0, 5000).Select(i => (byte)(i * 7)).ToArray();
        var got = new List<byte>();
        var sent = 0;
        while (got.Count < data.Length)
        {
            if (sent < data.Length)
            {
                var n = Math.Min(333, data.Length - sent);
                await a.Output.WriteAsync(data.AsMemory(sent, n));
                sent += n;
            }
            var r = await b.Input.ReadAsync().AsTask().WaitAsync(Deadline);
            // consume only a little, but examine everything
            var take = (int)Math.Min(r.Buffer.Length, 101);
            got.AddRange(r.Buffer.Slice(0, take).ToArray());
            b.Input.AdvanceTo(r.Buffer.GetPosition(take), sent < data.Length ? r.Buffer.End : r.Buffer.GetPosition(take));
        }
        Assert.Equal(data, got.ToArray());
    }

    [Fact]
    public async Task Mismatched_keys_give_garbage_that_flows_through_without_hanging()
    {
        var other = (byte[])Key.Clone();
        other[0] ^= 1;
        var (a, b) = await ProtectedPairAsync(Key, other);
        var header = "/multistream/1.0.0\n"u8.ToArray();
        await a.Output.WriteAsync(header);
        var got = await ReadExactlyAsync(b.Input, header.Length);
        Assert.NotEqual(header, got);
    }

    [Fact]
    public async Task Missing_nonce_times_out_within_the_timeout()
    {
        var (a, _) = DuplexPipePair.Create();
        var sw = Stopwatch.StartNew();
        var ex = await Assert.ThrowsAsync<TimeoutException>(() =>
            PnetProtector.ProtectAsync(a, Key, TimeSpan.FromMilliseconds(300), default).WaitAsync(TimeSpan.FromSeconds(5)));
        Assert.Contains("nonce", ex.Message);
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(5));
    }

    [Fact]
    public async Task Peer_closing_before_a_whole_nonce_is_a_pnet_violation()
    {
        var (a, raw) = DuplexPipePair.Create();
        var protect = PnetProtector.ProtectAsync(a, Key, Deadline, default);
        await raw.Output.WriteAsync(new byte[10]);
        raw.Output.Complete();
        var ex = await Assert.ThrowsAsync<ProtocolViolationException>(() => protect.WaitAsync(Deadline));
        Assert.Equal("pnet", ex.Protocol);
        Assert.Contains("10 of 24", ex.Message);
    }

    [Fact]
    public async Task Cancellation_is_not_a_timeout()
    {
        using var cts = new CancellationTokenSource();
        var (a, _) = DuplexPipePair.Create();
        var protect = PnetProtector.ProtectAsync(a, Key, Deadline, cts.Token);
        await cts.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => protect.WaitAsync(Deadline));
    }

    [Fact]
    public async Task Completion_passes_through()
    {
        var (a, b) = await ProtectedPairAsync();
        await a.Output.WriteAsync("end"u8.ToArray());
        await a.Output.CompleteAsync();
        var r = await b.Input.ReadAtLeastAsync(10).AsTask().WaitAsync(Deadline);
        Assert.True(r.IsCompleted);
        Assert.Equal("end"u8.ToArray(), r.Buffer.ToArray());
        b.Input.AdvanceTo(r.Buffer.End);
    }

    [Fact]
    public async Task Wrong_key_length_is_refused()
    {
        var (a, _) = DuplexPipePair.Create();
        await Assert.ThrowsAsync<ArgumentException>(() => PnetProtector.ProtectAsync(a, new byte[16], Deadline, default));
    }

    private static async Task WriteInPiecesAsync(PipeWriter output, byte[] data, int seed)
    {
        var rng = new Random(seed);
        var offset = 0;
        while (offset < data.Length)
        {
            var n = Math.Min(data.Length - offset, rng.Next(3) switch { 0 => rng.Next(1, 100), 1 => rng.Next(1000, 70_000), _ => 200_000 });
            switch (rng.Next(3))
            {
                case 0:
                    await output.WriteAsync(data.AsMemory(offset, n));
                    break;
                case 1:
                    data.AsSpan(offset, n).CopyTo(output.GetSpan(n));
                    output.Advance(n);
                    await output.FlushAsync();
                    break;
                default:
                    // two Advance calls on one buffer
                    var half = n / 2;
                    var memory = output.GetMemory(n);
                    data.AsSpan(offset, half).CopyTo(memory.Span);
                    output.Advance(half);
                    data.AsSpan(offset + half, n - half).CopyTo(output.GetSpan(n - half));
                    output.Advance(n - half);
                    await output.FlushAsync();
                    break;
            }
            offset += n;
        }
        await output.CompleteAsync();
    }

    private static async Task ReadAllAndCompareAsync(PipeReader input, byte[] expected, int seed)
    {
        var rng = new Random(seed);
        long offset = 0;
        while (true)
        {
            var result = await input.ReadAsync();
            var buffer = result.Buffer;
            // sometimes consume only part of what arrived
            var take = rng.Next(2) == 0 ? buffer.Length : Math.Min(buffer.Length, rng.Next(1, 5000));
            foreach (var segment in buffer.Slice(0, take))
            {
                Assert.True(segment.Span.SequenceEqual(expected.AsSpan((int)offset, segment.Length)), $"content differs near offset {offset}");
                offset += segment.Length;
            }
            var all = take == buffer.Length;
            input.AdvanceTo(buffer.GetPosition(take), buffer.End);
            if (result.IsCompleted && all) break;
        }
        Assert.Equal(expected.Length, offset);
    }
}
