using System.Diagnostics;
using System.Text.Json;
using System.Threading.Channels;

namespace Weft.Interop.Tests;

/// <summary>
/// A js-libp2p peer (tests/interop-js/peer.mjs) run as a child process. Its stdout lines are read as
/// they come; tests wait for a line with a deadline. The process is killed on dispose.
/// </summary>
public sealed class JsPeer : IAsyncDisposable
{
    public static readonly TimeSpan Deadline = TimeSpan.FromSeconds(60);

    private readonly Process _process;
    private readonly Channel<string> _lines = Channel.CreateUnbounded<string>();
    private readonly List<string> _all = [];
    private readonly System.Text.StringBuilder _stderr = new();

    private JsPeer(Process p)
    {
        _process = p;
        p.OutputDataReceived += (_, e) =>
        {
            if (e.Data is null) { _lines.Writer.TryComplete(); return; }
            lock (_all) _all.Add(e.Data);
            _lines.Writer.TryWrite(e.Data);
        };
        p.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (_stderr) _stderr.AppendLine(e.Data); };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
    }

    public static string ScriptDir
    {
        get
        {
            // The build output may live outside the tree (--artifacts-path): fall back to where this source file is.
            var dir = FindRoot(AppContext.BaseDirectory) ?? FindRoot(Path.GetDirectoryName(SourceFile())!)
                ?? throw new InvalidOperationException("cannot find the repository root (Weft.slnx) above " + AppContext.BaseDirectory);
            var js = Path.Combine(dir.FullName, "tests", "interop-js");
            if (!Directory.Exists(Path.Combine(js, "node_modules", "libp2p")))
                throw new InvalidOperationException($"js-libp2p is not installed: run `npm ci` in {js} (scripts/test.sh does it)");
            return js;
        }
    }

    private static DirectoryInfo? FindRoot(string start)
    {
        var dir = new DirectoryInfo(start);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Weft.slnx"))) dir = dir.Parent;
        return dir;
    }

    private static string SourceFile([System.Runtime.CompilerServices.CallerFilePath] string path = "") => path;

    public static JsPeer Start(params string[] args)
    {
        var psi = new ProcessStartInfo("node")
        {
            WorkingDirectory = ScriptDir,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        psi.ArgumentList.Add("peer.mjs");
        foreach (var a in args) psi.ArgumentList.Add(a);
        var p = Process.Start(psi) ?? throw new InvalidOperationException("could not start node");
        return new JsPeer(p);
    }

    /// <summary>Reads the lines of a process started elsewhere (e.g. peer.mjs inside a lab namespace) with redirected output.</summary>
    public static JsPeer Attach(Process p) => new(p);

    public string Stderr { get { lock (_stderr) return _stderr.ToString(); } }

    public IReadOnlyList<string> Lines { get { lock (_all) return _all.ToList(); } }

    /// <summary>The rest of the first line that starts with <paramref name="prefix"/> + space.</summary>
    public async Task<string> WaitLine(string prefix, TimeSpan? within = null)
    {
        using var cts = new CancellationTokenSource(within ?? Deadline);
        try
        {
            await foreach (var line in _lines.Reader.ReadAllAsync(cts.Token))
            {
                if (line.StartsWith(prefix + " ", StringComparison.Ordinal)) return line[(prefix.Length + 1)..];
                if (line.StartsWith("ERROR ", StringComparison.Ordinal) && prefix != "ERROR")
                    throw new InvalidOperationException($"js peer failed: {line}\nstderr:\n{Stderr}");
            }
        }
        catch (OperationCanceledException)
        {
            throw new TimeoutException($"js peer printed no '{prefix}' line within {(within ?? Deadline).TotalSeconds} s; lines: {string.Join(" | ", Lines)}\nstderr:\n{Stderr}");
        }
        throw new InvalidOperationException($"js peer exited (code {ExitCodeOrNull()}) without a '{prefix}' line; lines: {string.Join(" | ", Lines)}\nstderr:\n{Stderr}");
    }

    public async Task<JsonElement> WaitJson(string prefix, TimeSpan? within = null) =>
        JsonDocument.Parse(await WaitLine(prefix, within)).RootElement.Clone();

    /// <summary>The first later <paramref name="prefix"/> line whose JSON satisfies <paramref name="match"/> (others are skipped).</summary>
    public async Task<JsonElement> WaitJson(string prefix, Func<JsonElement, bool> match, TimeSpan? within = null)
    {
        var limit = within ?? Deadline;
        var until = DateTime.UtcNow + limit;
        while (true)
        {
            var left = until - DateTime.UtcNow;
            if (left <= TimeSpan.Zero)
                throw new TimeoutException($"js peer printed no matching '{prefix}' line within {limit.TotalSeconds} s; lines: {string.Join(" | ", Lines)}\nstderr:\n{Stderr}");
            var e = await WaitJson(prefix, left);
            if (match(e)) return e;
        }
    }

    /// <summary>Every <paramref name="prefix"/> line printed so far (whether or not a Wait call consumed it), as JSON.</summary>
    public IReadOnlyList<JsonElement> JsonLines(string prefix) =>
        Lines.Where(l => l.StartsWith(prefix + " ", StringComparison.Ordinal))
            .Select(l => JsonDocument.Parse(l[(prefix.Length + 1)..]).RootElement.Clone())
            .ToList();

    public async Task<int> WaitExit(TimeSpan? within = null)
    {
        await _process.WaitForExitAsync().WaitAsync(within ?? Deadline);
        return _process.ExitCode;
    }

    private int? ExitCodeOrNull() => _process.HasExited ? _process.ExitCode : null;

    public async ValueTask DisposeAsync()
    {
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
                await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10));
            }
        }
        catch (Exception) { /* already gone */ }
        _process.Dispose();
    }
}
