using System.Buffers;
using System.Diagnostics;
using System.IO.Pipelines;
using Microsoft.Extensions.Logging.Abstractions;
using Weft.P2P.Noise;
using Weft.P2P.Transport;
using Weft.Wire;
using Weft.Wire.Identity;
using Weft.Wire.Noise;

namespace Weft.P2P.Tests.Noise;

public class NoiseSecurityTests
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(10);
    private static readonly NoiseOptions Defaults = new();

    private static async Task<(SecureConnection Dialer, SecureConnection Listener)> ConnectAsync(
        Ed25519PrivateKey dialerKey, Ed25519PrivateKey listenerKey, NoiseOptions? dialerOptions = null, NoiseOptions? listenerOptions = null)
    {
        var (a, b) = DuplexPipePair.Create();
        var dial = NoiseSecurity.SecureOutboundAsync(a, dialerKey, listenerKey.PeerId, dialerOptions ?? Defaults, NullLogger.Instance, default);
        var listen = NoiseSecurity.SecureInboundAsync(b, listenerKey, listenerOptions ?? Defaults, NullLogger.Instance, default);
        return (await dial.WaitAsync(Deadline), await listen.WaitAsync(Deadline));
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
    public async Task Handshake_authenticates_both_sides_and_agrees_on_yamux()
    {
        var dk = Ed25519PrivateKey.Generate();
        var lk = Ed25519PrivateKey.Generate();
        var (d, l) = await ConnectAsync(dk, lk);
        await using (d)
        await using (l)
        {
            Assert.Equal(lk.PeerId, d.RemotePeer);
            Assert.Equal(dk.PeerId, l.RemotePeer);
            Assert.Equal<PublicKey>(lk.PublicKey, d.RemotePublicKey);
            Assert.Equal<PublicKey>(dk.PublicKey, l.RemotePublicKey);
            Assert.Equal("/yamux/1.0.0", d.EarlyMuxer);
            Assert.Equal("/yamux/1.0.0", l.EarlyMuxer);

            await d.Output.WriteAsync("ping"u8.ToArray());
            Assert.Equal("ping"u8.ToArray(), await ReadExactlyAsync(l.Input, 4));
            await l.Output.WriteAsync("pong"u8.ToArray());
            Assert.Equal("pong"u8.ToArray(), await ReadExactlyAsync(d.Input, 4));
        }
    }

    [Fact]
    public async Task Dialer_without_expectation_accepts_any_authenticated_peer()
    {
        var (a, b) = DuplexPipePair.Create();
        var lk = Ed25519PrivateKey.Generate();
        var dial = NoiseSecurity.SecureOutboundAsync(a, Ed25519PrivateKey.Generate(), null, Defaults, NullLogger.Instance, default);
        var listen = NoiseSecurity.SecureInboundAsync(b, lk, Defaults, NullLogger.Instance, default);
        await using var d = await dial.WaitAsync(Deadline);
        await using var l = await listen.WaitAsync(Deadline);
        Assert.Equal(lk.PeerId, d.RemotePeer);
    }

    [Fact]
    public async Task Peer_id_mismatch_is_rejected_with_both_ids_in_the_message()
    {
        var (a, b) = DuplexPipePair.Create();
        var lk = Ed25519PrivateKey.Generate();
        var someoneElse = Ed25519PrivateKey.Generate().PeerId;
        var dial = NoiseSecurity.SecureOutboundAsync(a, Ed25519PrivateKey.Generate(), someoneElse, Defaults, NullLogger.Instance, default);
        var listen = NoiseSecurity.SecureInboundAsync(b, lk, Defaults, NullLogger.Instance, default);
        var ex = await Assert.ThrowsAsync<ProtocolViolationException>(() => dial.WaitAsync(Deadline));
        Assert.Equal("noise", ex.Protocol);
        Assert.Contains(someoneElse.ToString(), ex.Message);
        Assert.Contains(lk.PeerId.ToString(), ex.Message);
        Assert.Contains("expected", ex.Message);

        // The dialer's host closes the connection; the listener then fails instead of waiting.
        a.Output.Complete();
        a.Input.Complete();
        await Assert.ThrowsAsync<ProtocolViolationException>(() => listen.WaitAsync(Deadline));
    }

    [Theory]
    [InlineData(2 + 5)]        // responder's ephemeral key
    [InlineData(2 + 32 + 10)]  // responder's encrypted static key
    [InlineData(2 + 32 + 48 + 3)] // responder's encrypted payload
    public async Task Tampered_message_2_is_a_violation(int offset)
    {
        var (a, b) = DuplexPipePair.Create();
        using var raw = new RawNoisePeer(b, initiator: false);
        var dial = NoiseSecurity.SecureOutboundAsync(a, Ed25519PrivateKey.Generate(), null, Defaults, NullLogger.Instance, default);
        await raw.ReadMessageAsync();
        var m2 = raw.BuildMessage(raw.Payload(Ed25519PrivateKey.Generate(), "/yamux/1.0.0"));
        m2[offset] ^= 0x20;
        await raw.WriteRawAsync(m2);
        var ex = await Assert.ThrowsAsync<ProtocolViolationException>(() => dial.WaitAsync(Deadline));
        Assert.Equal("noise", ex.Protocol);
    }

    [Fact]
    public async Task Bad_static_key_signature_is_a_violation()
    {
        var (a, b) = DuplexPipePair.Create();
        using var raw = new RawNoisePeer(b, initiator: false);
        var dial = NoiseSecurity.SecureOutboundAsync(a, Ed25519PrivateKey.Generate(), null, Defaults, NullLogger.Instance, default);
        await raw.ReadMessageAsync();
        var key = Ed25519PrivateKey.Generate();
        // Signs the wrong bytes: valid Ed25519 signature, but not over our static key.
        await raw.WriteMessageAsync(raw.Payload(key.PublicKey.ToProtobuf(), d => key.Sign(d.AsSpan(1))));
        var ex = await Assert.ThrowsAsync<ProtocolViolationException>(() => dial.WaitAsync(Deadline));
        Assert.Contains("signature", ex.Message);
    }

    [Fact]
    public async Task Garbage_identity_key_is_a_noise_violation()
    {
        var (a, b) = DuplexPipePair.Create();
        using var raw = new RawNoisePeer(b, initiator: false);
        var dial = NoiseSecurity.SecureOutboundAsync(a, Ed25519PrivateKey.Generate(), null, Defaults, NullLogger.Instance, default);
        await raw.ReadMessageAsync();
        await raw.WriteMessageAsync(raw.Payload([0x08, 0x01, 0x12, 0x03, 1, 2, 3], d => new byte[64]));
        var ex = await Assert.ThrowsAsync<ProtocolViolationException>(() => dial.WaitAsync(Deadline));
        Assert.Equal("noise", ex.Protocol);
    }

    [Fact]
    public async Task Rsa_and_secp256k1_identities_are_accepted()
    {
        foreach (var (identity, type) in new[] { (RawNoisePeer.RsaIdentity(), KeyType.Rsa), (RawNoisePeer.Secp256k1Identity(), KeyType.Secp256k1) })
        {
            var (a, b) = DuplexPipePair.Create();
            using var raw = new RawNoisePeer(b, initiator: false);
            var expected = PublicKey.FromProtobuf(identity.Protobuf).ToPeerId();
            var dial = NoiseSecurity.SecureOutboundAsync(a, Ed25519PrivateKey.Generate(), expected, Defaults, NullLogger.Instance, default);
            await raw.ReadMessageAsync();
            await raw.WriteMessageAsync(raw.Payload(identity.Protobuf, identity.Sign, "/yamux/1.0.0"));
            await raw.ReadMessageAsync();
            await using var d = await dial.WaitAsync(Deadline);
            Assert.Equal(type, d.RemotePublicKey.Type);
            Assert.Equal(expected, d.RemotePeer);
            await d.Output.WriteAsync("hi"u8.ToArray());
            Assert.Equal("hi"u8.ToArray(), raw.Open(await raw.ReadFrameAsync()));
        }
    }

    [Fact]
    public async Task Listener_rejects_a_truncated_first_message()
    {
        var (a, b) = DuplexPipePair.Create();
        var listen = NoiseSecurity.SecureInboundAsync(b, Ed25519PrivateKey.Generate(), Defaults, NullLogger.Instance, default);
        await a.Output.WriteAsync(new byte[] { 0, 32, 1, 2, 3, 4, 5 });
        a.Output.Complete();
        var ex = await Assert.ThrowsAsync<ProtocolViolationException>(() => listen.WaitAsync(Deadline));
        Assert.Contains("middle of handshake message 1", ex.Message);
    }

    [Fact]
    public async Task Listener_rejects_a_first_message_too_short_for_a_key()
    {
        var (a, b) = DuplexPipePair.Create();
        var listen = NoiseSecurity.SecureInboundAsync(b, Ed25519PrivateKey.Generate(), Defaults, NullLogger.Instance, default);
        await a.Output.WriteAsync(new byte[] { 0, 3, 1, 2, 3 });
        await Assert.ThrowsAsync<ProtocolViolationException>(() => listen.WaitAsync(Deadline));
    }

    [Fact]
    public async Task Listener_rejects_a_tampered_third_message()
    {
        var (a, b) = DuplexPipePair.Create();
        using var raw = new RawNoisePeer(a, initiator: true);
        var listen = NoiseSecurity.SecureInboundAsync(b, Ed25519PrivateKey.Generate(), Defaults, NullLogger.Instance, default);
        await raw.WriteMessageAsync([]);
        await raw.ReadMessageAsync();
        var m3 = raw.BuildMessage(raw.Payload(Ed25519PrivateKey.Generate(), "/yamux/1.0.0"));
        m3[m3.Length - 1] ^= 1;
        await raw.WriteRawAsync(m3);
        await Assert.ThrowsAsync<ProtocolViolationException>(() => listen.WaitAsync(Deadline));
    }

    [Fact]
    public async Task Stalled_peer_times_out_within_the_handshake_timeout()
    {
        var options = new NoiseOptions { HandshakeTimeout = TimeSpan.FromMilliseconds(300) };
        var (a, b) = DuplexPipePair.Create();
        var sw = Stopwatch.StartNew();
        var dial = NoiseSecurity.SecureOutboundAsync(a, Ed25519PrivateKey.Generate(), null, options, NullLogger.Instance, default);
        var listen = NoiseSecurity.SecureInboundAsync(DuplexPipePair.Create().A, Ed25519PrivateKey.Generate(), options, NullLogger.Instance, default);
        await Assert.ThrowsAsync<TimeoutException>(() => dial.WaitAsync(TimeSpan.FromSeconds(5)));
        await Assert.ThrowsAsync<TimeoutException>(() => listen.WaitAsync(TimeSpan.FromSeconds(5)));
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(5));
        Assert.NotNull(b);
    }

    [Fact]
    public async Task Cancellation_is_not_reported_as_a_timeout()
    {
        using var cts = new CancellationTokenSource();
        var (a, _) = DuplexPipePair.Create();
        var dial = NoiseSecurity.SecureOutboundAsync(a, Ed25519PrivateKey.Generate(), null, Defaults, NullLogger.Instance, cts.Token);
        await cts.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => dial.WaitAsync(Deadline));
    }

    [Fact]
    public async Task Sixteen_MiB_each_way_at_once_arrive_intact()
    {
        var (d, l) = await ConnectAsync(Ed25519PrivateKey.Generate(), Ed25519PrivateKey.Generate());
        await using (d)
        await using (l)
        {
            const int total = 16 * 1024 * 1024;
            var dataA = new byte[total];
            var dataB = new byte[total];
            new Random(1).NextBytes(dataA);
            new Random(2).NextBytes(dataB);
            var tasks = new[]
            {
                WriteInPiecesAsync(d.Output, dataA, 3), WriteInPiecesAsync(l.Output, dataB, 4),
                ReadAllAndCompareAsync(l.Input, dataA), ReadAllAndCompareAsync(d.Input, dataB),
            };
            await Task.WhenAll(tasks).WaitAsync(TimeSpan.FromSeconds(60));
        }
    }

    private static async Task WriteInPiecesAsync(PipeWriter output, byte[] data, int seed)
    {
        var rng = new Random(seed);
        var offset = 0;
        while (offset < data.Length)
        {
            var n = Math.Min(data.Length - offset, rng.Next(3) switch { 0 => rng.Next(1, 100), 1 => rng.Next(1000, 70_000), _ => 200_000 });
            if (rng.Next(2) == 0)
            {
                await output.WriteAsync(data.AsMemory(offset, n));
            }
            else
            {
                data.AsSpan(offset, n).CopyTo(output.GetSpan(n));
                output.Advance(n);
                await output.FlushAsync();
            }
            offset += n;
        }
        await output.CompleteAsync();
    }

    private static async Task ReadAllAndCompareAsync(PipeReader input, byte[] expected)
    {
        long offset = 0;
        while (true)
        {
            var result = await input.ReadAsync();
            foreach (var segment in result.Buffer)
            {
                Assert.True(offset + segment.Length <= expected.Length, "more data than was sent");
                Assert.True(segment.Span.SequenceEqual(expected.AsSpan((int)offset, segment.Length)), $"content differs near offset {offset}");
                offset += segment.Length;
            }
            input.AdvanceTo(result.Buffer.End);
            if (result.IsCompleted) break;
        }
        Assert.Equal(expected.Length, offset);
    }

    public static TheoryData<string, string, string?> MuxerCases() => new()
    {
        { "/yamux/1.0.0", "/yamux/1.0.0", "/yamux/1.0.0" },
        { "/mplex/6.7.0,/yamux/1.0.0", "/yamux/1.0.0,/mplex/6.7.0", "/mplex/6.7.0" },
        { "", "/yamux/1.0.0", null },
        { "/yamux/1.0.0", "", null },
        { "", "", null },
    };

    [Theory]
    [MemberData(nameof(MuxerCases))]
    public async Task Early_muxer_is_the_dialers_first_choice_the_listener_shares(string dialer, string listener, string? expected)
    {
        static NoiseOptions O(string s) => new() { Muxers = s.Length == 0 ? [] : s.Split(',') };
        var (d, l) = await ConnectAsync(Ed25519PrivateKey.Generate(), Ed25519PrivateKey.Generate(), O(dialer), O(listener));
        await using (d)
        await using (l)
        {
            Assert.Equal(expected, d.EarlyMuxer);
            Assert.Equal(expected, l.EarlyMuxer);
        }
    }

    [Fact]
    public async Task Disjoint_muxer_lists_fail_on_both_sides_with_a_clear_error()
    {
        var (a, b) = DuplexPipePair.Create();
        var lk = Ed25519PrivateKey.Generate();
        var dial = NoiseSecurity.SecureOutboundAsync(a, Ed25519PrivateKey.Generate(), lk.PeerId, new NoiseOptions { Muxers = ["/mplex/6.7.0"] }, NullLogger.Instance, default);
        var listen = NoiseSecurity.SecureInboundAsync(b, lk, Defaults, NullLogger.Instance, default);
        var e1 = await Assert.ThrowsAsync<ProtocolViolationException>(() => dial.WaitAsync(Deadline));
        var e2 = await Assert.ThrowsAsync<ProtocolViolationException>(() => listen.WaitAsync(Deadline));
        foreach (var e in new[] { e1, e2 })
        {
            Assert.Contains("no stream muxer in common", e.Message);
            Assert.Contains("/mplex/6.7.0", e.Message);
            Assert.Contains("/yamux/1.0.0", e.Message);
        }
    }

    [Fact]
    public async Task Message_1_payload_is_empty_and_extensions_travel_in_messages_2_and_3()
    {
        var (a, b) = DuplexPipePair.Create();
        using var raw = new RawNoisePeer(b, initiator: false);
        var dk = Ed25519PrivateKey.Generate();
        var dial = NoiseSecurity.SecureOutboundAsync(a, dk, null, new NoiseOptions { Muxers = ["/a", "/yamux/1.0.0"] }, NullLogger.Instance, default);
        Assert.Empty(await raw.ReadMessageAsync());
        await raw.WriteMessageAsync(raw.Payload(Ed25519PrivateKey.Generate(), "/yamux/1.0.0"));
        await raw.ReadMessageAsync();
        Assert.Equal(dk.PublicKey.ToProtobuf(), raw.RemotePayload!.IdentityKey);
        Assert.Equal(["/a", "/yamux/1.0.0"], raw.RemotePayload.Extensions!.StreamMuxers);
        await using var d = await dial.WaitAsync(Deadline);
        Assert.Equal("/yamux/1.0.0", d.EarlyMuxer);
    }

    /// <summary>A connected dialer-side SecureConnection and the raw listener behind it.</summary>
    private static async Task<(SecureConnection Conn, RawNoisePeer Raw, IDuplexPipe RawPipe)> ConnectToRawAsync()
    {
        var (a, b) = DuplexPipePair.Create();
        var raw = new RawNoisePeer(b, initiator: false);
        var dial = NoiseSecurity.SecureOutboundAsync(a, Ed25519PrivateKey.Generate(), null, Defaults, NullLogger.Instance, default);
        await raw.ReadMessageAsync();
        await raw.WriteMessageAsync(raw.Payload(Ed25519PrivateKey.Generate(), "/yamux/1.0.0"));
        await raw.ReadMessageAsync();
        return (await dial.WaitAsync(Deadline), raw, b);
    }

    [Fact]
    public async Task Frames_arriving_one_byte_at_a_time_decrypt_correctly()
    {
        var (conn, raw, pipe) = await ConnectToRawAsync();
        await using var _ = conn;
        using var __ = raw;
        var bytes = raw.Seal("first"u8).Concat(raw.Seal([])).Concat(raw.Seal("second message"u8)).ToArray();
        foreach (var b in bytes) await pipe.Output.WriteAsync(new[] { b });
        Assert.Equal("firstsecond message"u8.ToArray(), await ReadExactlyAsync(conn.Input, 19));
    }

    [Fact]
    public async Task Large_frames_arriving_in_small_pieces_are_assembled()
    {
        var (conn, raw, pipe) = await ConnectToRawAsync();
        await using var _ = conn;
        using var __ = raw;
        var rng = new Random(12);
        var parts = new[] { new byte[60_000], new byte[10], new byte[NoiseFrame.MaxPlaintextLength], new byte[9_000] };
        foreach (var part in parts) rng.NextBytes(part);
        var wire = parts.SelectMany(p => raw.Seal(p)).ToArray();
        var reading = ReadExactlyAsync(conn.Input, parts.Sum(p => p.Length));
        for (var offset = 0; offset < wire.Length;)
        {
            var n = Math.Min(wire.Length - offset, rng.Next(1, 5000));
            await pipe.Output.WriteAsync(wire.AsMemory(offset, n));
            offset += n;
        }
        Assert.Equal(parts.SelectMany(p => p).ToArray(), await reading);
    }

    [Fact]
    public async Task Tampered_or_truncated_assembled_frames_are_violations()
    {
        var (conn, raw, pipe) = await ConnectToRawAsync();
        await using (conn)
        using (raw)
        {
            var frame = raw.Seal(new byte[30_000]);
            frame[20_000] ^= 1;
            await pipe.Output.WriteAsync(frame.AsMemory(0, 10_000));
            await pipe.Output.WriteAsync(frame.AsMemory(10_000));
            var ex = await Assert.ThrowsAsync<ProtocolViolationException>(() => DrainToEndAsync(conn.Input));
            Assert.Contains("decryption failed", ex.Message);
        }

        var (conn2, raw2, pipe2) = await ConnectToRawAsync();
        await using (conn2)
        using (raw2)
        {
            var frame = raw2.Seal(new byte[30_000]);
            await pipe2.Output.WriteAsync(frame.AsMemory(0, 20_000));
            pipe2.Output.Complete();
            var ex = await Assert.ThrowsAsync<ProtocolViolationException>(() => DrainToEndAsync(conn2.Input));
            Assert.Contains("middle of a transport message", ex.Message);
        }
    }

    [Fact]
    public async Task Transport_pipes_smaller_than_a_frame_still_carry_full_frames()
    {
        var tiny = new PipeOptions(pauseWriterThreshold: 16 * 1024, resumeWriterThreshold: 8 * 1024, minimumSegmentSize: 1024, useSynchronizationContext: false);
        var (a, b) = DuplexPipePair.Create(tiny);
        var lk = Ed25519PrivateKey.Generate();
        var dial = NoiseSecurity.SecureOutboundAsync(a, Ed25519PrivateKey.Generate(), lk.PeerId, Defaults, NullLogger.Instance, default);
        var listen = NoiseSecurity.SecureInboundAsync(b, lk, Defaults, NullLogger.Instance, default);
        await using var d = await dial.WaitAsync(Deadline);
        await using var l = await listen.WaitAsync(Deadline);
        var data = new byte[3 * 1024 * 1024];
        new Random(13).NextBytes(data);
        await Task.WhenAll(WriteInPiecesAsync(d.Output, data, 5), ReadAllAndCompareAsync(l.Input, data)).WaitAsync(TimeSpan.FromSeconds(30));
    }

    [Fact]
    public async Task Bytes_sent_right_after_message_3_are_not_lost()
    {
        var (a, b) = DuplexPipePair.Create();
        using var raw = new RawNoisePeer(a, initiator: true);
        var listen = NoiseSecurity.SecureInboundAsync(b, Ed25519PrivateKey.Generate(), Defaults, NullLogger.Instance, default);
        await raw.WriteMessageAsync([]);
        await raw.ReadMessageAsync();
        var m3 = raw.BuildMessage(raw.Payload(Ed25519PrivateKey.Generate(), "/yamux/1.0.0"));
        await raw.WriteRawAsync(m3.Concat(raw.Seal("early data"u8)).ToArray()); // one write, like go and js
        await using var l = await listen.WaitAsync(Deadline);
        Assert.Equal("early data"u8.ToArray(), await ReadExactlyAsync(l.Input, 10));
    }

    [Fact]
    public async Task Garbage_frame_fails_reads_and_closes_both_directions()
    {
        var (conn, raw, pipe) = await ConnectToRawAsync();
        await using var _ = conn;
        using var __ = raw;
        await pipe.Output.WriteAsync(raw.Seal("good"u8));
        Assert.Equal("good"u8.ToArray(), await ReadExactlyAsync(conn.Input, 4));
        var garbage = new byte[2 + 40];
        garbage[1] = 40;
        new Random(4).NextBytes(garbage.AsSpan(2));
        await pipe.Output.WriteAsync(garbage);

        var ex = await Assert.ThrowsAsync<ProtocolViolationException>(async () =>
        {
            while (true)
            {
                var r = await conn.Input.ReadAsync().AsTask().WaitAsync(Deadline);
                conn.Input.AdvanceTo(r.Buffer.End);
                if (r.IsCompleted) break;
            }
        });
        Assert.Contains("decryption failed", ex.Message);
        await conn.Completion.WaitAsync(Deadline);

        // The transport's output was completed too (with the error): the raw peer sees the end.
        var end = await Assert.ThrowsAsync<ProtocolViolationException>(() => DrainToEndAsync(pipe.Input));
        Assert.Contains("decryption failed", end.Message);

        // Writes now fail or report completion.
        var writeFailed = false;
        try
        {
            var f = await conn.Output.WriteAsync(new byte[10]);
            writeFailed = f.IsCompleted;
        }
        catch (ProtocolViolationException)
        {
            writeFailed = true;
        }
        Assert.True(writeFailed);
    }

    private static async Task DrainToEndAsync(PipeReader reader)
    {
        while (true)
        {
            var r = await reader.ReadAsync().AsTask().WaitAsync(Deadline);
            reader.AdvanceTo(r.Buffer.End);
            if (r.IsCompleted) return;
        }
    }

    [Fact]
    public async Task Frame_shorter_than_a_tag_is_a_violation()
    {
        var (conn, raw, pipe) = await ConnectToRawAsync();
        await using var _ = conn;
        using var __ = raw;
        await pipe.Output.WriteAsync(new byte[] { 0, 5, 1, 2, 3, 4, 5 });
        var ex = await Assert.ThrowsAsync<ProtocolViolationException>(async () => await conn.Input.ReadAsync().AsTask().WaitAsync(Deadline));
        Assert.Contains("shorter than", ex.Message);
    }

    [Fact]
    public async Task Transport_ending_mid_frame_is_a_violation_and_clean_end_is_eof()
    {
        var (conn, raw, pipe) = await ConnectToRawAsync();
        await using (conn)
        using (raw)
        {
            var sealedMessage = raw.Seal("abc"u8);
            await pipe.Output.WriteAsync(sealedMessage.AsMemory(0, 10));
            pipe.Output.Complete();
            await Assert.ThrowsAsync<ProtocolViolationException>(async () =>
            {
                while (true)
                {
                    var r = await conn.Input.ReadAsync().AsTask().WaitAsync(Deadline);
                    conn.Input.AdvanceTo(r.Buffer.End);
                    if (r.IsCompleted) break;
                }
            });
        }

        var (conn2, raw2, pipe2) = await ConnectToRawAsync();
        await using (conn2)
        using (raw2)
        {
            await pipe2.Output.WriteAsync(raw2.Seal("abc"u8));
            pipe2.Output.Complete();
            var r = await conn2.Input.ReadAtLeastAsync(4).AsTask().WaitAsync(Deadline);
            Assert.True(r.IsCompleted);
            Assert.Equal("abc"u8.ToArray(), r.Buffer.ToArray());
            conn2.Input.AdvanceTo(r.Buffer.End);
            // Half-close: we can still send.
            await conn2.Output.WriteAsync("still here"u8.ToArray());
            Assert.Equal("still here"u8.ToArray(), raw2.Open(await raw2.ReadFrameAsync()));
        }
    }

    [Fact]
    public async Task Large_writes_are_cut_into_frames_of_at_most_65535_bytes()
    {
        var (conn, raw, _) = await ConnectToRawAsync();
        await using var __ = conn;
        using var ___ = raw;
        var data = new byte[200_000];
        new Random(8).NextBytes(data);
        await conn.Output.WriteAsync(data);
        var received = new List<byte>();
        while (received.Count < data.Length)
        {
            var frame = await raw.ReadFrameAsync();
            Assert.InRange(frame.Length, 17, NoiseFrame.MaxMessageLength);
            received.AddRange(raw.Open(frame));
        }
        Assert.Equal(data, received.ToArray());
    }

    [Fact]
    public async Task Completing_output_sends_everything_then_ends_the_transport()
    {
        var (d, l) = await ConnectAsync(Ed25519PrivateKey.Generate(), Ed25519PrivateKey.Generate());
        await using (d)
        await using (l)
        {
            var data = new byte[300_000];
            new Random(5).NextBytes(data);
            data.CopyTo(d.Output.GetSpan(data.Length));
            d.Output.Advance(data.Length);
            await d.Output.CompleteAsync(); // no explicit flush
            await ReadAllAndCompareAsync(l.Input, data);
        }
    }

    [Fact]
    public async Task Dispose_sends_buffered_data_and_the_peer_sees_the_end()
    {
        var (d, l) = await ConnectAsync(Ed25519PrivateKey.Generate(), Ed25519PrivateKey.Generate());
        await using (l)
        {
            await d.Output.WriteAsync("bye"u8.ToArray());
            await d.DisposeAsync().AsTask().WaitAsync(Deadline);
            var r = await l.Input.ReadAtLeastAsync(4).AsTask().WaitAsync(Deadline);
            Assert.True(r.IsCompleted);
            Assert.Equal("bye"u8.ToArray(), r.Buffer.ToArray());
            l.Input.AdvanceTo(r.Buffer.End);
        }
    }

    [Fact]
    public async Task Dispose_does_not_wait_for_a_peer_that_stopped_reading()
    {
        var (d, l) = await ConnectAsync(Ed25519PrivateKey.Generate(), Ed25519PrivateKey.Generate());
        // The listener never reads: fill every buffer on the way, then dispose the dialer.
        var big = new byte[4 * 1024 * 1024];
        var write = d.Output.WriteAsync(big).AsTask(); // more than all the buffers together: stays pending
        await d.DisposeAsync().AsTask().WaitAsync(Deadline);
        await l.DisposeAsync().AsTask().WaitAsync(Deadline);
        await write.ContinueWith(_ => { }).WaitAsync(Deadline); // completed or failed, but not hanging
    }

    [Fact]
    public async Task Nonce_exhaustion_closes_the_connection()
    {
        var (conn, raw, _) = await ConnectToRawAsync();
        await using var __ = conn;
        using var ___ = raw;
        conn.SetSendNonce(CipherState.MaxNonce);
        raw.Receive!.SetNonce(CipherState.MaxNonce);
        await conn.Output.WriteAsync("last"u8.ToArray());
        Assert.Equal("last"u8.ToArray(), raw.Open(await raw.ReadFrameAsync()));
        try
        {
            await conn.Output.WriteAsync("one too many"u8.ToArray());
        }
        catch (ProtocolViolationException)
        {
            // the pump may already have failed the plaintext pipe
        }
        var ex = await Assert.ThrowsAsync<ProtocolViolationException>(() => raw.ReadFrameAsync());
        Assert.Contains("nonce", ex.Message);
        await conn.Completion.WaitAsync(Deadline);
    }
}
