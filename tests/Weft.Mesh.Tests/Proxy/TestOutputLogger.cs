using Microsoft.Extensions.Logging;
using Xunit.Abstractions;

namespace Weft.Mesh.Tests.Proxy;

/// <summary>Log lines (Information and up) to a test's output, shown when the test fails.</summary>
internal sealed class TestOutputLoggers(ITestOutputHelper output, string prefix) : ILoggerFactory, ILogger
{
    public ILogger CreateLogger(string categoryName) => this;

    public void AddProvider(ILoggerProvider provider) { }

    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Information;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        if (!IsEnabled(logLevel)) return;
        try { output.WriteLine($"{DateTime.UtcNow:HH:mm:ss.fff} {prefix} {logLevel} {eventId.Id}: {formatter(state, exception)}"); }
        catch (InvalidOperationException) { /* the test has ended */ }
    }

    public void Dispose() { }
}
