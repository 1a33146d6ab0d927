using System.Diagnostics;
using System.Text;
using System.Threading.Channels;

namespace Weft.Cli.Tests.Load;

/// <summary>
/// The built `weft` (weft.dll beside the tests) as a real process whose id we expose, so its memory, threads
/// and descriptors can be read from /proc while something else loads it. `dotnet weft.dll` runs the app in
/// the muxer's own process, so <see cref="Pid"/> is the app.
/// </summary>
public sealed class MeasuredWeftProcess : IAsyncDisposable
{
    private readonly Process _p;
    private readonly StringBuilder _out = new();
    private readonly StringBuilder _err = new();
    private readonly Channel<string> _lines = Channel.CreateUnbounded<string>();

    private MeasuredWeftProcess(Process p)
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

    public static MeasuredWeftProcess Start(params string[] args)
    {
        var dll = Path.Combine(AppContext.BaseDirectory, "weft.dll");
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(dll);
        foreach (var a in args) psi.ArgumentList.Add(a);
        return new MeasuredWeftProcess(Process.Start(psi) ?? throw new InvalidOperationException("could not start dotnet"));
    }

    public int Pid => _p.Id;
    public bool HasExited => _p.HasExited;
    public string Stdout { get { lock (_out) return _out.ToString(); } }
    public string Stderr { get { lock (_err) return _err.ToString(); } }

    /// <summary>The process as /proc sees it now.</summary>
    public ProcStats Sample() => ProcStats.Read(_p.Id);

    /// <summary>The next output line starting with <paramref name="prefix"/>, within <paramref name="deadline"/>.</summary>
    public async Task<string> WaitLineAsync(string prefix, TimeSpan deadline)
    {
        using var cts = new CancellationTokenSource(deadline);
        try
        {
            await foreach (var l in _lines.Reader.ReadAllAsync(cts.Token))
                if (l.StartsWith(prefix, StringComparison.Ordinal)) return l;
        }
        catch (OperationCanceledException) { }
        throw new TimeoutException($"no line starting '{prefix}' within {deadline.TotalSeconds:0} s; stdout: {Stdout}; stderr: {Stderr}");
    }

    /// <summary>
    /// Waits until <paramref name="condition"/> holds for the process's /proc figures. /proc has no change
    /// notification, so this looks every <paramref name="every"/> until the deadline, then throws with the last figures.
    /// </summary>
    public async Task<ProcStats> WaitUntilAsync(Func<ProcStats, bool> condition, TimeSpan deadline, TimeSpan every, string what)
    {
        var sw = Stopwatch.StartNew();
        using var timer = new PeriodicTimer(every);
        while (true)
        {
            if (_p.HasExited) throw new InvalidOperationException($"the process exited ({_p.ExitCode}) while waiting for {what}; stderr: {Stderr}");
            var s = Sample();
            if (condition(s)) return s;
            if (sw.Elapsed >= deadline) throw new TimeoutException($"{what}: not reached within {deadline.TotalSeconds:0} s; last {s}; {ProcStats.DescribeFds(_p.Id)}");
            await timer.WaitForNextTickAsync();
        }
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
