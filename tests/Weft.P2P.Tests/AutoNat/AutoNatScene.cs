using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using Weft.P2P.AutoNat;
using Weft.P2P.Host;
using Weft.P2P.IO;
using Weft.Wire.AutoNat;
using Weft.Wire.Multiformats;
using static Weft.P2P.Tests.Host.Hosts;

namespace Weft.P2P.Tests.AutoNat;

/// <summary>Helpers for the AutoNAT tests: hosts on 127.0.0.1 with loopback allowed, scripted servers, raw listeners.</summary>
internal static class AutoNatScene
{
    /// <summary>A server that dials loopback (every test host is on 127.0.0.1).</summary>
    public static AutoNatServerOptions LoopbackServer => new() { AllowLoopbackAddresses = true };

    public static AutoNatClientOptions LoopbackClient => new() { AllowLoopbackCandidates = true };

    /// <summary>Dials <paramref name="to"/> and waits until identify told us its protocols.</summary>
    public static async Task<Connection> ConnectAsync(Libp2pHost from, Libp2pHost to)
    {
        var conn = await from.DialAsync(AddressOf(to)).WaitAsync(Deadline);
        await conn.Identified.WaitAsync(Deadline);
        return conn;
    }

    public static Task<AutoNatDialResponse> RequestAsync(Connection conn, AutoNatMessage request) =>
        AutoNatClient.RequestAsync(conn, request, CancellationToken.None).WaitAsync(Deadline);

    /// <summary>A TCP address on 127.0.0.1 where nothing listens (bound, then released).</summary>
    public static Multiaddr DeadAddress()
    {
        var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        var ep = (IPEndPoint)l.LocalEndpoint;
        l.Stop();
        return Multiaddr.FromTcp(ep);
    }

    /// <summary>A TCP listener that completes handshakes in its backlog but never speaks: a dial to it hangs in the upgrade.</summary>
    public static (TcpListener Listener, Multiaddr Address) Silent(string ip = "127.0.0.1")
    {
        var l = new TcpListener(IPAddress.Parse(ip), 0);
        l.Start();
        return (l, Multiaddr.FromTcp((IPEndPoint)l.LocalEndpoint));
    }

    /// <summary>Waits until <paramref name="count"/> of <paramref name="client"/>'s probes have completed.</summary>
    public static Task Probes(AutoNatClient client, int count)
    {
        var tcs = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var n = 0;
        client.ProbeCompleted += _ => { if (Interlocked.Increment(ref n) >= count) tcs.TrySetResult(); };
        return tcs.Task.WaitAsync(Deadline);
    }

    public static Task<Reachability> NextChange(AutoNatClient client)
    {
        var tcs = new TaskCompletionSource<Reachability>(TaskCreationOptions.RunContinuationsAsynchronously);
        client.ReachabilityChanged += r => tcs.TrySetResult(r);
        return tcs.Task.WaitAsync(Deadline);
    }
}

/// <summary>
/// An AutoNAT "server" that dials nothing and answers from a script: each request takes the next status
/// (the last one repeats); OK carries the address <see cref="OkAddress"/> picks from the request.
/// </summary>
internal sealed class ScriptedServer
{
    private readonly ConcurrentQueue<AutoNatResponseStatus> _script = new();
    private AutoNatResponseStatus _last = AutoNatResponseStatus.Ok;
    private int _requests;

    public ScriptedServer(Libp2pHost host)
    {
        host.Handle(AutoNatMessage.ProtocolId, AnswerAsync);
    }

    public int Requests => Volatile.Read(ref _requests);

    public ConcurrentQueue<AutoNatPeerInfo> Received { get; } = new();

    /// <summary>Chooses the address an OK carries; default: the first one asked about.</summary>
    public Func<IReadOnlyList<Multiaddr>, Multiaddr?> OkAddress { get; set; } = addrs => addrs.Count > 0 ? addrs[0] : null;

    public void Then(params AutoNatResponseStatus[] statuses)
    {
        foreach (var s in statuses) _script.Enqueue(s);
    }

    private async Task AnswerAsync(IncomingStream s, CancellationToken ct)
    {
        var request = (await s.Stream.Input.ReadAsync<AutoNatMessage?>(AutoNatMessage.TryRead, ct))!;
        var info = request.Dial?.Peer ?? new AutoNatPeerInfo();
        Received.Enqueue(info);
        if (_script.TryDequeue(out var next)) _last = next;
        Interlocked.Increment(ref _requests);
        var status = _last;
        AutoNatMessage.Response(status, "scripted", status == AutoNatResponseStatus.Ok ? OkAddress(info.Addrs) : null).WriteLengthPrefixedTo(s.Stream.Output);
        await s.Stream.Output.FlushAsync(ct);
        await s.Stream.Output.CompleteAsync();
    }
}
