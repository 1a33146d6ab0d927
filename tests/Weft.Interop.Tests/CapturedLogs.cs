using Microsoft.Extensions.Logging;

namespace Weft.Interop.Tests;

/// <summary>A logger factory that keeps every message (all levels) so a test can wait for one.</summary>
public sealed class CapturedLogs : ILoggerFactory
{
    private readonly object _gate = new();
    private readonly List<string> _messages = [];
    private readonly List<(string Needle, TaskCompletionSource<string> Found)> _waiting = [];

    public IReadOnlyList<string> Messages { get { lock (_gate) return _messages.ToList(); } }

    /// <summary>Everything logged, one message a line (for failure messages).</summary>
    public string Dump() => string.Join(Environment.NewLine, Messages);

    /// <summary>The first message containing <paramref name="needle"/>, already logged or logged later.</summary>
    public Task<string> WaitFor(string needle)
    {
        var found = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_gate)
        {
            var hit = _messages.FirstOrDefault(m => m.Contains(needle, StringComparison.Ordinal));
            if (hit is not null) found.SetResult(hit);
            else _waiting.Add((needle, found));
        }
        return found.Task;
    }

    private void Log(string category, string message)
    {
        var line = category + ": " + message;
        lock (_gate)
        {
            _messages.Add(line);
            _waiting.RemoveAll(w => line.Contains(w.Needle, StringComparison.Ordinal) && w.Found.TrySetResult(line));
        }
    }

    public ILogger CreateLogger(string categoryName) => new Logger(this, categoryName);

    public void AddProvider(ILoggerProvider provider) { }

    public void Dispose() { }

    private sealed class Logger(CapturedLogs owner, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel != LogLevel.None;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            owner.Log(category, formatter(state, exception));
    }
}
