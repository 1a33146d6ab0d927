using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using Weft.Wire.Identity;

namespace Weft.Mesh.Identity;

/// <summary>
/// EdgeMesh-compatible identities derived from a Kubernetes node name (EdgeMesh <c>GenerateKeyPairWithString</c>):
/// MD5 of the UTF-8 name, first 8 bytes as a big-endian int64 seed for Go <c>math/rand</c>, and the first 32 bytes
/// read from that generator as the Ed25519 seed.
/// SECURITY: the private key is a public function of the node name; it authenticates nothing beyond the PSK.
/// Use it only to interoperate with EdgeMesh peers.
/// </summary>
public static class LegacyIdentity
{
    /// <summary>Size of an Ed25519 private key seed.</summary>
    public const int SeedLength = 32;

    /// <summary>Longest accepted node name in UTF-8 bytes (Kubernetes node names are at most 253 characters).</summary>
    public const int MaxNodeNameBytes = 4096;

    private const int SeedPrefixLength = sizeof(long);

    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>Returns the 32-byte Ed25519 seed EdgeMesh derives for <paramref name="nodeName"/>.</summary>
    /// <exception cref="ArgumentNullException"><paramref name="nodeName"/> is null.</exception>
    /// <exception cref="ArgumentException">
    /// <paramref name="nodeName"/> is empty, longer than <see cref="MaxNodeNameBytes"/> in UTF-8, or not valid UTF-16.
    /// </exception>
    public static byte[] DeriveEd25519Seed(string nodeName)
    {
        ArgumentNullException.ThrowIfNull(nodeName);
        if (nodeName.Length == 0)
        {
            throw new ArgumentException("Node name must not be empty.", nameof(nodeName));
        }

        int byteCount;
        try
        {
            byteCount = StrictUtf8.GetByteCount(nodeName);
        }
        catch (EncoderFallbackException ex)
        {
            throw new ArgumentException("Node name is not valid Unicode text.", nameof(nodeName), ex);
        }

        if (byteCount > MaxNodeNameBytes)
        {
            throw new ArgumentException($"Node name exceeds {MaxNodeNameBytes} UTF-8 bytes.", nameof(nodeName));
        }

        Span<byte> utf8 = stackalloc byte[byteCount];
        StrictUtf8.GetBytes(nodeName, utf8);

        Span<byte> digest = stackalloc byte[MD5.HashSizeInBytes];
#pragma warning disable CA5351 // MD5 is mandated by the EdgeMesh derivation; it is not used for security here.
        MD5.HashData(utf8, digest);
#pragma warning restore CA5351

        var seed = BinaryPrimitives.ReadInt64BigEndian(digest[..SeedPrefixLength]);
        var rng = new GoMathRand(seed);
        var result = new byte[SeedLength];
        rng.Read(result);
        return result;
    }

    /// <summary>The Ed25519 key EdgeMesh uses for <paramref name="nodeName"/>.</summary>
    /// <exception cref="ArgumentException">See <see cref="DeriveEd25519Seed"/>.</exception>
    public static Ed25519PrivateKey DeriveKey(string nodeName)
    {
        var seed = DeriveEd25519Seed(nodeName);
        return Ed25519PrivateKey.FromSeed(seed);
    }

    /// <summary>The peer ID EdgeMesh assigns to <paramref name="nodeName"/> (e.g. "k8s-master" → 12D3KooWB5qV…).</summary>
    /// <exception cref="ArgumentException">See <see cref="DeriveEd25519Seed"/>.</exception>
    public static PeerId DerivePeerId(string nodeName) => DeriveKey(nodeName).PeerId;
}
