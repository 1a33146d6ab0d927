using System.Diagnostics;
using System.Globalization;
using System.Net;

namespace Weft.Lab;

/// <summary>
/// A NAT lab in Linux network namespaces (needs root, <c>ip</c>, <c>iptables</c>, <c>sysctl</c>).
/// <code>
/// relay   10.250.0.1   ┐  (also "relay1"; public nodes named in LabOptions.DelayLinks reach the bridge through a delay)
/// relay2  10.250.0.2   │  (optional public nodes, LabOptions.ExtraPublicNodes: relay2, lb, cloud-a, cloud-b)
/// lb      10.250.0.30  │
/// cloud-a 10.250.0.31  ├─ bridge in "&lt;p&gt;pub" (10.250.0.254), the public segment; no forwarding there
/// cloud-b 10.250.0.32  │
/// router1 10.250.0.11  │
/// router2 10.250.0.12  ┘
/// router1: LAN bridge 192.168.1.1/24 ─ lan1-a 192.168.1.11, lan1-b 192.168.1.12
/// router2: LAN bridge 192.168.2.1/24 ─ lan2-a 192.168.2.21, lan2-b 192.168.2.22
/// </code>
/// Nothing is connected to the root namespace, and the root namespace's links, addresses, routes and
/// firewall are never touched: every command runs inside a namespace the lab created.
/// </summary>
public sealed class NatLab : IAsyncDisposable
{
    /// <summary>Node names every lab has (see <see cref="Namespace"/>, <see cref="Address"/>, <see cref="ExecAsync"/> and <see cref="Start"/>).</summary>
    public static readonly IReadOnlyList<string> Nodes = ["public", "relay", "router1", "router2", "lan1-a", "lan1-b", "lan2-a", "lan2-b"];

    /// <summary>Public nodes built only when named in <see cref="LabOptions.ExtraPublicNodes"/>.</summary>
    public static readonly IReadOnlyList<string> OptionalPublicNodes = ["relay2", "lb", "cloud-a", "cloud-b"];

    /// <summary>The LAN hosts.</summary>
    public static readonly IReadOnlyList<string> LanHosts = ["lan1-a", "lan1-b", "lan2-a", "lan2-b"];

    private static readonly TimeSpan TeardownTimeout = TimeSpan.FromSeconds(10);

    private static readonly Dictionary<string, (string Suffix, string Address)> NodeTable = new(StringComparer.Ordinal)
    {
        ["public"] = ("pub", "10.250.0.254"),
        ["relay"] = ("rel", "10.250.0.1"),
        ["relay1"] = ("rel", "10.250.0.1"),
        ["relay2"] = ("rl2", "10.250.0.2"),
        ["lb"] = ("lb", "10.250.0.30"),
        ["cloud-a"] = ("ca", "10.250.0.31"),
        ["cloud-b"] = ("cb", "10.250.0.32"),
        ["router1"] = ("r1", "10.250.0.11"),
        ["router2"] = ("r2", "10.250.0.12"),
        ["lan1-a"] = ("h11", "192.168.1.11"),
        ["lan1-b"] = ("h12", "192.168.1.12"),
        ["lan2-a"] = ("h21", "192.168.2.21"),
        ["lan2-b"] = ("h22", "192.168.2.22"),
    };

    private static readonly Lock CanRunLock = new();
    private static (bool Ok, string Why)? canRunCache;

    private readonly string ip;
    private readonly TimeSpan commandTimeout;
    private readonly List<string> createdNamespaces = [];
    private readonly List<Process> started = [];
    private readonly Dictionary<string, string> delayFiles = new(StringComparer.Ordinal);
    private readonly Lock gate = new();
    private int disposed;

    private NatLab(LabOptions options, string ipPath)
    {
        Options = options;
        ip = ipPath;
        commandTimeout = options.CommandTimeout;
    }

    /// <summary>The options this lab was built with.</summary>
    public LabOptions Options { get; }

    /// <summary>The prefix of every namespace and link name of this lab.</summary>
    public string Prefix => Options.Prefix;

    /// <summary>
    /// Builds the lab. On failure, deletes whatever it had created (namespaces and so their links) and rethrows.
    /// </summary>
    public static async Task<NatLab> CreateAsync(LabOptions options, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        LabOptions.ValidatePrefix(options.Prefix);
        foreach (string extra in options.ExtraPublicNodes)
        {
            if (!OptionalPublicNodes.Contains(extra) || options.ExtraPublicNodes.Count(x => x == extra) > 1)
            {
                throw new ArgumentException($"ExtraPublicNodes: '{extra}' is unknown or repeated; choose from {string.Join(", ", OptionalPublicNodes)}", nameof(options));
            }
        }

        string ipPath = Shell.Find("ip") ?? throw new InvalidOperationException("the 'ip' command (iproute2) was not found");
        var lab = new NatLab(options, ipPath);
        try
        {
            await lab.BuildAsync(ct).ConfigureAwait(false);
            return lab;
        }
        catch
        {
            await lab.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>The namespace name of a node (see <see cref="Nodes"/>).</summary>
    public string Namespace(string node) => Prefix + Lookup(node).Suffix;

    /// <summary>
    /// The node's own IPv4 address: LAN hosts have 192.168.x.y, routers their WAN (public) address,
    /// the relay 10.250.0.1 and "public" the public bridge's 10.250.0.254.
    /// </summary>
    public IPAddress Address(string node) => IPAddress.Parse(Lookup(node).Address);

    /// <summary>The address the public segment sees a node's traffic come from: its router's WAN address for LAN hosts, else its own address.</summary>
    public IPAddress PublicAddress(string node)
    {
        _ = Lookup(node);
        if (node.StartsWith("lan1-", StringComparison.Ordinal))
        {
            return Address("router1");
        }

        return node.StartsWith("lan2-", StringComparison.Ordinal) ? Address("router2") : Address(node);
    }

    /// <summary>The NAT mode of the router in front of a LAN host, or null for nodes on the public segment.</summary>
    public NatMode? NatOf(string node)
    {
        _ = Lookup(node);
        if (node.StartsWith("lan1-", StringComparison.Ordinal) || node == "router1")
        {
            return Options.Lan1Nat;
        }

        return node.StartsWith("lan2-", StringComparison.Ordinal) || node == "router2" ? Options.Lan2Nat : null;
    }

    /// <summary>
    /// Runs <c>ip netns exec NS argv...</c> to completion and returns its exit status and output (a non-zero status does not throw).
    /// Throws <see cref="LabCommandException"/> if it does not finish within <paramref name="timeout"/> (it is killed).
    /// </summary>
    public Task<(int ExitCode, string Stdout, string Stderr)> ExecAsync(string node, string[] argv, TimeSpan timeout, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(argv);
        ArgumentOutOfRangeException.ThrowIfZero(argv.Length);
        ThrowIfDisposed();
        return Shell.RunAsync(ip, NetnsExec(Namespace(node), argv), timeout, ct);
    }

    /// <summary>
    /// Starts a long-running process inside a node's namespace (<c>ip netns exec NS argv...</c>, which execs argv, so the
    /// returned process is argv itself). Stdin, stdout and stderr are redirected: read both output streams (or call
    /// BeginOutputReadLine/BeginErrorReadLine) so the process cannot block on a full pipe. Killed (not disposed, so
    /// HasExited and ExitCode stay readable) when the lab is disposed; the caller owns the returned object.
    /// </summary>
    public Process Start(string node, string[] argv)
    {
        ArgumentNullException.ThrowIfNull(argv);
        ArgumentOutOfRangeException.ThrowIfZero(argv.Length);
        string ns = Namespace(node);
        List<string> args = NetnsExec(ns, argv);
        var process = new Process { StartInfo = Shell.StartInfo(ip, args) };
        lock (gate)
        {
            try
            {
                ThrowIfDisposed();
                process.Start();
            }
            catch
            {
                process.Dispose();
                throw;
            }

            started.Add(process);
        }

        return process;
    }

    /// <summary>
    /// ICMP echo from a node to <paramref name="target"/>: true if a reply arrived within <paramref name="wait"/>.
    /// Uses <c>ping -c1 -W</c> if installed, else a raw-socket python3 probe.
    /// </summary>
    public async Task<bool> PingAsync(string node, IPAddress target, TimeSpan wait, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(target);
        int seconds = Math.Max(1, (int)Math.Ceiling(wait.TotalSeconds));
        string[] argv;
        string? ping = Shell.Find("ping");
        if (ping is not null)
        {
            argv = [ping, "-n", "-c1", "-W" + seconds.ToString(CultureInfo.InvariantCulture), target.ToString()];
        }
        else
        {
            string python = Shell.Find("python3") ?? throw new InvalidOperationException("neither 'ping' nor 'python3' is installed");
            argv = [python, "-c", PythonPing, target.ToString(), seconds.ToString(CultureInfo.InvariantCulture)];
        }

        var (code, _, _) = await ExecAsync(node, argv, TimeSpan.FromSeconds(seconds + 5), ct).ConfigureAwait(false);
        return code == 0;
    }

    /// <summary>
    /// Hands the namespaces over to the caller (<c>weft lab up</c> leaves them running): disposing no longer deletes
    /// them; <see cref="RemoveStale"/> with <see cref="Prefix"/> does. Processes started with <see cref="Start"/> are
    /// still killed on dispose.
    /// </summary>
    public void Detach()
    {
        lock (gate)
        {
            createdNamespaces.Clear();
            delayFiles.Clear();
        }
    }

    /// <summary>Locates an executable on PATH or in the usual system directories (e.g. "python3"), or null.</summary>
    public static string? FindExecutable(string name) => Shell.Find(name);

    /// <summary>Kills the started processes and everything else running in the lab's namespaces, then deletes the namespaces (and with them every link and bridge). Idempotent.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref disposed, 1) != 0)
        {
            return;
        }

        Process[] procs;
        string[] namespaces;
        lock (gate)
        {
            procs = [.. started];
            started.Clear();
            namespaces = [.. createdNamespaces];
            createdNamespaces.Clear();
            foreach (string file in delayFiles.Values)
            {
                File.Delete(file);
                File.Delete(file + ".tmp");
            }

            delayFiles.Clear();
        }

        foreach (Process p in procs)
        {
            Shell.KillQuietly(p);
        }

        foreach (Process p in procs)
        {
            try
            {
                await p.WaitForExitAsync().WaitAsync(TeardownTimeout).ConfigureAwait(false);
            }
            catch (TimeoutException)
            {
                // the namespace sweep below kills it by pid
            }
            catch (InvalidOperationException)
            {
                // never started
            }
        }

        List<Exception>? errors = null;
        IReadOnlyList<string> existing;
        try
        {
            existing = namespaces.Length == 0 ? [] : await ListNamespacesAsync(ip).ConfigureAwait(false);
        }
        catch (LabCommandException)
        {
            existing = namespaces; // cannot list: try to delete them all
        }

        for (int i = namespaces.Length - 1; i >= 0; i--)
        {
            if (!existing.Contains(namespaces[i]))
            {
                continue; // an interrupted "ip netns add" that never created it
            }

            try
            {
                await DeleteNamespaceAsync(ip, namespaces[i]).ConfigureAwait(false);
            }
            catch (LabCommandException e)
            {
                (errors ??= []).Add(e);
            }
        }

        if (errors is not null)
        {
            throw new AggregateException("the NAT lab could not delete every namespace", errors);
        }
    }

    /// <summary>Deletes every namespace whose name starts with <paramref name="prefix"/> (left over by a crashed run), killing what runs in it. Returns the names deleted.</summary>
    public static IReadOnlyList<string> RemoveStale(string prefix)
    {
        LabOptions.ValidatePrefix(prefix);
        string ipPath = Shell.Find("ip") ?? throw new InvalidOperationException("the 'ip' command (iproute2) was not found");
        return RemoveStaleAsync(ipPath, prefix).GetAwaiter().GetResult();
    }

    /// <summary>Lists the names of all network namespaces (<c>ip netns list</c>).</summary>
    public static IReadOnlyList<string> ListNamespaces()
    {
        string ipPath = Shell.Find("ip") ?? throw new InvalidOperationException("the 'ip' command (iproute2) was not found");
        return ListNamespacesAsync(ipPath).GetAwaiter().GetResult();
    }

    /// <summary>
    /// True if a lab can be built here: Linux, root, <c>ip</c>, <c>iptables</c> and <c>sysctl</c> present, and a scratch
    /// namespace can be created, used and deleted. Otherwise <paramref name="why"/> says what is missing. The result is cached.
    /// </summary>
    public static bool CanRun(out string why)
    {
        lock (CanRunLock)
        {
            canRunCache ??= Probe();
            why = canRunCache.Value.Why;
            return canRunCache.Value.Ok;
        }
    }

    private static (bool Ok, string Why) Probe()
    {
        if (!OperatingSystem.IsLinux())
        {
            return (false, "network namespaces need Linux");
        }

        if (!Environment.IsPrivilegedProcess)
        {
            return (false, $"not running as root (user '{Environment.UserName}')");
        }

        foreach (string tool in (string[])["ip", "iptables", "sysctl"])
        {
            if (Shell.Find(tool) is null)
            {
                return (false, $"'{tool}' is not installed");
            }
        }

        string ipPath = Shell.Find("ip")!;
        string ns = LabOptions.NewPrefix() + "probe";
        try
        {
            Shell.CheckAsync(ipPath, ["netns", "add", ns], TeardownTimeout).GetAwaiter().GetResult();
            try
            {
                Shell.CheckAsync(ipPath, ["-n", ns, "link", "set", "lo", "up"], TeardownTimeout).GetAwaiter().GetResult();
                Shell.CheckAsync(ipPath, ["netns", "exec", ns, Shell.Find("iptables")!, "-w", "-t", "nat", "-S"], TeardownTimeout)
                    .GetAwaiter().GetResult();
            }
            finally
            {
                Shell.CheckAsync(ipPath, ["netns", "del", ns], TeardownTimeout).GetAwaiter().GetResult();
            }
        }
        catch (LabCommandException e)
        {
            return (false, "network namespaces do not work here: " + e.Message);
        }

        return (true, "ok");
    }

    private (string Suffix, string Address) Lookup(string node)
    {
        ArgumentNullException.ThrowIfNull(node);
        if (OptionalPublicNodes.Contains(node) && !Options.ExtraPublicNodes.Contains(node))
            throw new ArgumentException($"lab node '{node}' was not built; name it in LabOptions.ExtraPublicNodes", nameof(node));
        return NodeTable.TryGetValue(node, out var entry)
            ? entry
            : throw new ArgumentException($"unknown lab node '{node}'; known: {string.Join(", ", Nodes.Concat(Options.ExtraPublicNodes))}", nameof(node));
    }

    private static List<string> NetnsExec(string ns, string[] argv)
    {
        var args = new List<string>(argv.Length + 3) { "netns", "exec", ns };
        args.AddRange(argv);
        return args;
    }

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(Volatile.Read(ref disposed) != 0, this);

    private Task Ip(CancellationToken ct, params string[] args) => Shell.CheckAsync(ip, args, commandTimeout, ct);

    private Task InNs(string ns, CancellationToken ct, params string[] argv) => Shell.CheckAsync(ip, NetnsExec(ns, argv), commandTimeout, ct);

    private async Task AddNamespaceAsync(string ns, CancellationToken ct)
    {
        // Tracked before the command runs: if it is cancelled or times out, it may still have created the namespace.
        lock (gate)
        {
            createdNamespaces.Add(ns);
        }

        try
        {
            await Ip(ct, "netns", "add", ns).ConfigureAwait(false);
        }
        catch (LabCommandException e) when (e.ExitCode > 0)
        {
            // ip refused (e.g. the name exists already): it did not create it, so it is not ours to delete.
            lock (gate)
            {
                createdNamespaces.Remove(ns);
            }

            throw;
        }

        await Ip(ct, "-n", ns, "link", "set", "lo", "up").ConfigureAwait(false);
    }

    /// <summary>Creates a veth pair inside <paramref name="ns"/> whose peer end goes straight into <paramref name="peerNs"/>.</summary>
    private Task VethAsync(string ns, string name, string peerNs, string peerName, CancellationToken ct) =>
        Ip(ct, "-n", ns, "link", "add", name, "type", "veth", "peer", "name", peerName, "netns", peerNs);

    private async Task BridgeAsync(string ns, string name, string? cidr, CancellationToken ct)
    {
        await Ip(ct, "-n", ns, "link", "add", name, "type", "bridge").ConfigureAwait(false);
        if (cidr is not null)
        {
            await Ip(ct, "-n", ns, "addr", "add", cidr, "dev", name).ConfigureAwait(false);
        }

        await Ip(ct, "-n", ns, "link", "set", name, "up").ConfigureAwait(false);
    }

    private async Task EnslaveAsync(string ns, string link, string bridge, CancellationToken ct)
    {
        await Ip(ct, "-n", ns, "link", "set", link, "master", bridge).ConfigureAwait(false);
        await Ip(ct, "-n", ns, "link", "set", link, "up").ConfigureAwait(false);
    }

    private async Task AddressAsync(string ns, string link, string cidr, CancellationToken ct)
    {
        await Ip(ct, "-n", ns, "addr", "add", cidr, "dev", link).ConfigureAwait(false);
        await Ip(ct, "-n", ns, "link", "set", link, "up").ConfigureAwait(false);
    }

    /// <summary>P15: br_netfilter is built in, so bridged frames would cross iptables FORWARD in the bridge's namespace; switch that off.</summary>
    private async Task BridgeNetfilterOffAsync(string ns, CancellationToken ct)
    {
        string sysctl = Shell.Find("sysctl") ?? throw new InvalidOperationException("'sysctl' is not installed");
        await InNs(ns, ct, sysctl, "-q", "-w", "net.bridge.bridge-nf-call-iptables=0").ConfigureAwait(false);
        await InNs(ns, ct, sysctl, "-q", "-w", "net.bridge.bridge-nf-call-ip6tables=0").ConfigureAwait(false);
        await InNs(ns, ct, sysctl, "-q", "-w", "net.bridge.bridge-nf-call-arptables=0").ConfigureAwait(false);
    }

    private async Task BuildAsync(CancellationToken ct)
    {
        string p = Prefix;
        string pub = p + "pub";
        string rel = p + "rel";
        string pubBridge = p + "b";
        string eth = p + "e";

        foreach (string node in ((string[])["public", "relay", "router1", "router2", "lan1-a", "lan1-b", "lan2-a", "lan2-b"]).Concat(Options.ExtraPublicNodes))
        {
            await AddNamespaceAsync(Namespace(node), ct).ConfigureAwait(false);
        }

        // Public segment: a bridge inside its own namespace (IP forwarding stays off there).
        await BridgeAsync(pub, pubBridge, "10.250.0.254/24", ct).ConfigureAwait(false);
        await BridgeNetfilterOffAsync(pub, ct).ConfigureAwait(false);

        // The relay and the other public nodes, each on the public bridge with its own address, directly or through a
        // delay bridge.
        string[] publicNodes = ["relay", .. Options.ExtraPublicNodes];
        for (int i = 0; i < publicNodes.Length; i++)
        {
            string node = publicNodes[i];
            string ns = Namespace(node);
            string port = i == 0 ? p + "rp" : p + "x" + i.ToString(CultureInfo.InvariantCulture);
            if (Options.DelayLinks.Contains(node) || (node == "relay" && Options.DelayLinks.Contains("relay1")))
            {
                await BuildDelayLinkAsync(node, ns, eth, port, i, ct).ConfigureAwait(false);
            }
            else
            {
                await VethAsync(ns, eth, pub, port, ct).ConfigureAwait(false);
                await EnslaveAsync(pub, port, pubBridge, ct).ConfigureAwait(false);
            }

            await AddressAsync(ns, eth, Lookup(node).Address + "/24", ct).ConfigureAwait(false);
        }

        await BuildRouterAsync(1, Options.Lan1Nat, ct).ConfigureAwait(false);
        await BuildRouterAsync(2, Options.Lan2Nat, ct).ConfigureAwait(false);
    }

    private async Task BuildRouterAsync(int lan, NatMode mode, CancellationToken ct)
    {
        string p = Prefix;
        string pub = p + "pub";
        string router = Namespace("router" + lan.ToString(CultureInfo.InvariantCulture));
        string wan = p + "w";
        string wanPeer = p + "wp" + lan.ToString(CultureInfo.InvariantCulture);
        string lanBridge = p + "b";
        string eth = p + "e";
        string lanNet = "192.168." + lan.ToString(CultureInfo.InvariantCulture);
        string gateway = lanNet + ".1";
        string wanAddress = Address("router" + lan.ToString(CultureInfo.InvariantCulture)).ToString();
        string iptables = Shell.Find("iptables") ?? throw new InvalidOperationException("'iptables' is not installed");
        string sysctl = Shell.Find("sysctl") ?? throw new InvalidOperationException("'sysctl' is not installed");

        // WAN side.
        await VethAsync(router, wan, pub, wanPeer, ct).ConfigureAwait(false);
        await EnslaveAsync(pub, wanPeer, p + "b", ct).ConfigureAwait(false);
        await AddressAsync(router, wan, wanAddress + "/24", ct).ConfigureAwait(false);
        await Ip(ct, "-n", router, "route", "add", "default", "via", "10.250.0.254").ConfigureAwait(false);

        // LAN side.
        await BridgeAsync(router, lanBridge, gateway + "/24", ct).ConfigureAwait(false);
        await BridgeNetfilterOffAsync(router, ct).ConfigureAwait(false);
        foreach (string node in (string[])[$"lan{lan}-a", $"lan{lan}-b"])
        {
            string host = Namespace(node);
            string hostPort = p + Lookup(node).Suffix; // e.g. "<p>h11", the host's veth end inside the router
            await VethAsync(host, eth, router, hostPort, ct).ConfigureAwait(false);
            await EnslaveAsync(router, hostPort, lanBridge, ct).ConfigureAwait(false);
            await AddressAsync(host, eth, Address(node) + "/24", ct).ConfigureAwait(false);
            await Ip(ct, "-n", host, "route", "add", "default", "via", gateway).ConfigureAwait(false);
        }

        // Forwarding and NAT.
        await InNs(router, ct, sysctl, "-q", "-w", "net.ipv4.ip_forward=1").ConfigureAwait(false);
        async Task Ipt(params string[] rule)
        {
            string[] argv = new string[rule.Length + 2];
            argv[0] = iptables;
            argv[1] = "-w";
            rule.CopyTo(argv, 2);
            await InNs(router, ct, argv).ConfigureAwait(false);
        }

        await Ipt("-P", "FORWARD", "DROP").ConfigureAwait(false);
        await Ipt("-A", "FORWARD", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT").ConfigureAwait(false);
        await Ipt("-A", "FORWARD", "-i", lanBridge, "-o", wan, "-j", "ACCEPT").ConfigureAwait(false);
        await Ipt("-A", "FORWARD", "-i", lanBridge, "-o", lanBridge, "-j", "ACCEPT").ConfigureAwait(false);

        // Unsolicited traffic to the router itself is dropped silently (no RST / port unreachable).
        await Ipt("-A", "INPUT", "-i", wan, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT").ConfigureAwait(false);
        await Ipt("-A", "INPUT", "-i", wan, "-j", "DROP").ConfigureAwait(false);

        switch (mode)
        {
            case NatMode.PortRestrictedCone:
                await Ipt("-t", "nat", "-A", "POSTROUTING", "-o", wan, "-j", "MASQUERADE").ConfigureAwait(false);
                break;
            case NatMode.Symmetric:
                await Ipt("-t", "nat", "-A", "POSTROUTING", "-o", wan, "-j", "MASQUERADE", "--random-fully").ConfigureAwait(false);
                break;
            case NatMode.FullCone:
                string dmz = Address($"lan{lan}-a").ToString();
                await Ipt("-t", "nat", "-A", "POSTROUTING", "-o", wan, "-j", "MASQUERADE").ConfigureAwait(false);
                await Ipt("-t", "nat", "-A", "PREROUTING", "-i", wan, "-d", wanAddress, "-j", "DNAT", "--to-destination", dmz).ConfigureAwait(false);
                await Ipt("-A", "FORWARD", "-i", wan, "-o", lanBridge, "-d", dmz, "-m", "conntrack", "--ctstate", "DNAT", "-j", "ACCEPT")
                    .ConfigureAwait(false);
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(mode), mode, "unknown NAT mode");
        }
    }

    /// <summary>
    /// node ⟷ "&lt;p&gt;d&lt;i&gt;" ⟷ public bridge: two veths in a namespace of their own, joined by a userspace L2 bridge
    /// (python3, AF_PACKET) that holds every frame for the delay in the node's control file (0 at first). The node
    /// keeps its address and sees the real peers; offloads are off so every frame fits the MTU.
    /// </summary>
    private async Task BuildDelayLinkAsync(string node, string ns, string eth, string port, int index, CancellationToken ct)
    {
        string p = Prefix;
        string n = index.ToString(CultureInfo.InvariantCulture);
        string dl = p + "d" + n;
        string da = p + "da" + n, db = p + "db" + n;
        await AddNamespaceAsync(dl, ct).ConfigureAwait(false);
        await VethAsync(ns, eth, dl, da, ct).ConfigureAwait(false);
        await VethAsync(dl, db, p + "pub", port, ct).ConfigureAwait(false);
        await EnslaveAsync(p + "pub", port, p + "b", ct).ConfigureAwait(false);
        await Ip(ct, "-n", dl, "link", "set", da, "up").ConfigureAwait(false);
        await Ip(ct, "-n", dl, "link", "set", db, "up").ConfigureAwait(false);
        string ethtool = Shell.Find("ethtool") ?? throw new InvalidOperationException("'ethtool' is not installed (apt-get install ethtool): the delay link needs offloads off");
        foreach (var (space, dev) in new[] { (ns, eth), (dl, da), (dl, db), (p + "pub", port) })
        {
            await InNs(space, ct, ethtool, "-K", dev, "tso", "off", "gso", "off", "gro", "off", "tx", "off").ConfigureAwait(false);
        }

        string control = Path.Combine(Path.GetTempPath(), $"weft-lab-{p}-delay-{n}");
        await File.WriteAllTextAsync(control, "0", ct).ConfigureAwait(false);
        lock (gate)
        {
            delayFiles[node == "relay1" ? "relay" : node] = control;
        }

        string python = Shell.Find("python3") ?? throw new InvalidOperationException("'python3' is not installed: the delay link needs it");
        var bridge = new Process { StartInfo = Shell.StartInfo(ip, NetnsExec(dl, [python, "-u", "-c", DelayBridge, da, db, control])) };
        lock (gate)
        {
            bridge.Start();
            started.Add(bridge);
        }

        _ = bridge.StandardError.ReadToEndAsync(CancellationToken.None);
        string? line = await bridge.StandardOutput.ReadLineAsync(ct).AsTask().WaitAsync(commandTimeout, ct).ConfigureAwait(false);
        if (line != "ready")
        {
            throw new LabCommandException("python3 delay bridge", bridge.HasExited ? bridge.ExitCode : -1, "", $"the delay bridge did not start (it said '{line}')");
        }
    }

    /// <summary>
    /// Sets the delay the bridge in front of <paramref name="node"/> adds in each direction (so its RTTs grow by twice
    /// this); the bridge picks it up within 100 ms. The node must be in <see cref="LabOptions.DelayLinks"/>.
    /// </summary>
    public async Task SetDelayAsync(string node, TimeSpan oneWay, CancellationToken ct = default)
    {
        string? file;
        lock (gate)
        {
            file = delayFiles.GetValueOrDefault(node == "relay1" ? "relay" : node);
        }

        if (file is null) throw new InvalidOperationException($"{node} has no delay link: name it in LabOptions.DelayLinks");
        string tmp = file + ".tmp";
        await File.WriteAllTextAsync(tmp, oneWay.TotalMilliseconds.ToString("0.###", CultureInfo.InvariantCulture), ct).ConfigureAwait(false);
        File.Move(tmp, file, overwrite: true);
    }

    /// <summary>Takes a node's link down (its traffic vanishes silently, as when a host dies) or brings it back.</summary>
    public Task SetLinkAsync(string node, bool up, CancellationToken ct = default)
    {
        ThrowIfDisposed();
        return Ip(ct, "-n", Namespace(node), "link", "set", Prefix + "e", up ? "up" : "down");
    }

    /// <summary>Cuts a LAN (1 or 2) off the public segment at its router (nothing passes, nothing is answered), or heals it.</summary>
    public Task SetLanConnectedAsync(int lan, bool connected, CancellationToken ct = default)
    {
        ThrowIfDisposed();
        if (lan is not (1 or 2)) throw new ArgumentOutOfRangeException(nameof(lan), lan, "LAN 1 or 2");
        return Ip(ct, "-n", Namespace("router" + lan.ToString(CultureInfo.InvariantCulture)), "link", "set", Prefix + "w", connected ? "up" : "down");
    }

    private static async Task DeleteNamespaceAsync(string ipPath, string ns)
    {
        // A namespace lives on while a process runs in it: kill whatever still does (only pids inside this namespace).
        var (code, stdout, _) = await Shell.RunAsync(ipPath, ["netns", "pids", ns], TeardownTimeout).ConfigureAwait(false);
        if (code == 0)
        {
            foreach (string line in stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            {
                if (int.TryParse(line, NumberStyles.None, CultureInfo.InvariantCulture, out int pid) && pid != Environment.ProcessId)
                {
                    try
                    {
                        using Process victim = Process.GetProcessById(pid);
                        victim.Kill(entireProcessTree: true);
                    }
                    catch (ArgumentException)
                    {
                        // already gone
                    }
                    catch (InvalidOperationException)
                    {
                        // already gone
                    }
                    catch (System.ComponentModel.Win32Exception)
                    {
                        // raced with exit
                    }
                }
            }
        }

        await Shell.CheckAsync(ipPath, ["netns", "del", ns], TeardownTimeout).ConfigureAwait(false);
    }

    private static async Task<IReadOnlyList<string>> ListNamespacesAsync(string ipPath)
    {
        string stdout = await Shell.CheckAsync(ipPath, ["netns", "list"], TeardownTimeout).ConfigureAwait(false);
        var names = new List<string>();
        foreach (string line in stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            int space = line.IndexOf(' ', StringComparison.Ordinal);
            names.Add(space < 0 ? line : line[..space]);
        }

        return names;
    }

    private static async Task<IReadOnlyList<string>> RemoveStaleAsync(string ipPath, string prefix)
    {
        var removed = new List<string>();
        foreach (string ns in await ListNamespacesAsync(ipPath).ConfigureAwait(false))
        {
            if (ns.StartsWith(prefix, StringComparison.Ordinal))
            {
                await DeleteNamespaceAsync(ipPath, ns).ConfigureAwait(false);
                removed.Add(ns);
            }
        }

        return removed;
    }

    // A userspace L2 bridge between two interfaces that delays every frame; argv: if_a, if_b, control file (ms).
    private const string DelayBridge = """
import heapq, os, select, socket, sys, time
a, b, ctl = sys.argv[1], sys.argv[2], sys.argv[3]
def open_if(name):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind((name, 0))
    s.setblocking(False)
    return s
sa, sb = open_if(a), open_if(b)
other = {sa: sb, sb: sa}
queue, seq, delay, checked = [], 0, 0.0, 0.0
print('ready', flush=True)
while True:
    now = time.monotonic()
    if now - checked > 0.1:
        checked = now
        try:
            with open(ctl) as f: delay = float(f.read().strip() or 0) / 1000.0
        except (OSError, ValueError):
            pass
    timeout = 0.1 if not queue else max(0.0, min(0.1, queue[0][0] - now))
    ready, _, _ = select.select([sa, sb], [], [], timeout)
    for s in ready:
        while True:
            try:
                frame, addr = s.recvfrom(65536)
            except BlockingIOError:
                break
            if addr[2] == socket.PACKET_OUTGOING:
                continue
            if delay <= 0 and not queue:
                try: other[s].send(frame)
                except OSError: pass
            else:
                seq += 1
                heapq.heappush(queue, (time.monotonic() + delay, seq, other[s], frame))
    now = time.monotonic()
    while queue and queue[0][0] <= now:
        _, _, out, frame = heapq.heappop(queue)
        try: out.send(frame)
        except OSError: pass
""";

    // Raw-socket ICMP echo (root), used when iputils ping is not installed. argv: target, seconds.
    private const string PythonPing = """
import os, socket, struct, sys, time
target, wait = sys.argv[1], float(sys.argv[2])
def checksum(b):
    if len(b) % 2: b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
ident = os.getpid() & 0xffff
pkt = struct.pack('!BBHHH', 8, 0, 0, ident, 1) + b'weft-lab'
pkt = pkt[:2] + struct.pack('!H', checksum(pkt)) + pkt[4:]
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
try:
    s.sendto(pkt, (target, 0))
except OSError:
    sys.exit(1)
deadline = time.monotonic() + wait
while True:
    left = deadline - time.monotonic()
    if left <= 0: sys.exit(1)
    s.settimeout(left)
    try:
        data, addr = s.recvfrom(2048)
    except (socket.timeout, OSError):
        sys.exit(1)
    off = (data[0] & 15) * 4
    if addr[0] == target and len(data) >= off + 8 and data[off] == 0 and struct.unpack('!H', data[off + 4:off + 6])[0] == ident:
        sys.exit(0)
""";
}
