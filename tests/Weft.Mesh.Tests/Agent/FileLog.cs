using Microsoft.Extensions.Logging;

namespace Weft.Mesh.Tests.Agent;

/// <summary>With WEFT_TEST_LOG=FILE, the in-process agents log (debug and up) to that file: for chasing a failure.</summary>
public static class FileLog
{
    public static ILoggerFactory Create()
    {
        var path = Environment.GetEnvironmentVariable("WEFT_TEST_LOG");
        return string.IsNullOrEmpty(path) ? Microsoft.Extensions.Logging.Abstractions.NullLoggerFactory.Instance : LoggerFactory.Create(b => b.AddProvider(new Provider(path)).SetMinimumLevel(LogLevel.Debug));
    }

    private sealed class Provider(string path) : ILoggerProvider
    {
        private readonly object _gate = new();

        public ILogger CreateLogger(string categoryName) => new FileLogger(this, categoryName);

        public void Write(string line)
        {
            lock (_gate) File.AppendAllText(path, line + "\n");
        }

        public void Dispose() { }

        private sealed class FileLogger(Provider owner, string category) : ILogger
        {
            public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
            public bool IsEnabled(LogLevel logLevel) => true;
            public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
                owner.Write($"{DateTime.UtcNow:HH:mm:ss.fff} {logLevel} {category}: {formatter(state, exception)}");
        }
    }
}
