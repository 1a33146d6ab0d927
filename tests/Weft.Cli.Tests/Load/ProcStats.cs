using System.Globalization;

namespace Weft.Cli.Tests.Load;

/// <summary>
/// One look at a Linux process from outside, through /proc: resident memory now (VmRSS) and at its peak
/// (VmHWM), threads, open file descriptors, and of those the TCP connections (sockets not listening).
/// </summary>
public readonly record struct ProcStats(long RssKiB, long HwmKiB, int Threads, int Fds, int TcpConnections)
{
    public static ProcStats Read(int pid)
    {
        long rss = -1, hwm = -1;
        var threads = -1;
        foreach (var line in File.ReadLines($"/proc/{pid}/status"))
        {
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal)) rss = Kib(line);
            else if (line.StartsWith("VmHWM:", StringComparison.Ordinal)) hwm = Kib(line);
            else if (line.StartsWith("Threads:", StringComparison.Ordinal)) threads = int.Parse(line.AsSpan("Threads:".Length).Trim(), CultureInfo.InvariantCulture);
        }
        if (rss < 0 || hwm < 0 || threads < 0) throw new InvalidOperationException($"/proc/{pid}/status lacks VmRSS, VmHWM or Threads");
        var fds = 0;
        foreach (var _ in Directory.EnumerateFileSystemEntries($"/proc/{pid}/fd")) fds++;
        var tcp = 0;
        foreach (var (_, state) in TcpSockets(pid, SocketInodes(pid)))
            if (state != Listen) tcp++;
        return new ProcStats(rss, hwm, threads, fds, tcp);
    }

    private const string Listen = "0A";

    /// <summary>Inodes of the process's sockets (fd links "socket:[inode]").</summary>
    private static HashSet<string> SocketInodes(int pid)
    {
        var inodes = new HashSet<string>(StringComparer.Ordinal);
        foreach (var fd in Directory.EnumerateFileSystemEntries($"/proc/{pid}/fd"))
        {
            string? target;
            try { target = new FileInfo(fd).LinkTarget; }
            catch (IOException) { continue; } // closed while we looked
            if (target is not null && target.StartsWith("socket:[", StringComparison.Ordinal)) inodes.Add(target["socket:[".Length..^1]);
        }
        return inodes;
    }

    /// <summary>(inode, hex state) of each TCP socket in the process's network namespace that the process holds.</summary>
    private static IEnumerable<(string Inode, string State)> TcpSockets(int pid, HashSet<string> inodes)
    {
        foreach (var table in (string[])[$"/proc/{pid}/net/tcp", $"/proc/{pid}/net/tcp6"])
        {
            if (!File.Exists(table)) continue;
            foreach (var line in File.ReadLines(table).Skip(1))
            {
                // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ...
                var f = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                if (f.Length >= 10 && inodes.Contains(f[9])) yield return (f[9], f[3]);
            }
        }
    }

    /// <summary>"VmRSS:\t  123456 kB" → 123456.</summary>
    private static long Kib(string line)
    {
        var v = line.AsSpan(line.IndexOf(':', StringComparison.Ordinal) + 1).Trim();
        if (!v.EndsWith(" kB", StringComparison.Ordinal)) throw new FormatException($"unexpected /proc status line '{line}'");
        return long.Parse(v[..^3].Trim(), CultureInfo.InvariantCulture);
    }

    /// <summary>
    /// What the process's descriptors are, counted by kind, and its TCP sockets by state (from /proc/PID/net/tcp*):
    /// to say what a process still holds when a wait fails.
    /// </summary>
    public static string DescribeFds(int pid)
    {
        var kinds = new SortedDictionary<string, int>(StringComparer.Ordinal);
        foreach (var fd in Directory.EnumerateFileSystemEntries($"/proc/{pid}/fd"))
        {
            string target;
            try { target = new FileInfo(fd).LinkTarget ?? "?"; }
            catch (IOException) { continue; }
            var kind = target.StartsWith('/') ? "file" : target.Split(':')[0];
            kinds[kind] = kinds.GetValueOrDefault(kind) + 1;
        }
        var tcp = new SortedDictionary<string, int>(StringComparer.Ordinal);
        foreach (var (_, state) in TcpSockets(pid, SocketInodes(pid)))
        {
            var name = TcpState(state);
            tcp[name] = tcp.GetValueOrDefault(name) + 1;
        }
        return "fds by kind: " + string.Join(", ", kinds.Select(kv => $"{kv.Key} {kv.Value}")) +
               "; tcp sockets by state: " + string.Join(", ", tcp.Select(kv => $"{kv.Key} {kv.Value}"));
    }

    private static string TcpState(string hex) => hex switch
    {
        "01" => "ESTABLISHED", "02" => "SYN_SENT", "03" => "SYN_RECV", "04" => "FIN_WAIT1", "05" => "FIN_WAIT2",
        "06" => "TIME_WAIT", "07" => "CLOSE", "08" => "CLOSE_WAIT", "09" => "LAST_ACK", "0A" => "LISTEN", "0B" => "CLOSING",
        _ => hex,
    };

    public double RssMiB => RssKiB / 1024.0;
    public double HwmMiB => HwmKiB / 1024.0;
}
