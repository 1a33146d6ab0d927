using System.Diagnostics;
using System.Text;
using System.Threading.Channels;

namespace Weft.Cloud.Tests;

/// <summary>A real `weft cloud` process (the built weft.dll beside the tests): started, awaited until "ready", killed with SIGKILL.</summary>
public sealed class CloudProcess : IAsyncDisposable
{
    private static readonly TimeSpan ReadyDeadline = TimeSpan.FromSeconds(30);
    private readonly Process _p;
    private readonly StringBuilder _log = new();
    private readonly Channel<string> _lines = Channel.CreateUnbounded<string>();

    private CloudProcess(Process p, CloudConfig config)
    {
        _p = p;
        Config = config;
        p.OutputDataReceived += (_, e) => { if (e.Data is { } d) { lock (_log) _log.AppendLine(d); _lines.Writer.TryWrite(d); } };
        p.ErrorDataReceived += (_, e) => { if (e.Data is { } d) lock (_log) _log.AppendLine(d); };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
    }

    public CloudConfig Config { get; }

    public string Name => Config.Name;

    public bool HasExited => _p.HasExited;

    public string Output { get { lock (_log) return _log.ToString(); } }

    public static async Task<CloudProcess> StartAsync(CloudConfig config, string folder)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "weft.dll"));
        psi.ArgumentList.Add("cloud");
        psi.ArgumentList.Add("--config");
        psi.ArgumentList.Add(config.Write(folder));
        psi.Environment["WEFT_LOG"] = "information";
        var p = new CloudProcess(Process.Start(psi)!, config);
        using var cts = new CancellationTokenSource(ReadyDeadline);
        try
        {
            await foreach (var l in p._lines.Reader.ReadAllAsync(cts.Token))
                if (l.StartsWith("ready ", StringComparison.Ordinal)) return p;
        }
        catch (OperationCanceledException) { }
        await p.DisposeAsync();
        throw new TimeoutException($"weft cloud {config.Name} not ready within {ReadyDeadline.TotalSeconds} s:\n{p.Output}");
    }

    /// <summary>SIGKILL: the replica dies as in a crash (no graceful release).</summary>
    public async Task KillAsync()
    {
        if (_p.HasExited) return;
        _p.Kill(entireProcessTree: true);
        await _p.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10));
    }

    public async ValueTask DisposeAsync()
    {
        try { await KillAsync(); } catch (Exception ex) when (ex is InvalidOperationException or TimeoutException) { }
        _p.Dispose();
    }
}
