using Weft.Wire.Identity;
using Weft.Wire.Relay;
using static Weft.Wire.Tests.Multiformats.TestBytes;
using static Weft.Wire.Tests.Relay.RelayVectors;

namespace Weft.Wire.Tests.Relay;

public class ReservationVoucherTests
{
    private static readonly ReservationVoucher Voucher = new(RelayKey.PeerId, PeerKey.PeerId, 1_800_000_000);

    [Fact]
    public void ProtobufVector()
    {
        // relay = 1 (0a 26 <id>), peer = 2 (12 26 <id>), expiration = 3: 1800000000 = 0x6B49D200 -> 80 a4 a7 da 06.
        byte[] expected = Concat([0x0a, 0x26], RelayKey.PeerId.Bytes.ToArray(), [0x12, 0x26], PeerIdBytes, Hex("18 80a4a7da06"));
        Assert.Equal(expected, Voucher.ToProtobuf());
        ReservationVoucher decoded = ReservationVoucher.FromProtobuf(expected);
        Assert.Equal(RelayKey.PeerId, decoded.Relay);
        Assert.Equal(PeerKey.PeerId, decoded.Peer);
        Assert.Equal(1_800_000_000UL, decoded.Expiration);
    }

    [Fact]
    public void DomainAndPayloadType()
    {
        Assert.Equal("libp2p-relay-rsvp", ReservationVoucher.Domain);
        Assert.Equal(Hex("0302"), ReservationVoucher.PayloadType.ToArray());
    }

    [Fact]
    public void ExpirationZeroIsStillWritten()
    {
        byte[] bytes = new ReservationVoucher(RelayKey.PeerId, PeerKey.PeerId, 0).ToProtobuf();
        Assert.Equal(Hex("18 00"), bytes[^2..]);
        Assert.Equal(0UL, ReservationVoucher.FromProtobuf(bytes).Expiration);
    }

    [Fact]
    public void SealAndOpen()
    {
        SignedEnvelope envelope = Voucher.Seal(RelayKey);
        Assert.Equal(RelayKey.PeerId, envelope.PeerId);
        Assert.Equal(Hex("0302"), envelope.PayloadType.ToArray());
        ReservationVoucher opened = ReservationVoucher.Open(envelope.ToProtobuf());
        Assert.Equal(RelayKey.PeerId, opened.Relay);
        Assert.Equal(PeerKey.PeerId, opened.Peer);
        Assert.Equal(1_800_000_000UL, opened.Expiration);
        Assert.Equal(envelope.ToProtobuf(), Voucher.SealToBytes(RelayKey));
    }

    [Fact]
    public void SealRequiresTheRelaysKey()
    {
        Assert.Throws<ArgumentException>(() => Voucher.Seal(PeerKey));
    }

    [Fact]
    public void VoucherSignedBySomeoneElseIsRejected()
    {
        byte[] forged = SignedEnvelope.Seal(PeerKey, ReservationVoucher.Domain, ReservationVoucher.PayloadType, Voucher.ToProtobuf()).ToProtobuf();
        Assert.Equal("relay", Assert.Throws<ProtocolViolationException>(() => ReservationVoucher.Open(forged)).Protocol);
    }

    [Fact]
    public void WrongDomainOrPayloadTypeIsRejected()
    {
        byte[] wrongDomain = SignedEnvelope.Seal(RelayKey, "libp2p-peer-record", ReservationVoucher.PayloadType, Voucher.ToProtobuf()).ToProtobuf();
        Assert.Throws<ProtocolViolationException>(() => ReservationVoucher.Open(wrongDomain));
        byte[] wrongType = SignedEnvelope.Seal(RelayKey, ReservationVoucher.Domain, Hex("0301"), Voucher.ToProtobuf()).ToProtobuf();
        Assert.Throws<ProtocolViolationException>(() => ReservationVoucher.Open(wrongType));
    }

    [Fact]
    public void EveryTamperedByteIsRejected()
    {
        byte[] sealed_ = Voucher.SealToBytes(RelayKey);
        for (int i = 0; i < sealed_.Length; i++)
        {
            byte[] tampered = (byte[])sealed_.Clone();
            tampered[i] ^= 0x01;
            var e = Assert.Throws<ProtocolViolationException>(() => ReservationVoucher.Open(tampered));
            Assert.Equal("relay", e.Protocol);
        }
    }

    [Fact]
    public void TruncatedEnvelopesAreRejected()
    {
        byte[] sealed_ = Voucher.SealToBytes(RelayKey);
        for (int n = 0; n < sealed_.Length; n++)
        {
            byte[] prefix = sealed_[..n];
            Assert.Throws<ProtocolViolationException>(() => ReservationVoucher.Open(prefix));
        }
    }

    [Theory]
    [InlineData("")]
    [InlineData("18 05")]
    [InlineData("0a 00 12 00 18 05")]
    public void MissingOrInvalidFieldsAreViolations(string hex)
    {
        Assert.Equal("relay", Assert.Throws<ProtocolViolationException>(() => ReservationVoucher.FromProtobuf(Hex(hex))).Protocol);
    }

    [Fact]
    public void MissingExpirationIsAViolation()
    {
        byte[] bytes = Voucher.ToProtobuf()[..^6];
        Assert.Throws<ProtocolViolationException>(() => ReservationVoucher.FromProtobuf(bytes));
    }

    [Fact]
    public void RandomInputsParseOrViolate()
    {
        foreach (byte[] buffer in Random(2000, 96, seed: 74))
        {
            ParsesOrViolates(() => ReservationVoucher.FromProtobuf(buffer));
            ParsesOrViolates(() => ReservationVoucher.Open(buffer));
        }
    }
}
