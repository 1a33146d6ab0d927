using System.Buffers;
using Weft.Wire.Resume;
using Weft.Wire.Tunnel;
using static Weft.Wire.Tests.Multiformats.TestBytes;

namespace Weft.Wire.Tests.Resume;

public class ResumeMessagesTests
{
    private static readonly byte[] Id = Enumerable.Range(1, 16).Select(i => (byte)i).ToArray();

    [Fact]
    public void Hello_and_welcome_round_trip_at_every_split()
    {
        var open = new ResumeHello
        {
            Session = Id, Kind = ResumeHelloKind.Open,
            Target = new ProxyMessage { Type = ProxyMessageType.Connect, Protocol = "tcp", NodeName = "lan2-a", Ip = "192.168.2.21", Port = 8080 },
        };
        var resume = new ResumeHello { Session = Id, Kind = ResumeHelloKind.Resume, Received = 123456789012 };
        byte[] stream = [.. open.ToLengthPrefixedArray(), .. resume.ToLengthPrefixedArray()];
        for (var cut = 0; cut <= stream.Length; cut++)
        {
            var seq = TestSequences.Split(stream, cut);
            Assert.True(ResumeHello.TryRead(ref seq, out var a));
            Assert.True(ResumeHello.TryRead(ref seq, out var b));
            Assert.Equal(Id, a!.Session);
            Assert.Equal(open.Target, a.Target);
            Assert.Equal(ResumeHelloKind.Resume, b!.Kind);
            Assert.Equal(123456789012UL, b.Received);
            Assert.True(seq.IsEmpty);
        }
        var welcome = new ResumeWelcome { Status = ResumeStatus.UnknownSession, Received = 7, Reason = "restarted" };
        var w = welcome.ToLengthPrefixedArray();
        var ws = TestSequences.ByteByByte(w);
        Assert.True(ResumeWelcome.TryRead(ref ws, out var back));
        Assert.Equal(welcome, back);
    }

    [Theory]
    [InlineData("0a 03 010203 10 01")]          // a 3-byte session id
    [InlineData("0a 10 0102030405060708090a0b0c0d0e0f10 10 07")] // unknown kind
    [InlineData("0a 10 0102030405060708090a0b0c0d0e0f10 10 00")] // OPEN without a target
    [InlineData("10 01")]                        // no session
    [InlineData("0a 10 01")]                     // truncated
    public void Malformed_hellos_are_tunnel_resume_violations(string hex)
    {
        Assert.Equal("tunnel-resume", Assert.Throws<ProtocolViolationException>(() => ResumeHello.FromProtobuf(Hex(hex))).Protocol);
    }

    [Fact]
    public void Frames_round_trip_at_every_split_and_partial_input_is_left_alone()
    {
        var w = new ArrayBufferWriter<byte>();
        var payload = Enumerable.Range(0, 1000).Select(i => (byte)(i % 251)).ToArray();
        ResumeFrame.WriteDataHeader(w, 1UL << 40, payload.Length);
        w.Write(payload);
        var firstFrame = w.WrittenCount;
        ResumeFrame.WriteAck(w, 99, fin: true);
        ResumeFrame.WriteFin(w, 1000);
        ResumeFrame.WriteReset(w, "peer restarted — état perdu");
        var bytes = w.WrittenSpan.ToArray();
        for (var cut = 0; cut <= bytes.Length; cut++)
        {
            var seq = TestSequences.Split(bytes, cut);
            Assert.True(ResumeFrame.TryRead(ref seq, out var data));
            Assert.Equal(ResumeFrameType.Data, data.Type);
            Assert.Equal(1UL << 40, data.Offset);
            Assert.Equal(payload, data.Payload.ToArray());
            Assert.True(ResumeFrame.TryRead(ref seq, out var ack));
            Assert.Equal((ResumeFrameType.Ack, 99UL, true), (ack.Type, ack.Offset, ack.Fin));
            Assert.True(ResumeFrame.TryRead(ref seq, out var fin));
            Assert.Equal((ResumeFrameType.Fin, 1000UL), (fin.Type, fin.Offset));
            Assert.True(ResumeFrame.TryRead(ref seq, out var reset));
            Assert.Equal("peer restarted — état perdu", reset.Reason);
            Assert.False(ResumeFrame.TryRead(ref seq, out _));
        }
        for (var n = 0; n < firstFrame; n++)
        {
            var partial = TestSequences.Split(bytes[..n], n / 2);
            var before = partial;
            Assert.False(ResumeFrame.TryRead(ref partial, out _));
            Assert.Equal(before, partial);
        }
    }

    [Theory]
    [InlineData("07 00")]             // unknown type
    [InlineData("01 05 02")]          // ACK flag 2
    [InlineData("00 00 828008")]      // DATA longer than 64 KiB
    [InlineData("03 00 ff0f")]        // RESET reason longer than 1 KiB
    [InlineData("03 00 02 c328")]     // RESET reason not UTF-8
    public void Malformed_frames_are_violations(string hex)
    {
        var seq = new ReadOnlySequence<byte>(Hex(hex));
        Assert.Equal("tunnel-resume", Assert.Throws<ProtocolViolationException>(() => ResumeFrame.TryRead(ref seq, out _)).Protocol);
    }

    [Fact]
    public void Random_input_parses_or_violates()
    {
        foreach (var buffer in Random(4000, 48, seed: 808))
        {
            ParsesOrViolates(() => ResumeHello.FromProtobuf(buffer));
            ParsesOrViolates(() => ResumeWelcome.FromProtobuf(buffer));
            ParsesOrViolates(() =>
            {
                var seq = new ReadOnlySequence<byte>(buffer);
                while (ResumeFrame.TryRead(ref seq, out _)) { }
            });
        }
    }
}
