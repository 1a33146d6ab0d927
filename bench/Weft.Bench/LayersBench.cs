using System.Diagnostics;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using Microsoft.Extensions.Logging.Abstractions;
using Weft.P2P.Noise;
using Weft.P2P.Transport;
using Weft.P2P.Yamux;
using Weft.Wire.Identity;
using Weft.Wire.Multiformats;

namespace Weft.Bench;

/// <summary>
/// Where the time goes: the same one-direction pump (64 KiB GetMemory/Advance/FlushAsync writes, like
/// PerfService) through each layer of the stack on its own, all in this process:
///   tcp              Weft's TcpTransport, nothing on top
///   tcp+yamux        yamux straight on the TCP pipes (no encryption)
///   tcp+noise        Noise (ChaCha20-Poly1305) on the TCP pipes, no muxer
///   tcp+noise+yamux  the full stack minus multistream-select and the host (what /perf measures)
///   mem+noise        Noise over an in-memory pipe pair (crypto + framing cost without sockets)
///   mem+yamux        yamux over an in-memory pipe pair (muxer cost without sockets or crypto)
/// For comparison (not run by default; pass --layers), Weft's transport before commit e374586, Kestrel's socket pipes
/// (4 KiB blocks, 1 MiB buffers, inline scheduling):
///   kestrel, kestrel+noise+yamux                 as TcpTransport first used them (a zero-byte read before each read)
///   kestrel-nowait, kestrel-nowait+noise+yamux   with WaitForDataBeforeAllocatingBuffer = false
/// Each layer gets a fresh connection, a 64 MiB warm-up, then --bytes timed until the reader has them all.
/// </summary>
public static class LayersBench
{
    public const int ChunkSize = 64 * 1024;
    public const long WarmupBytes = 64L * 1024 * 1024;
    private const int MemPipeBytes = 1024 * 1024;

    private static readonly string[] DefaultLayers = ["tcp", "tcp+yamux", "tcp+noise", "tcp+noise+yamux", "mem+noise", "mem+yamux"];
    private static readonly string[] AllLayers = [.. DefaultLayers, "kestrel", "kestrel+noise+yamux", "kestrel-nowait", "kestrel-nowait+noise+yamux"];

    /// <summary>The buffer limits Weft's Kestrel-based transport used.</summary>
    private const int KestrelBufferBytes = 1024 * 1024;

    public static async Task<Dictionary<string, object?>> RunAsync(Options o, CancellationToken ct)
    {
        var bytes = o.GetBytes("--bytes", 1L << 30);
        var only = o.Get("--layers")?.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries) ?? DefaultLayers;
        using var trace = o.Get("--alloc-trace") == "on" ? new AllocTrace() : null;
        var result = new Dictionary<string, object?> { ["bytes"] = bytes };
        foreach (var layer in only)
        {
            if (Array.IndexOf(AllLayers, layer) < 0) throw new ArgumentException($"unknown layer '{layer}' (known: {string.Join(", ", AllLayers)})");
            var r = await RunLayerAsync(layer, bytes, trace, ct).ConfigureAwait(false);
            Console.Error.WriteLine($"layer {layer}: {r["mibPerSec"]} MiB/s, {r["coresUsed"]} cores");
            result[layer] = r;
        }
        return result;
    }

    private static async Task<Dictionary<string, object?>> RunLayerAsync(string layer, long bytes, AllocTrace? trace, CancellationToken ct)
    {
        var cleanup = new List<Func<ValueTask>>();
        try
        {
            IDuplexPipe a, b;
            if (layer.StartsWith("tcp", StringComparison.Ordinal))
            {
                var tcp = NewTcpTransport();
                cleanup.Add(() => { tcp.Dispose(); return ValueTask.CompletedTask; });
                var listener = tcp.Listen(Multiaddr.Parse("/ip4/127.0.0.1/tcp/0"), 8, reusePort: false);
                cleanup.Add(() => { listener.Dispose(); return ValueTask.CompletedTask; });
                var accepting = listener.AcceptAsync(ct);
                var dialed = await tcp.DialAsync(listener.Address, null, ct).ConfigureAwait(false);
                var accepted = await accepting.ConfigureAwait(false);
                cleanup.Add(() => { dialed.Abort(); return dialed.DisposeAsync(); });
                cleanup.Add(() => { accepted.Abort(); return accepted.DisposeAsync(); });
                (a, b) = (dialed.Transport, accepted.Transport);
            }
            else if (layer.StartsWith("kestrel", StringComparison.Ordinal))
            {
                var factory = new SocketConnectionContextFactory(new SocketConnectionFactoryOptions
                {
                    MaxReadBufferSize = KestrelBufferBytes,
                    MaxWriteBufferSize = KestrelBufferBytes,
                    UnsafePreferInlineScheduling = true,
                    WaitForDataBeforeAllocatingBuffer = !layer.StartsWith("kestrel-nowait", StringComparison.Ordinal),
                }, NullLogger.Instance);
                cleanup.Add(() => { factory.Dispose(); return ValueTask.CompletedTask; });
                var (s1, s2) = await ConnectedSocketsAsync(ct).ConfigureAwait(false);
                var c1 = factory.Create(s1);
                var c2 = factory.Create(s2);
                cleanup.Add(() => { c1.Abort(); return c1.DisposeAsync(); });
                cleanup.Add(() => { c2.Abort(); return c2.DisposeAsync(); });
                (a, b) = (c1.Transport, c2.Transport);
            }
            else
            {
                var opts = new PipeOptions(pauseWriterThreshold: MemPipeBytes, resumeWriterThreshold: MemPipeBytes / 2, useSynchronizationContext: false);
                (a, b) = DuplexPipePair.Create(opts);
            }

            if (layer.Contains("noise", StringComparison.Ordinal))
            {
                var ka = Ed25519PrivateKey.Generate();
                var kb = Ed25519PrivateKey.Generate();
                var sa = NoiseSecurity.SecureOutboundAsync(a, ka, kb.PeerId, new NoiseOptions(), NullLogger.Instance, ct);
                var sb = NoiseSecurity.SecureInboundAsync(b, kb, new NoiseOptions(), NullLogger.Instance, ct);
                var (ca, cb) = (await sa.ConfigureAwait(false), await sb.ConfigureAwait(false));
                cleanup.Insert(0, () => ca.DisposeAsync());
                cleanup.Insert(0, () => cb.DisposeAsync());
                (a, b) = (ca, cb);
            }

            if (layer.EndsWith("yamux", StringComparison.Ordinal))
            {
                var ya = new YamuxSession(a, isInitiator: true, new YamuxOptions(), NullLogger.Instance, TimeProvider.System);
                var yb = new YamuxSession(b, isInitiator: false, new YamuxOptions(), NullLogger.Instance, TimeProvider.System);
                ya.Start();
                yb.Start();
                cleanup.Insert(0, () => ya.DisposeAsync());
                cleanup.Insert(0, () => yb.DisposeAsync());
                var sa = await ya.OpenStreamAsync(ct).ConfigureAwait(false);
                // the SYN goes out with the first frame; push one byte so the other side sees the stream
                await sa.Output.WriteAsync(new byte[1], ct).ConfigureAwait(false);
                var sb = await yb.AcceptStreamAsync(ct).ConfigureAwait(false) ?? throw new InvalidOperationException("yamux: no inbound stream");
                var one = await sb.Input.ReadAtLeastAsync(1, ct).ConfigureAwait(false);
                sb.Input.AdvanceTo(one.Buffer.GetPosition(1));
                (a, b) = (sa, sb);
            }

            await PumpAsync(a.Output, b.Input, WarmupBytes, ct).ConfigureAwait(false);
            trace?.Start();
            var before = ProcessSnapshot.Take(preciseAlloc: true);
            var seconds = await PumpAsync(a.Output, b.Input, bytes, ct).ConfigureAwait(false);
            var after = ProcessSnapshot.Take(preciseAlloc: true);
            trace?.Stop();
            var r = new Dictionary<string, object?>
            {
                ["seconds"] = Stats.Round(seconds, 4),
                ["mibPerSec"] = Stats.MibPerSec(bytes, seconds),
                ["allocBytesPerMiB"] = Stats.Round((after.Allocated - before.Allocated) / (bytes / Stats.MiB), 1),
                ["gen0"] = after.Gen0 - before.Gen0,
            };
            ProcessSnapshot.AddCpu(r, before, after);
            if (trace is not null) r["sampledAllocBytesPerMiBByType"] = trace.Report(bytes);
            return r;
        }
        finally
        {
            foreach (var c in cleanup)
            {
                try { await c().ConfigureAwait(false); }
                catch (Exception ex) { Console.Error.WriteLine($"layer {layer}: cleanup: {ex.GetType().Name}: {ex.Message}"); }
            }
        }
    }

    /// <summary>
    /// Weft's TcpTransport, built through whichever public constructor it has (its signature has changed while the
    /// transport was being reworked): ILogger parameters get NullLogger, others their default.
    /// </summary>
    private static TcpTransport NewTcpTransport()
    {
        var ctor = typeof(TcpTransport).GetConstructors().OrderBy(c => c.GetParameters().Length).First();
        var args = ctor.GetParameters()
            .Select(p => p.ParameterType.IsInstanceOfType(NullLogger.Instance) ? NullLogger.Instance : p.HasDefaultValue ? p.DefaultValue : null)
            .ToArray();
        return (TcpTransport)ctor.Invoke(args);
    }

    private static async Task<(Socket Dialed, Socket Accepted)> ConnectedSocketsAsync(CancellationToken ct)
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(1);
        var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        var accepting = listener.AcceptAsync(ct).AsTask();
        await client.ConnectAsync(listener.LocalEndPoint!, ct).ConfigureAwait(false);
        var server = await accepting.ConfigureAwait(false);
        server.NoDelay = true;
        return (client, server);
    }

    /// <summary>Writes <paramref name="bytes"/> to <paramref name="tx"/> while reading them from <paramref name="rx"/>; returns the seconds taken.</summary>
    private static async Task<double> PumpAsync(PipeWriter tx, PipeReader rx, long bytes, CancellationToken ct)
    {
        var start = Stopwatch.GetTimestamp();
        var reading = Task.Run(async () =>
        {
            long got = 0;
            while (got < bytes)
            {
                var r = await rx.ReadAsync(ct).ConfigureAwait(false);
                var n = r.Buffer.Length;
                got += n;
                rx.AdvanceTo(r.Buffer.End);
                if (r.IsCompleted && got < bytes) throw new EndOfStreamException($"closed after {got} of {bytes} bytes");
            }
            if (got != bytes) throw new InvalidOperationException($"read {got} bytes, expected {bytes}");
        }, ct);
        var writing = Task.Run(async () =>
        {
            var left = bytes;
            while (left > 0)
            {
                var n = (int)Math.Min(left, ChunkSize);
                var mem = tx.GetMemory(n);
                n = Math.Min(n, mem.Length);
                mem.Span[..n].Clear();
                tx.Advance(n);
                left -= n;
                var f = await tx.FlushAsync(ct).ConfigureAwait(false);
                if (f.IsCompleted && left > 0) throw new EndOfStreamException("the reader stopped");
            }
        }, ct);
        await Task.WhenAll(writing, reading).ConfigureAwait(false);
        return Stopwatch.GetElapsedTime(start).TotalSeconds;
    }
}
