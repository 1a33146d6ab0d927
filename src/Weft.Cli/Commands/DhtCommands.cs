using System.Globalization;
using System.Text;
using Microsoft.Extensions.Logging;
using Weft.P2P.Host;
using Weft.P2P.Kad;
using Weft.P2P.Relay;
using Weft.Wire.Identity;
using Weft.Wire.Kad;
using Weft.Wire.Multiformats;

namespace Weft.Cli.Commands;

/// <summary>`weft p2p dht ...`: one-shot DHT client operations, and the DHT options `weft p2p serve` shares.</summary>
public static class DhtCommands
{
    public const string Usage =
        "weft p2p dht put KEY VALUE | get KEY | provide KEY | find-providers KEY | find-peer PEERID\n" +
        "             --bootstrap MULTIADDR... [--lan] [--psk PATH] [--listen MULTIADDR]... [--timeout SECONDS]\n" +
        "  KEY of put/get: /NAMESPACE/NAME, or NAME for /weft/NAME; KEY of provide/find-providers: a CID, or any text\n" +
        "  (standing for the CID v1 raw of its sha2-256, as an EdgeMesh rendezvous string does)";

    /// <summary>The record namespace of keys given without one.</summary>
    public const string DefaultNamespace = "weft";

    /// <summary>Validators of the CLI's DHT: /pk/ plus opaque values under /weft/.</summary>
    public static RecordValidators Validators { get; } = RecordValidators.Default.With(DefaultNamespace, new OpaqueRecordValidator());

    /// <summary>Parses --bootstrap values (each must end with /p2p/ID), adding problems to <paramref name="problems"/>.</summary>
    internal static List<Multiaddr> ParseBootstrap(IEnumerable<string> values, List<string> problems)
    {
        var list = new List<Multiaddr>();
        foreach (var s in values)
        {
            if (!Multiaddr.TryParse(s, out var a)) problems.Add($"--bootstrap '{s}' is not a valid multiaddr");
            else if (a.PeerId is null) problems.Add($"--bootstrap {a}: the address must end with /p2p/<peer id>");
            else list.Add(a);
        }
        return list;
    }

    /// <summary>The record key of a command-line KEY: as given when it starts with '/', else /weft/KEY.</summary>
    public static byte[] RecordKey(string key) => Encoding.UTF8.GetBytes(key.StartsWith('/') ? key : $"/{DefaultNamespace}/{key}");

    public static async Task<int> RunAsync(string[] argv, ILoggerFactory loggers, CancellationToken ct)
    {
        var a = Args.Parse(argv, Usage, ["--bootstrap", "--psk", "--listen", "--timeout"], ["--lan"]);
        var (verb, operands) = a.Positionals.Count > 0 ? (a.Positionals[0], a.Positionals.Skip(1).ToList()) : ("", []);
        var want = verb switch { "put" => 2, "get" or "provide" or "find-providers" or "find-peer" => 1, _ => -1 };
        var problems = new List<string>();
        if (want < 0) problems.Add(verb.Length == 0 ? "expected an operation" : $"unknown operation '{verb}'");
        else if (operands.Count != want) problems.Add($"{verb} takes {want} argument{(want == 1 ? "" : "s")}, got {operands.Count}");
        var bootstrap = ParseBootstrap(a.GetAll("--bootstrap"), problems);
        if (bootstrap.Count == 0) problems.Add("--bootstrap MULTIADDR is required (a DHT server to start from)");
        var listen = new List<Multiaddr>();
        foreach (var l in a.GetAll("--listen"))
        {
            if (!Multiaddr.TryParse(l, out var m) || !m.TryGetTcpEndPoint(out _)) problems.Add($"--listen '{l}': expected /ip4/ADDR/tcp/PORT or /ip6/ADDR/tcp/PORT");
            else listen.Add(m);
        }
        PeerId? target = null;
        if (verb == "find-peer" && operands.Count == 1 && !PeerId.TryParse(operands[0], out target)) problems.Add($"'{operands[0]}' is not a peer ID");
        var timeout = a.GetInt("--timeout", 60, 1, 3600);
        if (problems.Count > 0) throw new UsageException(string.Join("\n", problems) + "\nusage: " + Usage);

        var options = (a.Has("--lan") ? KadOptions.Lan : new KadOptions()) with
        {
            Mode = KadMode.Client,
            BootstrapPeers = bootstrap,
            Validators = Validators,
            QueryTimeout = TimeSpan.FromSeconds(timeout),
            // One machine may run several DHT nodes in tests and labs; a one-shot client keeps no table worth guarding.
            MaxPeersPerIpPerBucket = 0,
        };
        var host = new Libp2pHost(new HostOptions { Key = Ed25519PrivateKey.Generate(), ListenAddresses = listen, PrivateNetworkKey = P2PCommands.LoadPsk(a.Get("--psk")) }, loggers);
        await using (host.ConfigureAwait(false))
        {
            RelayClient.Register(host);
            await host.StartAsync(ct).ConfigureAwait(false);
            var dht = new KadDht(host, options);
            await using (dht.ConfigureAwait(false))
            {
                using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
                cts.CancelAfter(TimeSpan.FromSeconds(timeout));
                if (await dht.JoinAsync(cts.Token).ConfigureAwait(false) == 0)
                    throw new InvalidOperationException("no bootstrap peer serving " + options.Protocol + " could be reached");
                return verb switch
                {
                    "put" => Report(await dht.PutValueAsync(RecordKey(operands[0]), Encoding.UTF8.GetBytes(operands[1]), cts.Token).ConfigureAwait(false), $"stored {operands[0]}"),
                    "get" => await GetAsync(dht, operands[0], cts.Token).ConfigureAwait(false),
                    "provide" => ProvideReport(await dht.ProvideAsync(ContentKey.Parse(operands[0]), cts.Token).ConfigureAwait(false), ContentKey.Parse(operands[0]), listen.Count == 0),
                    "find-providers" => await FindProvidersAsync(dht, operands[0], cts.Token).ConfigureAwait(false),
                    _ => await FindPeerAsync(dht, target!, cts.Token).ConfigureAwait(false),
                };
            }
        }
    }

    private static int Report(KadStoreResult r, string what)
    {
        Console.WriteLine($"{what} on {r.Stored} of {r.Tried} peers");
        Stats(r.Stats);
        return r.Stored > 0 ? WeftCli.ExitOk : WeftCli.ExitFailed;
    }

    private static int ProvideReport(KadStoreResult r, ContentKey key, bool noAddresses)
    {
        if (noAddresses) Console.Error.WriteLine("weft: note: without --listen the provider record carries no address (js-libp2p ignores such records)");
        return Report(r, $"providing {key.ToCidString()}");
    }

    private static void Stats(KadQueryStats s) =>
        Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"weft: lookup: {s.Hops} hop(s), {s.Queried} peer(s) asked, {s.Responded} answered, {s.Failed} failed, {s.Elapsed.TotalMilliseconds:0.0} ms"));

    private static async Task<int> GetAsync(KadDht dht, string key, CancellationToken ct)
    {
        var v = await dht.GetValueAsync(RecordKey(key), ct).ConfigureAwait(false);
        if (v is null) throw new InvalidOperationException($"no value found for {Encoding.UTF8.GetString(RecordKey(key))}");
        Console.WriteLine(Encoding.UTF8.GetString(v.Record.Value));
        Stats(v.Stats);
        return WeftCli.ExitOk;
    }

    private static async Task<int> FindProvidersAsync(KadDht dht, string key, CancellationToken ct)
    {
        var r = await dht.FindProvidersAsync(ContentKey.Parse(key), ct: ct).ConfigureAwait(false);
        foreach (var p in r.Providers) Console.WriteLine(string.Join(' ', [$"provider {p.Id}", .. p.Addresses.Select(x => x.ToString())]));
        Stats(r.Stats);
        if (r.Providers.Count == 0) throw new InvalidOperationException($"no provider found for {ContentKey.Parse(key).ToCidString()}");
        return WeftCli.ExitOk;
    }

    private static async Task<int> FindPeerAsync(KadDht dht, PeerId peer, CancellationToken ct)
    {
        var r = await dht.FindPeerAsync(peer, ct).ConfigureAwait(false) ?? throw new InvalidOperationException($"peer {peer} not found");
        Console.WriteLine(string.Join(' ', [$"peer {r.Peer}", .. r.Addresses.Select(x => x.ToString())]));
        Stats(r.Stats);
        return WeftCli.ExitOk;
    }
}
