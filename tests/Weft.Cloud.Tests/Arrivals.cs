namespace Weft.Cloud.Tests;

/// <summary>
/// A signal for things that arrive on other threads (MQTT messages, say): <see cref="Arrived"/> after each,
/// <see cref="WaitUntilAsync"/> re-checks its condition at each arrival, never on a timer.
/// </summary>
internal sealed class Arrivals : IDisposable
{
    private readonly SemaphoreSlim _signal = new(0);

    public void Arrived() => _signal.Release();

    public async Task WaitUntilAsync(Func<bool> condition, CancellationToken ct)
    {
        while (!condition()) await _signal.WaitAsync(ct);
    }

    public void Dispose() => _signal.Dispose();
}
