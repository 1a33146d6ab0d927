using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Weft.Lab.Services;

/// <summary>A component could not be found or started; <see cref="Exception.Message"/> says why and how to fix it.</summary>
public sealed class ServiceUnavailableException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// One external program run for a lab or a test (etcd, mosquitto, haproxy): its own temp folder for config
/// and data, ports picked free on the given address, readiness awaited with a deadline, and on dispose the
/// process tree killed and the folder deleted. The last lines of its output are kept for error messages.
/// </summary>
public abstract class LabService : IAsyncDisposable
{
    private const int KeptLines = 200;
    private readonly Queue<string> _output = new();
    private Process? _process;
    private int _disposed;

    protected LabService(string name, IPAddress address)
    {
        Name = name;
        Address = address;
        Folder = Directory.CreateTempSubdirectory("weft-" + name + "-").FullName;
    }

    /// <summary>Short name (etcd, mosquitto, haproxy).</summary>
    public string Name { get; }

    /// <summary>The address every port of this service is bound to.</summary>
    public IPAddress Address { get; }

    /// <summary>The temp folder holding config and data; deleted on dispose.</summary>
    public string Folder { get; }

    /// <summary>How long <see cref="StartAsync"/> waits for readiness. Default 20 s.</summary>
    public TimeSpan ReadyTimeout { get; init; } = TimeSpan.FromSeconds(20);

    /// <summary>True while the process runs.</summary>
    public bool IsRunning => _process is { HasExited: false };

    /// <summary>The process id while it runs.</summary>
    public int? ProcessId => IsRunning ? _process!.Id : null;

    /// <summary>The last lines the program printed (stdout and stderr).</summary>
    public string RecentOutput
    {
        get { lock (_output) return string.Join('\n', _output); }
    }

    /// <summary>A TCP port that was free on <paramref name="address"/> a moment ago.</summary>
    public static int FreePort(IPAddress address)
    {
        using var s = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        s.Bind(new IPEndPoint(address, 0));
        return ((IPEndPoint)s.LocalEndPoint!).Port;
    }

    /// <summary>Starts <paramref name="service"/>; disposes it (process and folder) if it does not become ready.</summary>
    protected static async Task<T> StartOrDisposeAsync<T>(T service, CancellationToken ct) where T : LabService
    {
        ArgumentNullException.ThrowIfNull(service);
        try
        {
            await service.StartAsync(ct).ConfigureAwait(false);
            return service;
        }
        catch
        {
            await service.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>The program's path, or throws <see cref="ServiceUnavailableException"/> naming the Debian package.</summary>
    protected static string Require(string program, string package) =>
        Shell.Find(program) ?? throw new ServiceUnavailableException($"{program} is not installed (Debian package {package}: apt-get install {package})");

    protected abstract string Program { get; }

    protected abstract IReadOnlyList<string> Arguments { get; }

    /// <summary>True once the service answers.</summary>
    protected abstract Task<bool> IsReadyAsync(CancellationToken ct);

    /// <summary>Starts (or starts again after <see cref="StopAsync"/>, on the same ports and data) and waits until ready.</summary>
    public async Task StartAsync(CancellationToken ct = default)
    {
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        if (IsRunning) throw new InvalidOperationException($"{Name} is already running");
        var psi = Shell.StartInfo(Program, Arguments);
        psi.WorkingDirectory = Folder;
        var p = new Process { StartInfo = psi };
        p.OutputDataReceived += (_, e) => Keep(e.Data);
        p.ErrorDataReceived += (_, e) => Keep(e.Data);
        try
        {
            p.Start();
        }
        catch (Exception e) when (e is System.ComponentModel.Win32Exception or InvalidOperationException)
        {
            p.Dispose();
            throw new ServiceUnavailableException($"cannot start {Shell.Describe(Program, Arguments)}: {e.Message}", e);
        }
        p.StandardInput.Close();
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        _process = p;
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        cts.CancelAfter(ReadyTimeout);
        try
        {
            while (true)
            {
                if (p.HasExited)
                    throw new ServiceUnavailableException($"{Name} exited with status {p.ExitCode} while starting: {Shell.Describe(Program, Arguments)}\n{RecentOutput}");
                if (await IsReadyAsync(cts.Token).ConfigureAwait(false)) return;
                // Poll readiness: the program offers no signal to wait on. Bounded by the deadline above.
                await Task.Delay(50, cts.Token).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            await StopAsync().ConfigureAwait(false);
            throw new ServiceUnavailableException($"{Name} was not ready within {ReadyTimeout.TotalSeconds:0} s: {Shell.Describe(Program, Arguments)}\n{RecentOutput}");
        }
        catch
        {
            await StopAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Kills the process (SIGKILL: a crash, as chaos tests want) and waits for it to exit; keeps the folder.</summary>
    public async Task StopAsync()
    {
        var p = _process;
        _process = null;
        if (p is null) return;
        Shell.KillQuietly(p);
        try { await p.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10)).ConfigureAwait(false); }
        catch (TimeoutException) { }
        p.Dispose();
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        await StopAsync().ConfigureAwait(false);
        try { Directory.Delete(Folder, recursive: true); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        GC.SuppressFinalize(this);
    }

    protected static async Task<bool> CanConnectAsync(IPEndPoint ep, CancellationToken ct)
    {
        using var s = new Socket(ep.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            await s.ConnectAsync(ep, ct).ConfigureAwait(false);
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    protected void WriteFile(string name, string text) => File.WriteAllText(Path.Combine(Folder, name), text, new UTF8Encoding(false));

    private void Keep(string? line)
    {
        if (line is null) return;
        lock (_output)
        {
            _output.Enqueue(line);
            while (_output.Count > KeptLines) _output.Dequeue();
        }
    }
}
