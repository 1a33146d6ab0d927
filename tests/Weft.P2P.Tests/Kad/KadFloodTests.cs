using Weft.P2P.Host;
using Weft.P2P.IO;
using Weft.P2P.Tests.Mdns;
using Weft.Wire.Identity;
using Weft.Wire.Kad;
using Weft.Wire.Multiformats;
using static Weft.P2P.Tests.Host.Hosts;

namespace Weft.P2P.Tests.Kad;

[Collection(MemoryMeasuringCollection.Name)]
public class KadFloodTests
{
    /// <summary>Waits until the server has let go of every stream of the flood, then measures the managed heap.</summary>
    private static async Task<long> SettledMemoryAsync(Connection serverSide)
    {
        var until = DateTime.UtcNow + Deadline;
        while (serverSide.Session.ActiveStreams > 0 && DateTime.UtcNow < until) await Task.Delay(10);
        Assert.Equal(0, serverSide.Session.ActiveStreams);
        GC.Collect();
        GC.WaitForPendingFinalizers();
        return GC.GetTotalMemory(forceFullCollection: true);
    }

    [Fact]
    public async Task Malformed_dht_messages_reset_their_stream_only_and_do_not_grow_memory()
    {
        var nodes = await KadDhtTests.StartNetwork(2, KadDhtTests.Quiet());
        var attacker = await StartAsync();
        try
        {
            var server = nodes[1];
            var conn = await attacker.DialPeerAsync(server.Id, [server.Address]).WaitAsync(Deadline);
            var rng = new Random(4450);
            byte[][] kinds =
            [
                [0xff, 0xff, 0xff, 0xff, 0x0f],                          // length prefix far over the 1 MiB limit
                [0x02, 0x08, 0x09],                                       // unknown message type 9
                [0x02, 0x08, 0x04],                                       // FIND_NODE without a key
                [0x04, 0x08, 0x02, 0x12, 0x01],                            // ADD_PROVIDER whose key is no multihash... and truncated
                new KadMessage { Type = KadMessageType.PutValue, Record = new KadRecord { Key = "/nope/x"u8.ToArray(), Value = [1] } }.ToLengthPrefixedArray(),
            ];

            async Task FloodAsync(int streams)
            {
                for (var i = 0; i < streams; i++)
                {
                    var stream = await conn.OpenStreamAsync(KadMessage.ProtocolId, CancellationToken.None).WaitAsync(Deadline);
                    if (i % 6 < kinds.Length)
                    {
                        await stream.Output.WriteAsync(kinds[i % 6]);
                        // Every one of these is refused by resetting the stream.
                        await Assert.ThrowsAnyAsync<Exception>(() => stream.Input.ReadAsync<KadMessage?>(KadMessage.TryRead, CancellationToken.None).AsTask().WaitAsync(Deadline));
                    }
                    else
                    {
                        // Random bytes: refused, answered, or waited on (a message that happens to parse); we walk away.
                        var payload = new byte[rng.Next(1, 120)];
                        rng.NextBytes(payload);
                        payload[0] = (byte)(payload.Length - 1);
                        await stream.Output.WriteAsync(payload);
                    }
                    stream.Reset();
                }
            }

            // Warm up (JIT, buffer pools), then measure over a larger flood.
            var serverSide = await WaitForConnection(server.Host, attacker.PeerId); // the dialer can finish before the listener adds it
            await FloodAsync(3000);
            var before = await SettledMemoryAsync(serverSide);
            await FloodAsync(6000);
            var after = await SettledMemoryAsync(serverSide);
            // Pooled buffers cached by new thread-pool threads make a few MiB of noise; a leak of one stream's state
            // (several KiB each) would be tens of MiB.
            Assert.True(after - before < 8 << 20, $"managed memory grew by {after - before} bytes over 6,000 bad streams");
            Assert.Equal(0, server.Dht.RecordCount);
            Assert.Equal(0, server.Dht.ProviderRecordCount);

            // The same connection, and everyone else, is still served.
            Assert.False(conn.IsClosed);
            var answer = await KadDhtTests.AskAsync(attacker, server, new KadMessage { Type = KadMessageType.FindNode, Key = nodes[0].Id.Bytes.ToArray() });
            Assert.Contains(answer.CloserPeers, p => p.Id == nodes[0].Id);
            Assert.NotNull(await nodes[0].Dht.FindPeerAsync(server.Id).WaitAsync(Deadline));
        }
        finally
        {
            await attacker.DisposeAsync();
            foreach (var n in nodes) await n.DisposeAsync();
        }
    }
}
