using Weft.P2P.Kad;
using Weft.Wire.Identity;
using Weft.Wire.Kad;
using Weft.Wire.Multiformats;

namespace Weft.P2P.Tests.Kad;

public class KadStoreTests
{
    private static readonly DateTimeOffset T0 = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);

    private static KadRecord Rec(string key, int size) => new() { Key = System.Text.Encoding.UTF8.GetBytes(key), Value = new byte[size] };

    [Fact]
    public void Records_are_bounded_in_count_and_bytes_and_expire()
    {
        var s = new RecordStore(maxRecords: 2, maxBytes: 100, ttl: TimeSpan.FromHours(1));
        Assert.True(s.Put(Rec("/a/1", 40), T0));
        Assert.True(s.Put(Rec("/a/2", 40), T0));
        Assert.False(s.Put(Rec("/a/3", 1), T0)); // count
        Assert.True(s.Put(Rec("/a/2", 60), T0)); // replacing fits: 40 + 60
        Assert.False(s.Put(Rec("/a/1", 41), T0)); // bytes: 41 + 60 > 100
        Assert.Equal(100, s.Bytes);
        Assert.NotNull(s.Get("/a/1"u8, T0.AddMinutes(59)));
        Assert.Null(s.Get("/a/1"u8, T0.AddMinutes(61)));
        Assert.True(s.Put(Rec("/a/3", 1), T0.AddHours(2)));
        Assert.Null(s.Get("/a/2"u8, T0.AddHours(2)));
        Assert.Equal(1, s.Count);
        Assert.True(s.Put(Rec("/a/4", 99), T0.AddHours(2))); // expired ones freed their bytes
        Assert.Equal(100, s.Bytes);
    }

    [Fact]
    public void Providers_are_bounded_per_key_per_peer_and_in_keys()
    {
        var s = new ProviderStore(maxKeys: 3, maxPerKey: 2, maxKeysPerProvider: 2, ttl: TimeSpan.FromHours(48));
        var a = Ed25519PrivateKey.Generate().PeerId;
        var b = Ed25519PrivateKey.Generate().PeerId;
        var c = Ed25519PrivateKey.Generate().PeerId;
        var k1 = ContentKey.ForText("1");
        var k2 = ContentKey.ForText("2");
        var k3 = ContentKey.ForText("3");
        var addr = new[] { Multiaddr.Parse("/ip4/10.0.0.1/tcp/1") };
        Assert.Null(s.Add(k1, a, addr, T0));
        Assert.Null(s.Add(k1, a, addr, T0)); // refresh
        Assert.Null(s.Add(k1, b, addr, T0));
        Assert.Equal("providers per key", s.Add(k1, c, addr, T0));
        Assert.Null(s.Add(k2, a, addr, T0));
        Assert.Equal("keys per provider", s.Add(k3, a, addr, T0));
        Assert.Null(s.Add(k3, c, addr, T0));
        Assert.Equal("provider keys", s.Add(ContentKey.ForText("4"), c, addr, T0));
        Assert.Equal([b, a], s.Get(k1, T0).Select(p => p.Peer).OrderBy(p => p == a));
        Assert.Empty(s.Get(k1, T0.AddHours(49)));
        Assert.Null(s.Add(ContentKey.ForText("4"), c, addr, T0.AddHours(49))); // expired records free their places
        Assert.Equal(1, s.KeyCount);
    }
}
