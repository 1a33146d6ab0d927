using System.Buffers.Binary;
using System.Security.Cryptography;

namespace Weft.Wire.Noise;

/// <summary>
/// Noise <c>CipherState</c> for ChaChaPoly: a 32-byte key and a 64-bit message counter. The AEAD nonce is
/// 4 zero bytes followed by the counter in little-endian order. One instance serves one direction and is
/// not thread-safe.
/// </summary>
public sealed class CipherState : IDisposable
{
    public const int KeyLength = 32;
    public const int TagLength = 16;
    public const int NonceLength = 12;

    /// <summary>The largest counter value that may be used; 2^64-1 is reserved by the Noise spec.</summary>
    public const ulong MaxNonce = ulong.MaxValue - 1;

    private ChaCha20Poly1305? _aead;
    private ulong _nonce;

    /// <summary>True once <see cref="InitializeKey"/> has been called.</summary>
    public bool HasKey => _aead is not null;

    /// <summary>The counter the next encryption or decryption will use.</summary>
    public ulong Nonce => _nonce;

    /// <summary>Sets the key and resets the counter to zero.</summary>
    public void InitializeKey(ReadOnlySpan<byte> key)
    {
        if (key.Length != KeyLength) throw new ArgumentException($"a ChaChaPoly key is {KeyLength} bytes, got {key.Length}", nameof(key));
        _aead?.Dispose();
        _aead = new ChaCha20Poly1305(key);
        _nonce = 0;
    }

    /// <summary>Noise <c>SetNonce</c>: moves the counter (tests use it to reach the end of the nonce space).</summary>
    public void SetNonce(ulong nonce) => _nonce = nonce;

    /// <summary>
    /// Noise <c>EncryptWithAd</c>: writes ciphertext followed by the tag into <paramref name="destination"/>
    /// (or a plain copy when there is no key yet). Returns the number of bytes written.
    /// </summary>
    public int EncryptWithAd(ReadOnlySpan<byte> ad, ReadOnlySpan<byte> plaintext, Span<byte> destination)
    {
        if (_aead is null)
        {
            plaintext.CopyTo(destination);
            return plaintext.Length;
        }
        var n = plaintext.Length;
        if (destination.Length < n + TagLength) throw new ArgumentException("destination too small for ciphertext and tag", nameof(destination));
        Encrypt(plaintext, destination[..n], destination.Slice(n, TagLength), ad);
        return n + TagLength;
    }

    /// <summary>
    /// Noise <c>DecryptWithAd</c>: checks and removes the tag, writing the plaintext into <paramref name="destination"/>
    /// (a plain copy when there is no key yet). Returns the plaintext length.
    /// Throws <see cref="ProtocolViolationException"/> when the tag does not verify.
    /// </summary>
    public int DecryptWithAd(ReadOnlySpan<byte> ad, ReadOnlySpan<byte> ciphertext, Span<byte> destination)
    {
        if (_aead is null)
        {
            ciphertext.CopyTo(destination);
            return ciphertext.Length;
        }
        if (ciphertext.Length < TagLength)
            throw new ProtocolViolationException("noise", $"encrypted message of {ciphertext.Length} bytes is shorter than the {TagLength}-byte tag");
        var n = ciphertext.Length - TagLength;
        Decrypt(ciphertext[..n], ciphertext.Slice(n, TagLength), destination[..n], ad);
        return n;
    }

    /// <summary>
    /// Encrypts with the current counter and advances it. <paramref name="ciphertext"/> may be the same memory
    /// as <paramref name="plaintext"/> (in place), but must not partially overlap it.
    /// </summary>
    public void Encrypt(ReadOnlySpan<byte> plaintext, Span<byte> ciphertext, Span<byte> tag, ReadOnlySpan<byte> ad = default)
    {
        var aead = _aead ?? throw new InvalidOperationException("cipher state has no key");
        Span<byte> nonce = stackalloc byte[NonceLength];
        UseNonce(nonce);
        aead.Encrypt(nonce, plaintext, ciphertext, tag, ad);
        _nonce++;
    }

    /// <summary>
    /// Decrypts with the current counter and advances it on success; on a bad tag throws
    /// <see cref="ProtocolViolationException"/> and leaves the counter unchanged.
    /// </summary>
    public void Decrypt(ReadOnlySpan<byte> ciphertext, ReadOnlySpan<byte> tag, Span<byte> plaintext, ReadOnlySpan<byte> ad = default)
    {
        var aead = _aead ?? throw new InvalidOperationException("cipher state has no key");
        Span<byte> nonce = stackalloc byte[NonceLength];
        UseNonce(nonce);
        try
        {
            aead.Decrypt(nonce, ciphertext, tag, plaintext, ad);
        }
        catch (AuthenticationTagMismatchException e)
        {
            throw new ProtocolViolationException("noise", $"decryption failed for message {_nonce} (tampered or corrupted data, or a wrong key)", e);
        }
        _nonce++;
    }

    private void UseNonce(Span<byte> nonce)
    {
        if (_nonce > MaxNonce)
            throw new ProtocolViolationException("noise", "nonce space exhausted after 2^64-1 messages; the connection must be closed");
        nonce[..4].Clear();
        BinaryPrimitives.WriteUInt64LittleEndian(nonce[4..], _nonce);
    }

    public void Dispose()
    {
        _aead?.Dispose();
        _aead = null;
    }
}
