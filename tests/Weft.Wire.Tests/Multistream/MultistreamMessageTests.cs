using System.Buffers;
using System.Text;
using Weft.Wire;
using Weft.Wire.Multistream;

namespace Weft.Wire.Tests.Multistream;

public class MultistreamMessageTests
{
    private static byte[] Encode(params string[] msgs)
    {
        var w = new ArrayBufferWriter<byte>();
        foreach (var m in msgs) MultistreamMessage.Write(w, m);
        return w.WrittenSpan.ToArray();
    }

    [Fact]
    public void Header_and_noise_match_the_js_dialer_bytes()
    {
        // js writes "/multistream/1.0.0\n" and "/noise\n" in one 28-byte write.
        var bytes = Encode("/multistream/1.0.0", "/noise");
        Assert.Equal(28, bytes.Length);
        Assert.Equal(0x13, bytes[0]);
        Assert.Equal("/multistream/1.0.0\n", Encoding.ASCII.GetString(bytes, 1, 19));
        Assert.Equal(0x07, bytes[20]);
        Assert.Equal("/noise\n", Encoding.ASCII.GetString(bytes, 21, 7));
    }

    [Fact]
    public void Every_split_reads_the_same_messages()
    {
        var bytes = Encode("/multistream/1.0.0", "/noise", "na", "/yamux/1.0.0");
        for (var cut = 0; cut <= bytes.Length; cut++)
        {
            var seq = TestSequences.Split(bytes, cut);
            var got = ReadAll(seq);
            Assert.Equal(["/multistream/1.0.0", "/noise", "na", "/yamux/1.0.0"], got);
        }
        Assert.Equal(["/multistream/1.0.0", "/noise", "na", "/yamux/1.0.0"], ReadAll(TestSequences.ByteByByte(bytes)));
    }

    private static List<string> ReadAll(ReadOnlySequence<byte> seq)
    {
        var list = new List<string>();
        while (MultistreamMessage.TryRead(ref seq, out var t)) list.Add(t);
        Assert.Equal(0, seq.Length);
        return list;
    }

    [Fact]
    public void Partial_message_needs_more_and_leaves_input()
    {
        var bytes = Encode("/ipfs/ping/1.0.0");
        for (var n = 0; n < bytes.Length; n++)
        {
            var seq = new ReadOnlySequence<byte>(bytes, 0, n);
            Assert.False(MultistreamMessage.TryRead(ref seq, out _));
            Assert.Equal(n, seq.Length);
        }
    }

    [Fact]
    public void Header_is_read_at_every_split_and_rejected_at_the_first_wrong_byte()
    {
        var bytes = Encode("/multistream/1.0.0", "/noise");
        for (var cut = 0; cut <= bytes.Length; cut++)
        {
            var seq = TestSequences.Split(bytes, cut);
            Assert.True(MultistreamMessage.TryReadHeader(ref seq));
            Assert.True(MultistreamMessage.TryRead(ref seq, out var p));
            Assert.Equal("/noise", p);
        }
        for (var n = 0; n < 20; n++)
        {
            var seq = new ReadOnlySequence<byte>(bytes, 0, n);
            Assert.False(MultistreamMessage.TryReadHeader(ref seq));
            Assert.Equal(n, seq.Length);
            var wrong = bytes[..(n + 1)];
            wrong[n] ^= 0x55;
            var bad = new ReadOnlySequence<byte>(wrong);
            Assert.Throws<ProtocolViolationException>(() => MultistreamMessage.TryReadHeader(ref bad));
        }
    }

    [Fact]
    public void Missing_newline_is_a_violation()
    {
        var seq = new ReadOnlySequence<byte>([3, (byte)'a', (byte)'b', (byte)'c']);
        var ex = Assert.Throws<ProtocolViolationException>(() => MultistreamMessage.TryRead(ref seq, out _));
        Assert.Equal("multistream", ex.Protocol);
    }

    [Fact]
    public void Oversized_length_is_a_violation_before_the_body_arrives()
    {
        var seq = new ReadOnlySequence<byte>([0xff, 0xff, 0x7f]);
        Assert.Throws<ProtocolViolationException>(() => MultistreamMessage.TryRead(ref seq, out _));
    }

    [Fact]
    public void Ls_body_round_trips()
    {
        var body = MultistreamMessage.EncodeListBody(["/noise", "/tls/1.0.0"]);
        Assert.Equal(["/noise", "/tls/1.0.0"], MultistreamMessage.DecodeListBody(body));
        // Matches the js answer for a Noise-only listener: "\u0007/noise\n\n" inside the outer frame.
        var framed = Encode(MultistreamMessage.EncodeListBody(["/noise"]));
        Assert.Equal(new byte[] { 9, 7 }.Concat(Encoding.ASCII.GetBytes("/noise\n\n")), framed);
    }

    [Fact]
    public void Random_bytes_parse_or_throw_a_violation()
    {
        var rng = new Random(7);
        for (var i = 0; i < 5000; i++)
        {
            var buf = new byte[rng.Next(0, 40)];
            rng.NextBytes(buf);
            if (buf.Length > 0 && rng.Next(2) == 0) buf[0] = (byte)rng.Next(0, 30);
            var seq = new ReadOnlySequence<byte>(buf);
            try
            {
                while (MultistreamMessage.TryRead(ref seq, out _)) { }
            }
            catch (ProtocolViolationException) { }
        }
    }
}
