using System.Globalization;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Weft.Mesh.Identity;
using Weft.P2P.AutoNat;
using Weft.P2P.Dcutr;
using Weft.P2P.Discovery;
using Weft.P2P.Echo;
using Weft.P2P.Host;
using Weft.P2P.Kad;
using Weft.P2P.Mdns;
using Weft.P2P.Perf;
using Weft.P2P.Ping;
using Weft.P2P.Relay;
using Weft.Wire.Identity;
using Weft.Wire.Multiformats;
using Weft.Wire.Pnet;

namespace Weft.Cli.Commands;

public static class P2PCommands
{
    /// <summary>Where `weft p2p serve` listens without --listen: loopback only, a free port.</summary>
    public const string DefaultListen = "/ip4/127.0.0.1/tcp/0";

    /// <summary>Largest PSK file we read.</summary>
    public const int MaxPskFileBytes = 64 * 1024;

    public const string ServeUsage =
        "weft p2p serve [--listen MULTIADDR]... [--key PATH] [--psk PATH] [--reserve RELAY_MULTIADDR]... [--max-connections N]\n" +
        "               [--relay-service [--relay-limits default|off] [--relay-max-reservations N] [--relay-max-reservations-per-ip N]\n" +
        "                                [--relay-max-circuits N] [--relay-max-circuits-per-peer N]]\n" +
        "               [--mdns] [--rendezvous NAME] [--dht client|server [--bootstrap MULTIADDR]...]";

    private static readonly string[] RelayCaps =
        ["--relay-max-reservations", "--relay-max-reservations-per-ip", "--relay-max-circuits", "--relay-max-circuits-per-peer"];

    /// <summary>Largest value any --relay-max-* flag accepts.</summary>
    public const int MaxRelayCap = 1_000_000;

    public static async Task<int> ServeAsync(string[] argv, ILoggerFactory loggers, CancellationToken ct)
    {
        const string usage = ServeUsage;
        var a = Args.Parse(argv, usage, ["--listen", "--key", "--psk", "--relay-limits", "--reserve", "--max-connections", "--rendezvous", "--dht", "--bootstrap", .. RelayCaps], ["--relay-service", "--mdns"]);
        if (a.Positionals.Count > 0) throw new UsageException($"unexpected argument '{a.Positionals[0]}'\nusage: {usage}");
        var problems = new List<string>();
        var listen = new List<Multiaddr>();
        foreach (var s in a.GetAll("--listen").Count > 0 ? a.GetAll("--listen") : [DefaultListen])
        {
            if (!TryParseAddr(s, "--listen", problems, out var l)) continue;
            if (!l.TryGetTcpEndPoint(out _)) problems.Add($"--listen {l}: only /ip4/ADDR/tcp/PORT and /ip6/ADDR/tcp/PORT can be listened on");
            else listen.Add(l);
        }
        var relays = new List<Multiaddr>();
        foreach (var s in a.GetAll("--reserve"))
        {
            if (!TryParseAddr(s, "--reserve", problems, out var r)) continue;
            if (r.PeerId is null) problems.Add($"--reserve {r}: the relay address must end with /p2p/<relay peer id>");
            else if (r.IsCircuit) problems.Add($"--reserve {r}: a relay is reserved on directly, not through another relay");
            else relays.Add(r);
        }
        if (relays.Count > RelayReservations.MaxRelays) problems.Add($"--reserve: at most {RelayReservations.MaxRelays} relays");
        RelayLimitPolicy? limits = null;
        switch (a.Get("--relay-limits"))
        {
            case null: limits = RelayLimitPolicy.Default; break;
            case "default": limits = RelayLimitPolicy.Default; break;
            case "off": limits = RelayLimitPolicy.Off; break;
            case var other: problems.Add($"--relay-limits {other}: expected 'default' (2 min and 128 KiB per circuit) or 'off' (unlimited)"); break;
        }
        foreach (var flag in (string[])["--relay-limits", .. RelayCaps])
            if (a.Get(flag) is not null && !a.Has("--relay-service")) problems.Add($"{flag} needs --relay-service");
        var relayOptions = new RelayServerOptions { Limit = limits ?? RelayLimitPolicy.Default };
        int Cap(string flag, int fallback)
        {
            if (a.Get(flag) is not { } v) return fallback;
            if (int.TryParse(v, System.Globalization.NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n is >= 1 and <= MaxRelayCap) return n;
            problems.Add($"{flag} {v}: expected a whole number from 1 to {MaxRelayCap}");
            return fallback;
        }
        relayOptions = relayOptions with
        {
            MaxReservations = Cap("--relay-max-reservations", relayOptions.MaxReservations),
            MaxReservationsPerIp = Cap("--relay-max-reservations-per-ip", relayOptions.MaxReservationsPerIp),
            MaxCircuits = Cap("--relay-max-circuits", relayOptions.MaxCircuits),
            MaxCircuitsPerPeer = Cap("--relay-max-circuits-per-peer", relayOptions.MaxCircuitsPerPeer),
        };
        var limitsDefault = new ConnectionLimits();
        var connLimits = limitsDefault with { MaxConnections = Cap("--max-connections", limitsDefault.MaxConnections) };
        if (a.Has("--relay-service") && relayOptions.MaxReservations > connLimits.MaxConnections)
            problems.Add($"--relay-max-reservations {relayOptions.MaxReservations} is more than --max-connections {connLimits.MaxConnections}: every reservation holds a connection; raise --max-connections");
        var discovery = ParseDiscovery(a, problems);
        if (problems.Count > 0) throw new UsageException(string.Join("\n", problems) + $"\nusage: {usage}");

        Ed25519PrivateKey key;
        if (a.Get("--key") is { } keyPath)
        {
            (key, var created) = KeyFiles.LoadOrCreate(keyPath);
            if (created) await Console.Error.WriteLineAsync($"weft: created a new identity key at {keyPath}").ConfigureAwait(false);
        }
        else
        {
            key = Ed25519PrivateKey.Generate();
        }
        var host = new Libp2pHost(new HostOptions { Key = key, ListenAddresses = listen, PrivateNetworkKey = LoadPsk(a.Get("--psk")), Limits = connLimits }, loggers);
        await using (host.ConfigureAwait(false))
        {
            var output = new LineWriter();
            PingService.Register(host);
            EchoService.Register(host);
            PerfService.Register(host);
            RelayClient.Register(host);
            using var dcutr = DcutrService.Register(host);
            dcutr.Completed += r => output.Write(DescribePunch(r));
            using var relayServer = a.Has("--relay-service") ? RelayServer.Register(host, relayOptions) : null;
            // A relay is reachable by definition: it also tells others whether they are (AutoNAT dial-back).
            using var autonatServer = a.Has("--relay-service") ? AutoNatServer.Register(host) : null;
            var autonat = new AutoNatClient(host);
            await using var autonatLifetime = autonat.ConfigureAwait(false);
            autonat.ReachabilityChanged += r => output.Write(r == Reachability.Public
                ? $"reachability public {string.Join(' ', autonat.PublicAddresses)}"
                : $"reachability {r.ToString().ToLowerInvariant()}");
            await host.StartAsync(ct).ConfigureAwait(false);
            foreach (var addr in host.ListenAddresses) output.Write($"listening {addr}/p2p/{host.PeerId}");
            if (relayServer is not null)
                output.Write($"relay service on, limits {(relayOptions.Limit.IsOff ? "off" : "default")}, reservations {relayOptions.MaxReservations} ({relayOptions.MaxReservationsPerIp} per IP), circuits {relayOptions.MaxCircuits} ({relayOptions.MaxCircuitsPerPeer} per peer)");

            await using var found = await StartDiscoveryAsync(host, discovery, output).ConfigureAwait(false);
            var reservations = new RelayReservations(host, relays);
            await using (reservations.ConfigureAwait(false))
            {
                var announced = new HashSet<Multiaddr>();
                reservations.Reserved += r =>
                {
                    output.Write(string.Create(CultureInfo.InvariantCulture, $"reserved on {r.Relay} until {r.Expire:yyyy-MM-ddTHH:mm:ssZ}"));
                    lock (announced)
                        foreach (var c in r.CircuitAddresses)
                            if (announced.Add(c)) output.Write($"listening {c}/p2p/{host.PeerId}");
                };
                reservations.Lost += (relay, why) =>
                {
                    output.Write($"reservation lost on {relay}: {why}");
                    lock (announced) announced.RemoveWhere(c => c.Decapsulate(MultiaddrProtocol.P2PCircuit)?.PeerId == relay);
                };
                reservations.Start();
                autonat.Start();
                try
                {
                    await Task.Delay(Timeout.Infinite, ct).ConfigureAwait(false);
                }
                catch (OperationCanceledException) { }
            }
        }
        return WeftCli.ExitOk;
    }

    /// <summary>What `serve` was asked to discover with.</summary>
    private sealed record DiscoveryFlags(bool Mdns, string? Rendezvous, KadMode? Dht, IReadOnlyList<Multiaddr> Bootstrap);

    private static DiscoveryFlags ParseDiscovery(Args a, List<string> problems)
    {
        KadMode? dht = a.Get("--dht") switch
        {
            null => null,
            "client" => KadMode.Client,
            "server" => KadMode.Server,
            var other => Problem(problems, $"--dht {other}: expected 'client' (ask only) or 'server' (also answer, and be in others' tables)"),
        };
        var bootstrap = DhtCommands.ParseBootstrap(a.GetAll("--bootstrap"), problems);
        if (bootstrap.Count > 0 && a.Get("--dht") is null) problems.Add("--bootstrap needs --dht client|server");
        var rendezvous = a.Get("--rendezvous");
        if (rendezvous is not null && !a.Has("--mdns") && a.Get("--dht") is null) problems.Add("--rendezvous needs --mdns or --dht");
        if (rendezvous is "") problems.Add("--rendezvous must not be empty");
        return new DiscoveryFlags(a.Has("--mdns"), rendezvous, dht, bootstrap);
    }

    private static KadMode? Problem(List<string> problems, string text)
    {
        problems.Add(text);
        return null;
    }

    /// <summary>The discovery services `serve` runs; disposing stops them.</summary>
    private sealed class DiscoveryServices : IAsyncDisposable
    {
        public MdnsService? Mdns { get; set; }
        public KadDht? Dht { get; set; }
        public RendezvousService? Rendezvous { get; set; }

        public async ValueTask DisposeAsync()
        {
            if (Rendezvous is not null) await Rendezvous.DisposeAsync().ConfigureAwait(false);
            if (Dht is not null) await Dht.DisposeAsync().ConfigureAwait(false);
            if (Mdns is not null) await Mdns.DisposeAsync().ConfigureAwait(false);
        }
    }

    /// <summary>
    /// mDNS (libp2p's service, or RENDEZVOUS.local with --rendezvous), the DHT, and with both --dht and --rendezvous
    /// the DHT rendezvous; prints "discovered PEERID MULTIADDR" once per peer, whoever found it first.
    /// </summary>
    private static async Task<DiscoveryServices> StartDiscoveryAsync(Libp2pHost host, DiscoveryFlags flags, LineWriter output)
    {
        var services = new DiscoveryServices();
        var printed = new HashSet<PeerId>();
        void OnDiscovered(PeerDiscovery d)
        {
            lock (printed)
                if (!printed.Add(d.Peer)) return;
            var addr = d.Addresses.FirstOrDefault(x => !(x.TryGetTcpEndPoint(out var ep) && System.Net.IPAddress.IsLoopback(ep.Address))) ?? d.Addresses[0];
            output.Write($"discovered {d.Peer} {addr}");
        }
        try
        {
            if (flags.Mdns)
            {
                services.Mdns = new MdnsService(host, flags.Rendezvous is null ? new MdnsOptions() : MdnsOptions.ForRendezvous(flags.Rendezvous));
                services.Mdns.Discovered += OnDiscovered;
                services.Mdns.Start();
                output.Write($"mdns {services.Mdns.Options.ServiceName} on {(services.Mdns.Interfaces.Count == 0 ? "no interface" : string.Join(' ', services.Mdns.Interfaces.Select(i => i.Name)))}");
                if (MdnsRecords.Response(services.Mdns.Self, host.AdvertisedAddresses, 120, services.Mdns.Options.MaxResponseSize) is null)
                    await Console.Error.WriteLineAsync("weft: mDNS has nothing to announce (only loopback addresses); listen on a LAN address, e.g. --listen /ip4/0.0.0.0/tcp/4001").ConfigureAwait(false);
            }
            if (flags.Dht is { } mode)
            {
                services.Dht = new KadDht(host, new KadOptions { Mode = mode, BootstrapPeers = flags.Bootstrap, Validators = DhtCommands.Validators });
                services.Dht.Refreshed += n => output.Write($"dht table {n} peers");
                services.Dht.Start();
                output.Write($"dht {mode.ToString().ToLowerInvariant()} {services.Dht.Options.Protocol}");
                if (flags.Rendezvous is { } r)
                {
                    services.Rendezvous = new RendezvousService(host, services.Dht, new RendezvousOptions { Rendezvous = r });
                    services.Rendezvous.Discovered += OnDiscovered;
                    services.Rendezvous.Start();
                    output.Write($"rendezvous {r} {services.Rendezvous.Key.ToCidString()}");
                }
            }
            return services;
        }
        catch
        {
            await services.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    private static string DescribePunch(DcutrResult r) => r.Succeeded
        ? string.Create(CultureInfo.InvariantCulture, $"direct {r.Peer} {r.Direct!.RemoteAddress} after {r.Elapsed.TotalMilliseconds:0.0} ms, {r.Attempts} attempt(s), relayed rtt {r.Rtt.TotalMilliseconds:0.000} ms")
        : $"relayed {r.Peer}: no direct connection after {r.Attempts} attempt(s): {r.Error}";

    private static bool TryParseAddr(string s, string what, List<string> problems, out Multiaddr addr)
    {
        try
        {
            addr = Multiaddr.Parse(s);
            return true;
        }
        catch (FormatException ex)
        {
            problems.Add($"{what} '{s}' is not a valid multiaddr: {ex.Message}");
            addr = null!;
            return false;
        }
    }

    public const string PingUsage = "weft p2p ping MULTIADDR [--count N] [--psk PATH] [--listen MULTIADDR]... [--wait-direct SECONDS]";

    public static async Task<int> PingAsync(string[] argv, ILoggerFactory loggers, CancellationToken ct)
    {
        const string usage = PingUsage;
        var a = Args.Parse(argv, usage, ["--count", "--psk", "--listen", "--wait-direct"]);
        if (a.Positionals.Count != 1) throw new UsageException($"expected one address\nusage: {usage}");
        var target = ParseAddr(a.Positionals[0], "address");
        var count = a.GetInt("--count", 4, 1, 1_000_000);
        var waitDirect = a.GetInt("--wait-direct", 0, 0, 3600);
        if (waitDirect > 0 && target.PeerId is null) throw new UsageException("--wait-direct needs the target's /p2p/<id> in the address");
        var listen = a.GetAll("--listen").Select(l => ParseAddr(l, "--listen")).ToList();
        foreach (var l in listen)
            if (!l.TryGetTcpEndPoint(out _)) throw new UsageException($"--listen {l}: only /ip4/ADDR/tcp/PORT and /ip6/ADDR/tcp/PORT can be listened on");
        var host = new Libp2pHost(new HostOptions { Key = Ed25519PrivateKey.Generate(), ListenAddresses = listen, PrivateNetworkKey = LoadPsk(a.Get("--psk")) }, loggers);
        await using (host.ConfigureAwait(false))
        {
            RelayClient.Register(host);
            using var dcutr = DcutrService.Register(host);
            await host.StartAsync(ct).ConfigureAwait(false);
            var started = host.Time.GetTimestamp();
            var conn = await host.DialAsync(target, ct).ConfigureAwait(false);
            Console.WriteLine($"connected to {conn.RemotePeer} at {conn.RemoteAddress} in {Ms(host.Time.GetElapsedTime(started))} ms");
            if (waitDirect > 0)
            {
                // A peer we reached through a relay starts a hole punch (DCUtR) once identify is done; wait for its outcome.
                var direct = await WaitDirectAsync(host, conn.RemotePeer, TimeSpan.FromSeconds(waitDirect), ct).ConfigureAwait(false);
                Console.WriteLine(direct is not null
                    ? $"path direct {direct.RemoteAddress} after {Ms(host.Time.GetElapsedTime(started))} ms"
                    : $"path relayed {conn.RemoteAddress} (no direct connection within {waitDirect} s)");
                conn = direct ?? conn;
            }
            var stream = await PingService.OpenAsync(conn, ct).ConfigureAwait(false);
            await using (stream.ConfigureAwait(false))
            {
                var rtts = new List<double>();
                for (var i = 1; i <= count; i++)
                {
                    var rtt = await PingService.PingAsync(stream, host.Time, ct).ConfigureAwait(false);
                    rtts.Add(rtt.TotalMilliseconds);
                    Console.WriteLine($"pong from {conn.RemotePeer}: seq={i} time={Ms(rtt)} ms");
                }
                rtts.Sort();
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{count} pings, rtt min/median/max = {rtts[0]:0.000}/{rtts[rtts.Count / 2]:0.000}/{rtts[^1]:0.000} ms"));
            }
        }
        return WeftCli.ExitOk;
    }

    private static async Task<Connection?> WaitDirectAsync(Libp2pHost host, PeerId peer, TimeSpan wait, CancellationToken ct)
    {
        var tcs = new TaskCompletionSource<Connection>(TaskCreationOptions.RunContinuationsAsynchronously);
        void On(Connection c) { if (c.RemotePeer == peer && !c.IsRelayed) tcs.TrySetResult(c); }
        host.ConnectionOpened += On;
        try
        {
            if (host.GetDirectConnection(peer) is { } now) return now;
            return await tcs.Task.WaitAsync(wait, ct).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            return null;
        }
        finally
        {
            host.ConnectionOpened -= On;
        }
    }

    public static async Task<int> PerfAsync(string[] argv, ILoggerFactory loggers, CancellationToken ct)
    {
        const string usage = "weft p2p perf MULTIADDR [--upload BYTES] [--download BYTES] [--psk PATH] [--json]";
        var a = Args.Parse(argv, usage, ["--upload", "--download", "--psk"], ["--json"]);
        if (a.Positionals.Count != 1) throw new UsageException($"expected one address\nusage: {usage}");
        var target = ParseAddr(a.Positionals[0], "address");
        var up = a.GetBytes("--upload", 64L << 20);
        var down = a.GetBytes("--download", 64L << 20);
        if (down > PerfService.MaxDownloadBytes) throw new UsageException($"--download is limited to {PerfService.MaxDownloadBytes} bytes");
        var host = DialOnlyHost(a, loggers);
        await using (host.ConfigureAwait(false))
        {
            var conn = await host.DialAsync(target, ct).ConfigureAwait(false);
            var r = await PerfService.RunAsync(conn, up, down, host.Time, ct).ConfigureAwait(false);
            if (a.Has("--json"))
            {
                Console.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object>
                {
                    ["uploadBytes"] = r.UploadBytes, ["uploadSeconds"] = r.UploadSeconds,
                    ["downloadBytes"] = r.DownloadBytes, ["downloadSeconds"] = r.DownloadSeconds,
                }));
            }
            else
            {
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"upload   {r.UploadBytes} bytes in {r.UploadSeconds:0.000} s = {Rate(r.UploadBytes, r.UploadSeconds)}"));
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"download {r.DownloadBytes} bytes in {r.DownloadSeconds:0.000} s = {Rate(r.DownloadBytes, r.DownloadSeconds)}"));
            }
        }
        return WeftCli.ExitOk;
    }

    /// <summary>A host for one-shot client commands: a fresh identity, listening nowhere, able to dial through relays.</summary>
    private static Libp2pHost DialOnlyHost(Args a, ILoggerFactory loggers)
    {
        var host = new Libp2pHost(new HostOptions { Key = Ed25519PrivateKey.Generate(), PrivateNetworkKey = LoadPsk(a.Get("--psk")) }, loggers);
        RelayClient.Register(host);
        return host;
    }

    internal static Multiaddr ParseAddr(string s, string what)
    {
        try
        {
            return Multiaddr.Parse(s);
        }
        catch (FormatException ex)
        {
            throw new UsageException($"{what} '{s}' is not a valid multiaddr: {ex.Message}");
        }
    }

    internal static byte[]? LoadPsk(string? path)
    {
        if (path is null) return null;
        var info = new FileInfo(path);
        if (!info.Exists) throw new UsageException($"--psk {path}: file does not exist");
        if (info.Length > MaxPskFileBytes) throw new UsageException($"--psk {path}: {info.Length} bytes is too large for a PSK file (limit {MaxPskFileBytes})");
        try
        {
            return PskFile.ParseKey(File.ReadAllBytes(path));
        }
        catch (FormatException ex)
        {
            throw new UsageException($"--psk {path}: {ex.Message}");
        }
    }

    private static string Ms(TimeSpan t) => t.TotalMilliseconds.ToString("0.000", CultureInfo.InvariantCulture);

    private static string Rate(long bytes, double seconds) =>
        seconds <= 0 ? "n/a" : string.Create(CultureInfo.InvariantCulture, $"{bytes / seconds / (1 << 20):0.0} MiB/s");
}
