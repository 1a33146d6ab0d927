namespace Weft.Cli.Tests.Load;

/// <summary>What a bounded batch did: how many items succeeded, and the first failures (with their index).</summary>
public sealed record BatchResult(int Count, int Ok, IReadOnlyList<string> Errors, TimeSpan Elapsed)
{
    /// <summary>Failures kept in <see cref="Errors"/>; the rest are only counted.</summary>
    public const int MaxErrorsKept = 10;

    public string Describe() => $"{Ok}/{Count} ok in {Elapsed.TotalSeconds:0.00} s" + (Errors.Count == 0 ? "" : "; first failures: " + string.Join(" | ", Errors));
}

public static class Bounded
{
    /// <summary>
    /// Runs <paramref name="body"/> for 0..count-1, at most <paramref name="parallel"/> at once, all within
    /// <paramref name="deadline"/> (items not started by then count as failed). A failing item does not stop the others.
    /// </summary>
    public static async Task<BatchResult> ForEachAsync(int count, int parallel, TimeSpan deadline, Func<int, CancellationToken, Task> body)
    {
        var started = System.Diagnostics.Stopwatch.StartNew();
        var ok = 0;
        var errors = new List<string>();
        using var cts = new CancellationTokenSource(deadline);
        var run = Parallel.ForEachAsync(Enumerable.Range(0, count), new ParallelOptions { MaxDegreeOfParallelism = parallel, CancellationToken = cts.Token }, async (i, ct) =>
        {
            try
            {
                await body(i, ct);
                Interlocked.Increment(ref ok);
            }
            catch (Exception ex)
            {
                lock (errors)
                    if (errors.Count < BatchResult.MaxErrorsKept) errors.Add($"#{i}: {ex.GetType().Name}: {ex.Message}");
            }
        });
        try
        {
            // The bodies honour the token; the extra grace only guards against one that does not.
            await run.WaitAsync(deadline + TimeSpan.FromSeconds(10));
        }
        catch (OperationCanceledException)
        {
            lock (errors) errors.Add($"deadline of {deadline.TotalSeconds:0} s reached");
        }
        catch (TimeoutException)
        {
            lock (errors) errors.Add($"items still running {deadline.TotalSeconds + 10:0} s after the start");
        }
        lock (errors) return new BatchResult(count, Volatile.Read(ref ok), errors.ToList(), started.Elapsed);
    }
}
