using System.Security.Cryptography;

namespace Weft.Lab;

/// <summary>Options for <see cref="NatLab.CreateAsync"/>.</summary>
public sealed record LabOptions
{
    /// <summary>Longest allowed prefix: the longest name the lab builds is prefix + 3 characters, and Linux link names are limited to 15.</summary>
    public const int MaxPrefixLength = 12;

    /// <summary>Shortest allowed prefix (so that <see cref="NatLab.RemoveStale"/> cannot match unrelated namespaces by accident).</summary>
    public const int MinPrefixLength = 2;

    /// <summary>Prefix of every namespace and link name the lab creates: lower-case ASCII letters and digits, starting with a letter.</summary>
    public string Prefix { get; init; } = NewPrefix();

    /// <summary>NAT behaviour of router1 (LAN1, 192.168.1.0/24).</summary>
    public NatMode Lan1Nat { get; init; } = NatMode.PortRestrictedCone;

    /// <summary>NAT behaviour of router2 (LAN2, 192.168.2.0/24).</summary>
    public NatMode Lan2Nat { get; init; } = NatMode.PortRestrictedCone;

    /// <summary>
    /// Extra public-segment nodes to build, from <see cref="NatLab.OptionalPublicNodes"/>: relay2 (10.250.0.2), lb
    /// (10.250.0.30), cloud-a (10.250.0.31), cloud-b (10.250.0.32).
    /// </summary>
    public IReadOnlyList<string> ExtraPublicNodes { get; init; } = [];

    /// <summary>
    /// Public nodes (relay/relay1 and any of <see cref="ExtraPublicNodes"/>) whose link to the public bridge passes a
    /// userspace delay bridge (see <see cref="NatLab.SetDelayAsync"/>); needs python3 and ethtool.
    /// </summary>
    public IReadOnlyList<string> DelayLinks { get; init; } = [];

    /// <summary>Timeout of each single setup/teardown command.</summary>
    public TimeSpan CommandTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>A fresh random prefix: "wl" + 4 hex digits.</summary>
    public static string NewPrefix() => "wl" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(2));

    internal static void ValidatePrefix(string prefix)
    {
        ArgumentNullException.ThrowIfNull(prefix);
        if (prefix.Length < MinPrefixLength || prefix.Length > MaxPrefixLength)
        {
            throw new ArgumentException($"lab prefix must be {MinPrefixLength}..{MaxPrefixLength} characters: '{prefix}'", nameof(prefix));
        }

        if (!char.IsAsciiLetterLower(prefix[0]))
        {
            throw new ArgumentException($"lab prefix must start with a lower-case ASCII letter: '{prefix}'", nameof(prefix));
        }

        foreach (char c in prefix)
        {
            if (!char.IsAsciiLetterLower(c) && !char.IsAsciiDigit(c))
            {
                throw new ArgumentException($"lab prefix may contain only a-z and 0-9: '{prefix}'", nameof(prefix));
            }
        }
    }
}
