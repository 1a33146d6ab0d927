namespace Weft.Lab.Tests;

/// <summary>
/// Lab scenarios that measure time (failover gaps, RTT ranking): they run alone, after the other tests, so that other
/// labs' processes do not take the CPU they are timed on.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class LabCollection
{
    public const string Name = "Timed lab scenarios";
}
