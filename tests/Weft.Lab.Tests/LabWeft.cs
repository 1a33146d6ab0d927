using System.Diagnostics;
using System.Text;
using System.Threading.Channels;
using Weft.Lab;

namespace Weft.Lab.Tests;

/// <summary>A `weft` process running inside one of the lab's namespaces, with its output lines readable as they come.</summary>
public sealed class LabWeft : IAsyncDisposable
{
    public static readonly TimeSpan Deadline = TimeSpan.FromSeconds(30);

    private readonly Process _p;
    private readonly StringBuilder _out = new();
    private readonly StringBuilder _err = new();
    private readonly Channel<string> _lines = Channel.CreateUnbounded<string>();

    private LabWeft(Process p, string node)
    {
        _p = p;
        Node = node;
        p.OutputDataReceived += (_, e) =>
        {
            if (e.Data is null) { _lines.Writer.TryComplete(); return; }
            lock (_out) _out.AppendLine(e.Data);
            _lines.Writer.TryWrite(e.Data);
        };
        p.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (_err) _err.AppendLine(e.Data); };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
    }

    public string Node { get; }

    public static LabWeft Start(NatLab lab, string node, params string[] args)
    {
        var dotnet = NatLab.FindExecutable("dotnet") ?? throw new InvalidOperationException("dotnet is not on PATH");
        var argv = new List<string> { dotnet, Path.Combine(AppContext.BaseDirectory, "weft.dll") };
        argv.AddRange(args);
        return new LabWeft(lab.Start(node, argv.ToArray()), node);
    }

    /// <summary>For failure messages: running or exited (with its code), and the last lines of its stderr.</summary>
    public string Describe(int lines = 15)
    {
        var err = Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        var state = _p.HasExited ? $"EXITED {_p.ExitCode}" : "running";
        return $"{Node} ({state}); last stderr lines:\n  " + string.Join("\n  ", err.TakeLast(lines));
    }

    public string Stdout { get { lock (_out) return _out.ToString(); } }
    public string Stderr { get { lock (_err) return _err.ToString(); } }

    /// <summary>The next output line that starts with <paramref name="prefix"/> and satisfies <paramref name="match"/>.</summary>
    public async Task<string> WaitLine(string prefix, Func<string, bool>? match = null, TimeSpan? deadline = null)
    {
        using var cts = new CancellationTokenSource(deadline ?? Deadline);
        try
        {
            await foreach (var l in _lines.Reader.ReadAllAsync(cts.Token))
                if (l.StartsWith(prefix, StringComparison.Ordinal) && (match is null || match(l))) return l;
        }
        catch (OperationCanceledException) { }
        throw new TimeoutException($"{Node}: no line starting '{prefix}'{(_p.HasExited ? $" (exited {_p.ExitCode})" : "")}; stdout:\n{Stdout}\nstderr:\n{Stderr}");
    }

    public async Task<int> WaitExit(TimeSpan? deadline = null)
    {
        try
        {
            await _p.WaitForExitAsync().WaitAsync(deadline ?? Deadline);
        }
        catch (TimeoutException)
        {
            throw new TimeoutException($"{Node}: did not exit; stdout:\n{Stdout}\nstderr:\n{Stderr}");
        }
        return _p.ExitCode;
    }

    public void Kill()
    {
        try { _p.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
    }

    /// <summary>SIGKILL to the process itself (no walk of its children first), for tests that time what follows.</summary>
    public void KillNow()
    {
        try { _p.Kill(entireProcessTree: false); } catch (InvalidOperationException) { }
    }

    public async ValueTask DisposeAsync()
    {
        Kill();
        try { await _p.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10)); } catch (TimeoutException) { }
        _p.Dispose();
    }
}
