namespace Weft.Cli;

/// <summary>Whole lines to stdout, flushed at once, from any thread (scripts and tests read them as they come).</summary>
public sealed class LineWriter
{
    private readonly Lock _gate = new();

    public void Write(string line)
    {
        lock (_gate)
        {
            Console.Out.WriteLine(line);
            Console.Out.Flush();
        }
    }
}
