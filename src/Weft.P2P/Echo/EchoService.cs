using Weft.P2P.Host;

namespace Weft.P2P.Echo;

/// <summary>/echo/1.0.0 (as js @libp2p/echo): every byte goes back until the peer half-closes, then we close.</summary>
public static class EchoService
{
    public const string ProtocolId = "/echo/1.0.0";

    public static void Register(Libp2pHost host) => host.Handle(ProtocolId, EchoAsync);

    private static async Task EchoAsync(IncomingStream s, CancellationToken ct)
    {
        await s.Stream.Input.CopyToAsync(s.Stream.Output, ct).ConfigureAwait(false);
        await s.Stream.Output.CompleteAsync().ConfigureAwait(false);
    }
}
