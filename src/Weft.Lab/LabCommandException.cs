namespace Weft.Lab;

/// <summary>A lab shell command failed (non-zero exit status) or did not finish in time.</summary>
public sealed class LabCommandException : Exception
{
    public LabCommandException(string command, int exitCode, string stderr, string message)
        : base(message)
    {
        Command = command;
        ExitCode = exitCode;
        Stderr = stderr;
    }

    /// <summary>The command line, for diagnostics.</summary>
    public string Command { get; }

    /// <summary>Exit status; -1 when the command timed out or could not be started.</summary>
    public int ExitCode { get; }

    /// <summary>Whatever the command wrote to stderr.</summary>
    public string Stderr { get; }
}
