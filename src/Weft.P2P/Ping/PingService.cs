using System.Buffers;
using System.Security.Cryptography;
using Weft.P2P.Host;
using Weft.P2P.Yamux;

namespace Weft.P2P.Ping;

/// <summary>/ipfs/ping/1.0.0: the peer echoes 32-byte payloads; one stream carries many pings.</summary>
public static class PingService
{
    public const string ProtocolId = "/ipfs/ping/1.0.0";
    public const int PayloadLength = 32;

    /// <summary>Pings one stream may answer before we close it (bounds a peer that pings forever).</summary>
    public const int MaxPingsPerStream = 1_000_000;

    public static void Register(Libp2pHost host) => host.Handle(ProtocolId, AnswerAsync);

    private static async Task AnswerAsync(IncomingStream s, CancellationToken ct)
    {
        var input = s.Stream.Input;
        for (var n = 0; n < MaxPingsPerStream; n++)
        {
            var r = await input.ReadAtLeastAsync(PayloadLength, ct).ConfigureAwait(false);
            if (r.Buffer.Length < PayloadLength)
            {
                input.AdvanceTo(r.Buffer.End);
                return; // peer closed
            }
            var payload = r.Buffer.Slice(0, PayloadLength);
            foreach (var seg in payload) s.Stream.Output.Write(seg.Span);
            input.AdvanceTo(payload.End);
            await s.Stream.Output.FlushAsync(ct).ConfigureAwait(false);
        }
    }

    /// <summary>A stream for repeated pings; dispose it when done.</summary>
    public static Task<YamuxStream> OpenAsync(Connection conn, CancellationToken ct) => conn.OpenStreamAsync(ProtocolId, ct);

    /// <summary>One round trip on <paramref name="stream"/>; checks the echoed payload.</summary>
    public static async Task<TimeSpan> PingAsync(YamuxStream stream, TimeProvider time, CancellationToken ct)
    {
        var payload = new byte[PayloadLength];
        RandomNumberGenerator.Fill(payload);
        var start = time.GetTimestamp();
        await stream.Output.WriteAsync(payload, ct).ConfigureAwait(false);
        var r = await stream.Input.ReadAtLeastAsync(PayloadLength, ct).ConfigureAwait(false);
        var elapsed = time.GetElapsedTime(start);
        if (r.Buffer.Length < PayloadLength)
        {
            stream.Input.AdvanceTo(r.Buffer.End);
            throw new EndOfStreamException("the peer closed the ping stream");
        }
        var echoed = r.Buffer.Slice(0, PayloadLength).ToArray();
        stream.Input.AdvanceTo(r.Buffer.GetPosition(PayloadLength));
        if (!echoed.AsSpan().SequenceEqual(payload))
            throw new Weft.Wire.ProtocolViolationException("ping", "the peer echoed different bytes");
        return elapsed;
    }
}
