using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace Weft.P2P.Tests.Support;

/// <summary>Captures log entries so tests can assert that a typed error was logged.</summary>
public sealed class ListLoggerProvider : ILoggerFactory
{
    private readonly object _gate = new();
    private readonly List<(string Text, TaskCompletionSource<string> Done)> _waiters = [];

    public ConcurrentQueue<(string Category, LogLevel Level, string Message)> Entries { get; } = new();

    /// <summary>Completes with the first message (already logged, or logged later) that contains <paramref name="text"/>.</summary>
    public Task<string> WaitFor(string text)
    {
        var tcs = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_gate)
        {
            foreach (var e in Entries)
            {
                if (e.Message.Contains(text, StringComparison.Ordinal)) { tcs.TrySetResult(e.Message); return tcs.Task; }
            }
            _waiters.Add((text, tcs));
        }
        return tcs.Task;
    }

    private void Add(string category, LogLevel level, string message)
    {
        lock (_gate)
        {
            Entries.Enqueue((category, level, message));
            for (var i = _waiters.Count - 1; i >= 0; i--)
            {
                if (!message.Contains(_waiters[i].Text, StringComparison.Ordinal)) continue;
                _waiters[i].Done.TrySetResult(message);
                _waiters.RemoveAt(i);
            }
        }
    }

    public ILogger CreateLogger(string categoryName) => new Logger(this, categoryName);
    public void AddProvider(ILoggerProvider provider) { }
    public void Dispose() { }

    private sealed class Logger(ListLoggerProvider owner, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
        public bool IsEnabled(LogLevel logLevel) => true;
        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
            => owner.Add(category, logLevel, formatter(state, exception));
    }
}
