using System.IO.Pipelines;

namespace Weft.P2P.Transport;

/// <summary>Two connected in-memory duplex pipes: what one side writes, the other reads.</summary>
public static class DuplexPipePair
{
    public static (IDuplexPipe A, IDuplexPipe B) Create(PipeOptions? options = null)
    {
        var aToB = new Pipe(options ?? PipeOptions.Default);
        var bToA = new Pipe(options ?? PipeOptions.Default);
        return (new DuplexPipe(bToA.Reader, aToB.Writer), new DuplexPipe(aToB.Reader, bToA.Writer));
    }
}

/// <summary>A reader and a writer joined as one <see cref="IDuplexPipe"/>.</summary>
public sealed class DuplexPipe(PipeReader input, PipeWriter output) : IDuplexPipe
{
    public PipeReader Input { get; } = input;
    public PipeWriter Output { get; } = output;
}
