using System.Net;

namespace Weft.Lab.Services;

/// <summary>A mosquitto broker (Debian package mosquitto) on a free port, anonymous, no persistence; ready when it accepts TCP.</summary>
public sealed class MosquittoService : LabService
{
    private readonly string _program;

    private MosquittoService(IPAddress address) : base("mosquitto", address)
    {
        _program = Require("mosquitto", "mosquitto");
        Port = FreePort(address);
        WriteFile("mosquitto.conf", $"listener {Port} {address}\nallow_anonymous true\npersistence false\nmax_queued_messages 100000\n");
    }

    public int Port { get; }

    public IPEndPoint EndPoint => new(Address, Port);

    protected override string Program => _program;

    protected override IReadOnlyList<string> Arguments => ["-c", Path.Combine(Folder, "mosquitto.conf")];

    public static Task<MosquittoService> StartNewAsync(IPAddress? address = null, CancellationToken ct = default)
        => StartOrDisposeAsync(new MosquittoService(address ?? IPAddress.Loopback), ct);

    protected override Task<bool> IsReadyAsync(CancellationToken ct) => CanConnectAsync(EndPoint, ct);
}
