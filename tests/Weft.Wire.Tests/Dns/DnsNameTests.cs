using Weft.Wire.Dns;

namespace Weft.Wire.Tests.Dns;

public class DnsNameTests
{
    [Theory]
    [InlineData("_p2p._udp.local", new[] { "_p2p", "_udp", "local" })]
    [InlineData("_p2p._udp.local.", new[] { "_p2p", "_udp", "local" })]
    [InlineData("My\\.Printer._ipp._tcp.local", new[] { "My.Printer", "_ipp", "_tcp", "local" })]
    [InlineData("back\\\\slash", new[] { "back\\slash" })]
    [InlineData(".", new string[0])]
    [InlineData("", new string[0])]
    public void Parses_text(string text, string[] labels) => Assert.Equal(labels, DnsName.Parse(text).Labels);

    [Fact]
    public void Prints_with_escapes_and_compares_ignoring_ascii_case_only()
    {
        Assert.Equal("My\\.Printer._ipp.local", DnsName.FromLabels(["My.Printer", "_ipp", "local"]).ToString());
        Assert.Equal(".", DnsName.Root.ToString());
        Assert.Equal(DnsName.Parse("EDGEMESH_PLAYGOUND.local"), DnsName.Parse("edgemesh_playgound.LOCAL"));
        Assert.Equal(DnsName.Parse("A.b").GetHashCode(), DnsName.Parse("a.B").GetHashCode());
        Assert.NotEqual(DnsName.Parse("Ä.local"), DnsName.Parse("ä.local")); // RFC 4343: ASCII only
        Assert.NotEqual(DnsName.Parse("a.b"), DnsName.Parse("a.b.c"));
    }

    [Fact]
    public void Subdomains_and_parents()
    {
        var service = DnsName.Parse("_p2p._udp.local");
        var instance = service.Prepend("Abc");
        Assert.True(instance.IsSubdomainOf(service));
        Assert.True(instance.IsSubdomainOf(DnsName.Parse("LOCAL")));
        Assert.True(service.IsSubdomainOf(service));
        Assert.False(service.IsSubdomainOf(instance));
        Assert.Equal(service, instance.Skip(1));
        Assert.Equal(DnsName.Root, instance.Skip(9));
        Assert.Equal(4 + 5 + 5 + 6 + 1, instance.WireLength);
    }

    [Theory]
    [InlineData("a..b")]
    [InlineData("..")]
    [InlineData("trailing\\")]
    public void Bad_text_is_a_format_error(string text) => Assert.Throws<FormatException>(() => DnsName.Parse(text));

    [Fact]
    public void Label_and_name_lengths_are_bounded()
    {
        var max = new string('a', DnsName.MaxLabelLength);
        Assert.Single(DnsName.Parse(max).Labels);
        Assert.Throws<FormatException>(() => DnsName.Parse(max + "a"));
        Assert.Throws<FormatException>(() => DnsName.Parse(max + "é")); // 64 bytes in UTF-8
        var label = new string('x', 62);
        Assert.Equal(253, DnsName.Parse(string.Join('.', label, label, label, label)).WireLength);
        Assert.Throws<FormatException>(() => DnsName.Parse(string.Join('.', label, label, label, label, "ab")));
        Assert.Throws<ArgumentException>(() => DnsName.FromLabels([""]));
    }
}
