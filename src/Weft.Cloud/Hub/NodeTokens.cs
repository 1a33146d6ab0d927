using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;

namespace Weft.Cloud.Hub;

/// <summary>Per-node tokens: hex(HMAC-SHA256(secret, "weft-node-token:" + node)). A token opens sessions for its node only.</summary>
public sealed partial class NodeTokens(byte[] secret)
{
    public static NodeTokens FromFile(string path) => new(File.ReadAllBytes(path));

    public string TokenFor(string node) => Convert.ToHexStringLower(HMACSHA256.HashData(secret, Encoding.UTF8.GetBytes("weft-node-token:" + node)));

    public bool Verify(string node, string? token)
    {
        if (token is null || token.Length != 64) return false;
        var expected = Encoding.ASCII.GetBytes(TokenFor(node));
        return CryptographicOperations.FixedTimeEquals(expected, Encoding.ASCII.GetBytes(token.ToLowerInvariant()));
    }

    /// <summary>A Kubernetes node name: a DNS-1123 subdomain (lower-case letters, digits, '-', '.'; at most 253).</summary>
    public static bool IsValidNodeName(string? s) => s is { Length: > 0 and <= 253 } && NodeName().IsMatch(s);

    [GeneratedRegex("^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")]
    private static partial Regex NodeName();
}
