using System.Security.Cryptography;
using Org.BouncyCastle.Math.EC.Rfc7748;

namespace Weft.Wire.Noise;

/// <summary>An X25519 key pair (RFC 7748) for the Noise DH functions.</summary>
public sealed class X25519Key : IDisposable
{
    public const int Length = 32;

    private readonly byte[] _private;
    private readonly byte[] _public = new byte[Length];

    private X25519Key(byte[] privateKey)
    {
        _private = privateKey;
        X25519.GeneratePublicKey(_private, 0, _public, 0);
    }

    /// <summary>A fresh random key pair.</summary>
    public static X25519Key Generate()
    {
        var k = new byte[Length];
        RandomNumberGenerator.Fill(k);
        return new X25519Key(k);
    }

    /// <summary>A key pair from 32 private-key bytes (clamped as RFC 7748 requires when used).</summary>
    public static X25519Key FromPrivateKey(ReadOnlySpan<byte> privateKey)
    {
        if (privateKey.Length != Length) throw new ArgumentException($"an X25519 private key is {Length} bytes, got {privateKey.Length}", nameof(privateKey));
        return new X25519Key(privateKey.ToArray());
    }

    public ReadOnlySpan<byte> PublicKey => _public;

    /// <summary>
    /// DH(this, remote) into <paramref name="sharedSecret"/>. A remote key of small order (all-zero result)
    /// is rejected with <see cref="ProtocolViolationException"/>.
    /// </summary>
    public void Agree(ReadOnlySpan<byte> remotePublicKey, Span<byte> sharedSecret)
    {
        if (remotePublicKey.Length != Length) throw new ProtocolViolationException("noise", $"an X25519 public key is {Length} bytes, got {remotePublicKey.Length}");
        var u = remotePublicKey.ToArray();
        var r = new byte[Length];
        if (!X25519.CalculateAgreement(_private, 0, u, 0, r, 0))
            throw new ProtocolViolationException("noise", "the peer's X25519 key is a low-order point (all-zero shared secret)");
        r.CopyTo(sharedSecret);
        CryptographicOperations.ZeroMemory(r);
    }

    public void Dispose() => CryptographicOperations.ZeroMemory(_private);
}
