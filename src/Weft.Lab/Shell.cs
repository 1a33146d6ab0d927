using System.Diagnostics;
using System.Text;

namespace Weft.Lab;

/// <summary>Runs external commands with a timeout, never through a shell.</summary>
internal static class Shell
{
    private static readonly string[] SearchDirs = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"];

    public static string? Find(string name)
    {
        if (name.Contains('/'))
        {
            return File.Exists(name) ? name : null;
        }

        string? path = Environment.GetEnvironmentVariable("PATH");
        if (path is not null)
        {
            foreach (string dir in path.Split(':', StringSplitOptions.RemoveEmptyEntries))
            {
                string candidate = Path.Combine(dir, name);
                if (File.Exists(candidate))
                {
                    return candidate;
                }
            }
        }

        foreach (string dir in SearchDirs)
        {
            string candidate = Path.Combine(dir, name);
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }

        return null;
    }

    public static string Describe(string file, IReadOnlyList<string> args)
    {
        var sb = new StringBuilder(file);
        foreach (string a in args)
        {
            sb.Append(' ');
            bool quote = a.Length == 0 || a.AsSpan().IndexOfAny(" \t\n'\"\\$;&|<>()*?") >= 0;
            if (quote)
            {
                sb.Append('\'').Append(a.Replace("'", "'\\''", StringComparison.Ordinal)).Append('\'');
            }
            else
            {
                sb.Append(a);
            }
        }

        return sb.ToString();
    }

    public static ProcessStartInfo StartInfo(string file, IReadOnlyList<string> args)
    {
        var psi = new ProcessStartInfo(file)
        {
            UseShellExecute = false,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            CreateNoWindow = true,
        };
        foreach (string a in args)
        {
            psi.ArgumentList.Add(a);
        }

        return psi;
    }

    /// <summary>Runs a command to completion; on timeout kills it (whole tree) and throws.</summary>
    public static async Task<(int ExitCode, string Stdout, string Stderr)> RunAsync(
        string file, IReadOnlyList<string> args, TimeSpan timeout, CancellationToken ct = default)
    {
        ct.ThrowIfCancellationRequested();
        using var process = new Process { StartInfo = StartInfo(file, args) };
        try
        {
            process.Start();
        }
        catch (Exception e) when (e is System.ComponentModel.Win32Exception or InvalidOperationException)
        {
            throw new LabCommandException(Describe(file, args), -1, string.Empty, $"cannot start '{Describe(file, args)}': {e.Message}");
        }

        process.StandardInput.Close();
        Task<string> stdout = process.StandardOutput.ReadToEndAsync(CancellationToken.None);
        Task<string> stderr = process.StandardError.ReadToEndAsync(CancellationToken.None);
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        cts.CancelAfter(timeout);
        try
        {
            await process.WaitForExitAsync(cts.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            KillQuietly(process);
            string err = await DrainAsync(stderr).ConfigureAwait(false);
            ct.ThrowIfCancellationRequested();
            throw new LabCommandException(
                Describe(file, args), -1, err, $"command timed out after {timeout.TotalSeconds:0.#} s: {Describe(file, args)}{FormatStderr(err)}");
        }

        // The pipes close when the process (and anything that inherited them) exits; bound the wait anyway.
        string o = await DrainAsync(stdout).ConfigureAwait(false);
        string e2 = await DrainAsync(stderr).ConfigureAwait(false);
        return (process.ExitCode, o, e2);
    }

    /// <summary>Runs a command and throws <see cref="LabCommandException"/> unless it exits with status 0.</summary>
    public static async Task<string> CheckAsync(string file, IReadOnlyList<string> args, TimeSpan timeout, CancellationToken ct = default)
    {
        var (code, stdout, stderr) = await RunAsync(file, args, timeout, ct).ConfigureAwait(false);
        if (code != 0)
        {
            throw new LabCommandException(
                Describe(file, args), code, stderr, $"command failed with exit status {code}: {Describe(file, args)}{FormatStderr(stderr)}");
        }

        return stdout;
    }

    public static void KillQuietly(Process process)
    {
        try
        {
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: true);
            }
        }
        catch (InvalidOperationException)
        {
            // already exited or never started
        }
        catch (System.ComponentModel.Win32Exception)
        {
            // raced with exit
        }
    }

    private static async Task<string> DrainAsync(Task<string> read)
    {
        try
        {
            return await read.WaitAsync(TimeSpan.FromSeconds(2)).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            return "(output not closed: a child process still holds the pipe)";
        }
        catch (IOException)
        {
            return string.Empty;
        }
    }

    private static string FormatStderr(string stderr)
    {
        string s = stderr.Trim();
        return s.Length == 0 ? string.Empty : Environment.NewLine + "stderr: " + s;
    }
}
