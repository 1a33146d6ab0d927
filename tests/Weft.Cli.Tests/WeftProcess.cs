using System.Diagnostics;
using System.Text;
using System.Threading.Channels;

namespace Weft.Cli.Tests;

/// <summary>Runs the built `weft` (weft.dll beside the tests) as a real process.</summary>
public sealed class WeftProcess : IAsyncDisposable
{
    public static readonly TimeSpan Deadline = TimeSpan.FromSeconds(60);

    private readonly Process _p;
    private readonly StringBuilder _out = new();
    private readonly StringBuilder _err = new();
    private readonly Channel<string> _lines = Channel.CreateUnbounded<string>();

    private WeftProcess(Process p)
    {
        _p = p;
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

    public static WeftProcess Start(params string[] args)
    {
        var dll = Path.Combine(AppContext.BaseDirectory, "weft.dll");
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(dll);
        foreach (var a in args) psi.ArgumentList.Add(a);
        return new WeftProcess(Process.Start(psi)!);
    }

    public static async Task<(int Code, string Out, string Err)> RunAsync(params string[] args)
    {
        await using var p = Start(args);
        var code = await p.WaitExit();
        await p._p.WaitForExitAsync(); // drain output
        return (code, p.Stdout, p.Stderr);
    }

    public string Stdout { get { lock (_out) return _out.ToString(); } }
    public string Stderr { get { lock (_err) return _err.ToString(); } }

    public async Task<string> WaitLine(string prefix, Func<string, bool>? match = null)
    {
        using var cts = new CancellationTokenSource(Deadline);
        try
        {
            await foreach (var l in _lines.Reader.ReadAllAsync(cts.Token))
                if (l.StartsWith(prefix, StringComparison.Ordinal) && (match is null || match(l))) return l;
        }
        catch (OperationCanceledException) { }
        throw new TimeoutException($"no line starting '{prefix}'; stdout: {Stdout}; stderr: {Stderr}");
    }

    public async Task<int> WaitExit()
    {
        await _p.WaitForExitAsync().WaitAsync(Deadline);
        return _p.ExitCode;
    }

    /// <summary>SIGTERM, as an operator's `kill` would send.</summary>
    public void Terminate()
    {
        if (!_p.HasExited) Process.Start("kill", ["-TERM", _p.Id.ToString()])!.WaitForExit();
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            if (!_p.HasExited) { _p.Kill(true); await _p.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10)); }
        }
        catch (Exception) { /* gone */ }
        _p.Dispose();
    }
}
