using System.Net;
using System.Net.Sockets;
using System.Text;
using Weft.Wire.Dns;
using Weft.Wire.Identity;
using Weft.Wire.Multiformats;

namespace Weft.P2P.Mdns;

/// <summary>Who we are in mDNS: the service, our random instance name under it, our host name, our peer ID.</summary>
/// <param name="Service">"_p2p._udp.local" or "RENDEZVOUS.local".</param>
/// <param name="PeerName">Random lower-case alphanumerics, 32–63 characters (discovery/mdns.md: not the peer ID, which may not fit a label).</param>
/// <param name="Peer">Our peer ID, in every dnsaddr.</param>
public sealed record MdnsSelf(DnsName Service, string PeerName, PeerId Peer)
{
    /// <summary>PEER-NAME.SERVICE: the name of our SRV and TXT records.</summary>
    public DnsName Instance { get; } = Service.Prepend(PeerName);

    /// <summary>PEER-NAME.local: the SRV target, named by our A/AAAA records.</summary>
    public DnsName Host { get; } = DnsName.FromLabels([PeerName, "local"]);

    /// <summary>A fresh random peer name.</summary>
    public static string NewPeerName()
    {
        const string alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
        var length = 32 + System.Security.Cryptography.RandomNumberGenerator.GetInt32(32);
        return System.Security.Cryptography.RandomNumberGenerator.GetString(alphabet, length);
    }
}

/// <summary>A peer named by an mDNS answer.</summary>
/// <param name="Instance">Its instance name (PEER-NAME.SERVICE).</param>
/// <param name="Peer">Its peer ID, from its dnsaddr strings; null in a goodbye, which carries only the PTR.</param>
/// <param name="Goodbye">The PTR had TTL 0: the peer is leaving.</param>
public sealed record MdnsPeer(DnsName Instance, PeerId? Peer, IReadOnlyList<Multiaddr> Addresses, TimeSpan Ttl, bool Goodbye);

/// <summary>
/// The libp2p mDNS records (discovery/mdns.md): the query "SERVICE PTR" and the answer "SERVICE PTR
/// PEER-NAME.SERVICE" with, as additional records, a TXT of <c>dnsaddr=MULTIADDR/p2p/ID</c> strings (one record,
/// one string per address: js reads every TXT, go's zeroconf only the last) plus the DNS-SD SRV and A/AAAA records
/// that go's zeroconf needs before it reports a peer.
/// </summary>
public static class MdnsRecords
{
    public const string DnsAddrPrefix = "dnsaddr=";

    /// <summary>DNS-SD's service enumeration name (RFC 6763 §9).</summary>
    public static readonly DnsName ServicesMeta = DnsName.Parse("_services._dns-sd._udp.local");

    /// <summary>A/AAAA records use 120 s whatever the other records' TTL (RFC 6762 §10).</summary>
    public const uint HostRecordTtl = 120;

    /// <summary>The "find all peers" query.</summary>
    public static DnsMessage Query(DnsName service) => new() { Questions = [new DnsQuestion(service, DnsType.PTR)] };

    /// <summary>The answer to the DNS-SD meta query: "_services._dns-sd._udp.local PTR SERVICE".</summary>
    public static DnsMessage ServicesAnswer(DnsName service, uint ttl) =>
        new() { IsResponse = true, Authoritative = true, Answers = [new PtrRecord { Name = ServicesMeta, Target = service, Ttl = ttl }] };

    /// <summary>The goodbye: our PTR with TTL 0 (RFC 6762 §10.1).</summary>
    public static DnsMessage Goodbye(MdnsSelf self) =>
        new() { IsResponse = true, Authoritative = true, Answers = [new PtrRecord { Name = self.Service, Target = self.Instance, Ttl = 0 }] };

    /// <summary>
    /// Our answer, or null when none of <paramref name="addresses"/> is worth announcing (only TCP over IPv4/IPv6
    /// is; loopback and relayed addresses are left out). Addresses are dropped from the end until the message fits
    /// <paramref name="maxSize"/> bytes.
    /// </summary>
    public static DnsMessage? Response(MdnsSelf self, IEnumerable<Multiaddr> addresses, uint ttl, int maxSize)
    {
        var usable = new List<(Multiaddr Addr, IPEndPoint Ep)>();
        foreach (var a in addresses)
        {
            if (a.IsCircuit || !a.WithoutPeerId().TryGetTcpEndPoint(out var ep) || IPAddress.IsLoopback(ep.Address)) continue;
            var text = DnsAddrPrefix + a.WithoutPeerId() + "/p2p/" + self.Peer;
            if (Encoding.UTF8.GetByteCount(text) > TxtRecord.MaxStringLength) continue;
            if (usable.All(u => u.Addr != a.WithoutPeerId())) usable.Add((a.WithoutPeerId(), ep));
        }
        for (var n = usable.Count; n > 0; n--)
        {
            var message = Build(self, usable.Take(n).ToList(), ttl);
            if (message.ToArray().Length <= maxSize) return message;
        }
        return null;
    }

    private static DnsMessage Build(MdnsSelf self, List<(Multiaddr Addr, IPEndPoint Ep)> addrs, uint ttl)
    {
        var additionals = new List<DnsRecord>
        {
            TxtRecord.FromStrings(self.Instance, addrs.Select(a => DnsAddrPrefix + a.Addr + "/p2p/" + self.Peer), ttl) with { CacheFlush = true },
            new SrvRecord { Name = self.Instance, Port = (ushort)addrs[0].Ep.Port, Target = self.Host, Ttl = ttl, CacheFlush = true },
        };
        foreach (var ip in addrs.Select(a => a.Ep.Address).Distinct())
        {
            additionals.Add(ip.AddressFamily == AddressFamily.InterNetwork
                ? new ARecord { Name = self.Host, Address = ip, Ttl = HostRecordTtl, CacheFlush = true }
                : new AaaaRecord { Name = self.Host, Address = ip, Ttl = HostRecordTtl, CacheFlush = true });
        }
        return new DnsMessage
        {
            IsResponse = true,
            Authoritative = true,
            Answers = [new PtrRecord { Name = self.Service, Target = self.Instance, Ttl = ttl }],
            Additionals = additionals,
        };
    }

    /// <summary>
    /// The peers an answer names for <paramref name="service"/>: each PTR to an instance other than
    /// <paramref name="ownInstance"/>, with the dnsaddr strings of that instance's TXT records (in any section)
    /// that carry a /p2p/ peer ID. Addresses come back without /p2p/. An instance whose strings name several
    /// peers keeps the first peer's addresses. A PTR with TTL 0 is a goodbye (its peer may be unnamed); any
    /// other PTR without a peer ID is skipped.
    /// </summary>
    public static IReadOnlyList<MdnsPeer> PeersIn(DnsMessage response, DnsName service, DnsName? ownInstance)
    {
        var found = new List<MdnsPeer>();
        var records = response.AllRecords.ToList();
        foreach (var ptr in records.OfType<PtrRecord>())
        {
            if (ptr.Name != service || ptr.Target == ownInstance || !ptr.Target.IsSubdomainOf(service)) continue;
            PeerId? peer = null;
            var addrs = new List<Multiaddr>();
            foreach (var txt in records.OfType<TxtRecord>().Where(t => t.Name == ptr.Target))
            {
                foreach (var s in txt.Texts)
                {
                    if (!s.StartsWith(DnsAddrPrefix, StringComparison.Ordinal)) continue;
                    if (!Multiaddr.TryParse(s[DnsAddrPrefix.Length..], out var ma) || ma.PeerId is not { } id) continue;
                    peer ??= id;
                    if (id != peer) continue;
                    var bare = ma.WithoutPeerId();
                    if (!bare.IsEmpty && !addrs.Contains(bare)) addrs.Add(bare);
                }
            }
            if (ptr.Ttl == 0)
                found.Add(new MdnsPeer(ptr.Target, peer, [], TimeSpan.Zero, Goodbye: true));
            else if (peer is not null && found.All(f => f.Peer != peer))
                found.Add(new MdnsPeer(ptr.Target, peer, addrs, TimeSpan.FromSeconds(ptr.Ttl), Goodbye: false));
        }
        return found;
    }
}
