using Weft.Wire.Noise;

namespace Weft.Wire.Tests.Noise;

public class NoiseHandshakePayloadTests
{
    [Fact]
    public void Encodes_fields_1_2_and_4_with_nested_extensions()
    {
        var payload = new NoiseHandshakePayload
        {
            IdentityKey = [0xaa, 0xbb],
            IdentitySignature = [0xcc],
            Extensions = new NoiseExtensions { StreamMuxers = ["/yamux/1.0.0"], WebTransportCertHashes = [[0x01]] },
        };
        var bytes = payload.ToProtobuf();
        // 0a 02 aabb | 12 01 cc | 22 len ( 0a 01 01 | 12 0c "/yamux/1.0.0" )
        var expected = "0a02aabb1201cc22" + (3 + 2 + 12).ToString("x2") + "0a0101120c" + Convert.ToHexStringLower("/yamux/1.0.0"u8);
        Assert.Equal(expected, Convert.ToHexStringLower(bytes));

        var back = NoiseHandshakePayload.FromProtobuf(bytes);
        Assert.Equal(payload.IdentityKey, back.IdentityKey);
        Assert.Equal(payload.IdentitySignature, back.IdentitySignature);
        Assert.NotNull(back.Extensions);
        Assert.Equal(["/yamux/1.0.0"], back.Extensions.StreamMuxers);
        Assert.Equal([[0x01]], back.Extensions.WebTransportCertHashes);
    }

    [Fact]
    public void No_extensions_means_no_field_4()
    {
        var bytes = new NoiseHandshakePayload { IdentityKey = [1], IdentitySignature = [2] }.ToProtobuf();
        Assert.Equal("0a01011201" + "02", Convert.ToHexStringLower(bytes));
        Assert.Null(NoiseHandshakePayload.FromProtobuf(bytes).Extensions);
    }

    [Fact]
    public void Unknown_and_legacy_fields_are_skipped()
    {
        // field 3 (legacy data) bytes, field 9 varint, then the real fields
        var bytes = Convert.FromHexString("1a03010203" + "4805" + "0a0101" + "120102");
        var p = NoiseHandshakePayload.FromProtobuf(bytes);
        Assert.Equal(new byte[] { 1 }, p.IdentityKey);
        Assert.Equal(new byte[] { 2 }, p.IdentitySignature);
    }

    [Theory]
    [InlineData("")]             // nothing
    [InlineData("0a0101")]       // no signature
    [InlineData("120102")]       // no key
    [InlineData("0801120102")]   // key with the wrong wire type
    [InlineData("0a05010203")]   // truncated length-delimited field
    [InlineData("0a01011201022203120180")] // stream muxer that is not UTF-8
    public void Malformed_payloads_are_noise_violations(string hex)
    {
        var ex = Assert.Throws<ProtocolViolationException>(() => NoiseHandshakePayload.FromProtobuf(Convert.FromHexString(hex)));
        Assert.Equal("noise", ex.Protocol);
    }

    [Fact]
    public void Too_many_muxers_are_refused()
    {
        var ext = new NoiseExtensions { StreamMuxers = Enumerable.Range(0, NoiseExtensions.MaxEntries + 1).Select(i => "/m/" + i).ToArray() };
        var bytes = new NoiseHandshakePayload { IdentityKey = [1], IdentitySignature = [2], Extensions = ext }.ToProtobuf();
        Assert.Throws<ProtocolViolationException>(() => NoiseHandshakePayload.FromProtobuf(bytes));
    }

    [Fact]
    public void Random_bytes_parse_or_throw_a_violation()
    {
        var rng = new Random(5);
        for (var i = 0; i < 2000; i++)
        {
            var data = new byte[rng.Next(0, 40)];
            rng.NextBytes(data);
            try
            {
                NoiseHandshakePayload.FromProtobuf(data);
            }
            catch (ProtocolViolationException)
            {
            }
        }
    }

    [Fact]
    public void Static_key_signature_data_is_prefix_then_key()
    {
        var key = Enumerable.Range(0, 32).Select(i => (byte)i).ToArray();
        var data = NoiseHandshakePayload.StaticKeySignedData(key);
        Assert.Equal("noise-libp2p-static-key:"u8.ToArray().Concat(key).ToArray(), data);
    }

    [Theory]
    [InlineData("/yamux/1.0.0", "/yamux/1.0.0", "/yamux/1.0.0", false)]
    [InlineData("/mplex/6.7.0,/yamux/1.0.0", "/yamux/1.0.0,/mplex/6.7.0", "/mplex/6.7.0", false)] // the initiator's order wins
    [InlineData("/yamux/1.0.0,/mplex/6.7.0", "/mplex/6.7.0,/yamux/1.0.0", "/yamux/1.0.0", false)]
    [InlineData("", "/yamux/1.0.0", null, false)]   // initiator sent none: multistream fallback
    [InlineData("/yamux/1.0.0", "", null, false)]   // responder sent none
    [InlineData("/yamux/1.0.0", "/mplex/6.7.0", null, true)] // disjoint: the handshake must fail
    public void Muxer_selection(string initiator, string responder, string? expected, bool disjoint)
    {
        static string[] L(string s) => s.Length == 0 ? [] : s.Split(',');
        Assert.Equal(expected, NoiseExtensions.SelectMuxer(L(initiator), L(responder), out var d));
        Assert.Equal(disjoint, d);
    }
}
