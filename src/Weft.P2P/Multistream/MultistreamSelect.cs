using System.Buffers;
using System.IO.Pipelines;
using Weft.P2P.IO;
using Weft.Wire;
using Weft.Wire.Multistream;

namespace Weft.P2P.Multistream;

/// <summary>The peer answered <c>na</c> to every protocol we proposed.</summary>
public sealed class ProtocolNotSupportedException(IReadOnlyList<string> proposed)
    : Exception($"the peer supports none of: {string.Join(", ", proposed)}")
{
    public IReadOnlyList<string> Proposed { get; } = proposed;
}

/// <summary>multistream-select 1.0, both roles, over any duplex pipe (raw connection or muxed stream).</summary>
public static class MultistreamSelect
{
    /// <summary>How many proposals a listener answers before it gives up on the peer.</summary>
    public const int MaxProposals = 32;

    private static readonly TryParse<string> ReadMessage = (ref ReadOnlySequence<byte> input, out string value) =>
        MultistreamMessage.TryRead(ref input, out value);

    private static readonly TryParse<bool> ReadHeader = (ref ReadOnlySequence<byte> input, out bool value) =>
        value = MultistreamMessage.TryReadHeader(ref input);

    private static readonly TryParse<string> ReadProposal = (ref ReadOnlySequence<byte> input, out string value) =>
        MultistreamMessage.TryRead(ref input, out value, MultistreamMessage.MaxProtocolIdLength);

    /// <summary>
    /// Dialer: proposes each protocol in turn (the header and the first proposal go in one write, as
    /// go and js do) and returns the one the listener accepted.
    /// </summary>
    public static async Task<string> SelectOutboundAsync(IDuplexPipe pipe, IReadOnlyList<string> protocols, CancellationToken ct)
    {
        if (protocols.Count == 0) throw new ArgumentException("no protocols to propose", nameof(protocols));
        MultistreamMessage.Write(pipe.Output, MultistreamMessage.ProtocolId);
        MultistreamMessage.Write(pipe.Output, protocols[0]);
        await pipe.Output.FlushAsync(ct).ConfigureAwait(false);

        await pipe.Input.ReadAsync(ReadHeader, ct).ConfigureAwait(false);

        for (var i = 0; ; i++)
        {
            var answer = await pipe.Input.ReadAsync(ReadMessage, ct).ConfigureAwait(false);
            if (answer == protocols[i]) return answer;
            if (answer != MultistreamMessage.NotAvailable)
                throw new ProtocolViolationException("multistream", $"proposed '{protocols[i]}' but the peer answered '{Printable(answer)}'");
            if (i + 1 == protocols.Count) throw new ProtocolNotSupportedException(protocols);
            MultistreamMessage.Write(pipe.Output, protocols[i + 1]);
            await pipe.Output.FlushAsync(ct).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Listener: answers proposals (and <c>ls</c>) until the dialer proposes a protocol that
    /// <paramref name="supported"/> accepts, and returns it.
    /// </summary>
    public static async Task<string> SelectInboundAsync(IDuplexPipe pipe, Func<string, bool> supported, Func<IEnumerable<string>> list, CancellationToken ct)
    {
        await pipe.Input.ReadAsync(ReadHeader, ct).ConfigureAwait(false);
        MultistreamMessage.Write(pipe.Output, MultistreamMessage.ProtocolId);
        await pipe.Output.FlushAsync(ct).ConfigureAwait(false);

        for (var i = 0; i < MaxProposals; i++)
        {
            var proposal = await pipe.Input.ReadAsync(ReadProposal, ct).ConfigureAwait(false);
            if (proposal == MultistreamMessage.List)
            {
                MultistreamMessage.Write(pipe.Output, MultistreamMessage.EncodeListBody(list()));
            }
            else if (proposal != MultistreamMessage.NotAvailable && supported(proposal))
            {
                MultistreamMessage.Write(pipe.Output, proposal);
                await pipe.Output.FlushAsync(ct).ConfigureAwait(false);
                return proposal;
            }
            else
            {
                MultistreamMessage.Write(pipe.Output, MultistreamMessage.NotAvailable);
            }
            await pipe.Output.FlushAsync(ct).ConfigureAwait(false);
        }
        throw new ProtocolViolationException("multistream", $"the peer made more than {MaxProposals} proposals");
    }

    /// <summary>Dialer side of <c>ls</c>: the listener's protocols.</summary>
    public static async Task<IReadOnlyList<string>> ListAsync(IDuplexPipe pipe, CancellationToken ct)
    {
        MultistreamMessage.Write(pipe.Output, MultistreamMessage.ProtocolId);
        MultistreamMessage.Write(pipe.Output, MultistreamMessage.List);
        await pipe.Output.FlushAsync(ct).ConfigureAwait(false);
        await pipe.Input.ReadAsync(ReadHeader, ct).ConfigureAwait(false);
        var body = await pipe.Input.ReadAsync(ReadMessage, ct).ConfigureAwait(false);
        return MultistreamMessage.DecodeListBody(body);
    }

    private static string Printable(string s)
    {
        var t = new string(s.Select(c => char.IsControl(c) ? '?' : c).ToArray());
        return t.Length > 64 ? t[..64] + "…" : t;
    }
}
