using System.Buffers;
using System.Text;
using Weft.P2P.Multistream;
using Weft.P2P.Transport;
using Weft.Wire;
using Weft.Wire.Multistream;

namespace Weft.P2P.Tests.Multistream;

public class MultistreamSelectTests
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(10);

    [Fact]
    public async Task Dialer_and_listener_agree_on_the_first_shared_protocol()
    {
        var (a, b) = DuplexPipePair.Create();
        var listener = MultistreamSelect.SelectInboundAsync(b, p => p is "/b" or "/c", () => ["/b", "/c"], default);
        var chosen = await MultistreamSelect.SelectOutboundAsync(a, ["/a", "/b", "/c"], default).WaitAsync(Deadline);
        Assert.Equal("/b", chosen);
        Assert.Equal("/b", await listener.WaitAsync(Deadline));
    }

    [Fact]
    public async Task None_shared_throws_ProtocolNotSupported_and_the_listener_keeps_waiting()
    {
        var (a, b) = DuplexPipePair.Create();
        using var cts = new CancellationTokenSource();
        var listener = MultistreamSelect.SelectInboundAsync(b, p => p == "/z", () => ["/z"], cts.Token);
        var ex = await Assert.ThrowsAsync<ProtocolNotSupportedException>(() => MultistreamSelect.SelectOutboundAsync(a, ["/a", "/b"], default)).WaitAsync(Deadline);
        Assert.Equal(["/a", "/b"], ex.Proposed);
        Assert.False(listener.IsCompleted);
        cts.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => listener).WaitAsync(Deadline);
    }

    [Fact]
    public async Task Ls_lists_the_listeners_protocols()
    {
        var (a, b) = DuplexPipePair.Create();
        using var cts = new CancellationTokenSource();
        var listener = MultistreamSelect.SelectInboundAsync(b, p => p == "/x/1", () => ["/x/1", "/y/2"], cts.Token);
        var list = await MultistreamSelect.ListAsync(a, default).WaitAsync(Deadline);
        Assert.Equal(["/x/1", "/y/2"], list);
        cts.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => listener).WaitAsync(Deadline);
    }

    [Fact]
    public async Task Listener_handles_the_coalesced_js_first_write()
    {
        var (a, b) = DuplexPipePair.Create();
        var listener = MultistreamSelect.SelectInboundAsync(b, p => p == "/noise", () => ["/noise"], default);
        var w = new ArrayBufferWriter<byte>();
        MultistreamMessage.Write(w, "/multistream/1.0.0");
        MultistreamMessage.Write(w, "/noise");
        await a.Output.WriteAsync(w.WrittenMemory); // one write, as js does
        Assert.Equal("/noise", await listener.WaitAsync(Deadline));
        var r = await a.Input.ReadAtLeastAsync(28).AsTask().WaitAsync(Deadline);
        Assert.Equal(w.WrittenSpan.ToArray(), r.Buffer.Slice(0, 28).ToArray());
    }

    [Fact]
    public async Task Garbage_header_is_a_violation_that_mentions_the_psk()
    {
        var (a, b) = DuplexPipePair.Create();
        var listener = MultistreamSelect.SelectInboundAsync(b, _ => true, () => [], default);
        await a.Output.WriteAsync(Encoding.ASCII.GetBytes("\x05hello"));
        var ex = await Assert.ThrowsAsync<ProtocolViolationException>(() => listener).WaitAsync(Deadline);
        Assert.Contains("PSK", ex.Message);
    }

    [Fact]
    public async Task Too_many_proposals_end_the_negotiation()
    {
        var (a, b) = DuplexPipePair.Create();
        var listener = MultistreamSelect.SelectInboundAsync(b, _ => false, () => [], default);
        var w = new ArrayBufferWriter<byte>();
        MultistreamMessage.Write(w, "/multistream/1.0.0");
        for (var i = 0; i <= MultistreamSelect.MaxProposals; i++) MultistreamMessage.Write(w, "/nope/" + i);
        await a.Output.WriteAsync(w.WrittenMemory);
        await Assert.ThrowsAsync<ProtocolViolationException>(() => listener).WaitAsync(Deadline);
    }

    [Fact]
    public async Task Peer_closing_mid_negotiation_is_end_of_stream()
    {
        var (a, b) = DuplexPipePair.Create();
        var listener = MultistreamSelect.SelectInboundAsync(b, _ => true, () => [], default);
        await a.Output.WriteAsync(new byte[] { 0x13, (byte)'/' });
        await a.Output.CompleteAsync();
        await Assert.ThrowsAsync<EndOfStreamException>(() => listener).WaitAsync(Deadline);
    }
}
