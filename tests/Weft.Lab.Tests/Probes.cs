using System.Diagnostics;
using System.Globalization;
using Weft.Lab;

namespace Weft.Lab.Tests;

/// <summary>Python one-liners used as traffic probes inside lab namespaces (python3 is on these machines; the tests assert it).</summary>
internal static class Probes
{
    public static readonly TimeSpan Deadline = TimeSpan.FromSeconds(10);

    // argv: bind ip, port A, port B. Prints READY, then waits for one datagram on A, prints "SEEN ip port",
    // and answers it from A ("same") and from B ("other").
    public const string UdpServer = """
import socket, sys
a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); a.bind((sys.argv[1], int(sys.argv[2])))
b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); b.bind((sys.argv[1], int(sys.argv[3])))
print('READY', flush=True)
data, peer = a.recvfrom(2048)
print('SEEN %s %d' % peer, flush=True)
a.sendto(b'same', peer)
b.sendto(b'other', peer)
""";

    // argv: server ip, server port, local port, seconds. Sends one datagram from the local port and prints
    // the sorted "ip:port" sources of whatever comes back within the time (at most two).
    public const string UdpClient = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0', int(sys.argv[3])))
s.sendto(b'hello', (sys.argv[1], int(sys.argv[2])))
deadline = time.monotonic() + float(sys.argv[4])
got = set()
while len(got) < 2:
    left = deadline - time.monotonic()
    if left <= 0: break
    s.settimeout(left)
    try:
        data, peer = s.recvfrom(2048)
    except socket.timeout:
        break
    got.add('%s:%d' % peer)
print(' '.join(sorted(got)), flush=True)
""";

    public static string Python =>
        NatLab.FindExecutable("python3") ?? throw new InvalidOperationException("python3 is required by the lab probes but is not installed");

    /// <summary>Runs a UDP probe from <paramref name="node"/> to the relay; returns what the relay saw ("ip port") and the sources that answered.</summary>
    public static async Task<(string Seen, string Answers)> UdpProbeAsync(NatLab lab, string node, int localPort)
    {
        string relay = lab.Address("relay").ToString();
        Process server = lab.Start("relay", [Python, "-u", "-c", UdpServer, relay, "5000", "5001"]);
        server.ErrorDataReceived += static (_, _) => { };
        server.BeginErrorReadLine();
        string? ready = await server.StandardOutput.ReadLineAsync().WaitAsync(Deadline);
        Assert.Equal("READY", ready);

        var (code, stdout, stderr) = await lab.ExecAsync(
            node,
            [Python, "-c", UdpClient, relay, "5000", localPort.ToString(CultureInfo.InvariantCulture), "1.5"],
            Deadline);
        Assert.True(code == 0, $"udp client failed ({code}): {stderr}");

        string? seen = await server.StandardOutput.ReadLineAsync().WaitAsync(Deadline);
        Assert.NotNull(seen);
        Assert.StartsWith("SEEN ", seen, StringComparison.Ordinal);
        await server.WaitForExitAsync().WaitAsync(Deadline);
        return (seen["SEEN ".Length..], stdout.Trim());
    }

    /// <summary>Runs a command in the root namespace that only reads state or manages namespaces by name.</summary>
    public static async Task<string> RootAsync(params string[] argv)
    {
        var psi = new ProcessStartInfo(NatLab.FindExecutable(argv[0]) ?? argv[0])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string a in argv.AsSpan(1))
        {
            psi.ArgumentList.Add(a);
        }

        using Process p = Process.Start(psi)!;
        Task<string> stdout = p.StandardOutput.ReadToEndAsync();
        Task<string> stderr = p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync().WaitAsync(Deadline);
        string err = await stderr;
        Assert.True(p.ExitCode == 0, $"{string.Join(' ', argv)} failed: {err}");
        return await stdout;
    }
}
