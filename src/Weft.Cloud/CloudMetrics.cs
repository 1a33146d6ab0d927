using System.Diagnostics.Metrics;

namespace Weft.Cloud;

/// <summary>Counters of one replica on meter <see cref="MeterName"/>; the same numbers appear in /_weft/status.</summary>
public sealed class CloudMetrics : IDisposable
{
    public const string MeterName = "Weft.Cloud";

    private readonly Meter _meter = new(MeterName);
    private readonly Counter<long> _requests;
    private readonly Counter<long> _forwards;
    private readonly Counter<long> _sessions;
    private readonly Counter<long> _violations;
    private readonly Counter<long> _events;
    private long _requestCount, _forwardCount, _sessionsOpened, _violationCount, _eventCount, _uploadCount;

    public CloudMetrics(Func<int> liveSessions, Func<int> degraded)
    {
        _requests = _meter.CreateCounter<long>("weft_cloud_router_requests", description: "router requests answered, by outcome");
        _forwards = _meter.CreateCounter<long>("weft_cloud_router_forwards", description: "requests forwarded to the owner replica, by result");
        _sessions = _meter.CreateCounter<long>("weft_cloud_sessions_opened", description: "edge sessions opened");
        _violations = _meter.CreateCounter<long>("weft_cloud_protocol_violations", description: "sessions closed for malformed messages");
        _events = _meter.CreateCounter<long>("weft_cloud_eventbus_messages", description: "rest→eventbus messages, by outcome");
        _meter.CreateObservableGauge("weft_cloud_sessions", liveSessions, description: "edge sessions held now");
        _meter.CreateObservableGauge("weft_cloud_directory_degraded", degraded, description: "1 while the ownership directory is unreachable");
    }

    public long Requests => Interlocked.Read(ref _requestCount);
    public long Forwards => Interlocked.Read(ref _forwardCount);
    public long SessionsOpened => Interlocked.Read(ref _sessionsOpened);
    public long Violations => Interlocked.Read(ref _violationCount);
    public long EventMessages => Interlocked.Read(ref _eventCount);
    public long Uploads => Interlocked.Read(ref _uploadCount);

    public void Request(string outcome)
    {
        Interlocked.Increment(ref _requestCount);
        _requests.Add(1, new KeyValuePair<string, object?>("outcome", outcome));
    }

    public void Forward(string result)
    {
        Interlocked.Increment(ref _forwardCount);
        _forwards.Add(1, new KeyValuePair<string, object?>("result", result));
    }

    public void SessionOpened()
    {
        Interlocked.Increment(ref _sessionsOpened);
        _sessions.Add(1);
    }

    public void Violation()
    {
        Interlocked.Increment(ref _violationCount);
        _violations.Add(1);
    }

    public void Event(string outcome)
    {
        Interlocked.Increment(ref _eventCount);
        _events.Add(1, new KeyValuePair<string, object?>("outcome", outcome));
    }

    public void Upload() => Interlocked.Increment(ref _uploadCount);

    public void Dispose() => _meter.Dispose();
}
