using System.Security.Cryptography;
using System.Text;

namespace Weft.Wire.Noise;

/// <summary>
/// Noise <c>SymmetricState</c> with SHA256: chaining key, handshake hash and the handshake cipher state.
/// HKDF is the Noise spec's HMAC construction (equal to RFC 5869 with the chaining key as salt and empty info).
/// </summary>
public sealed class SymmetricState : IDisposable
{
    public const int HashLength = 32;

    private readonly byte[] _ck = new byte[HashLength];
    private readonly byte[] _h = new byte[HashLength];
    private readonly IncrementalHash _hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
    private readonly CipherState _cs = new();

    /// <summary>Noise <c>InitializeSymmetric(protocolName)</c>.</summary>
    public SymmetricState(string protocolName)
    {
        var name = Encoding.ASCII.GetBytes(protocolName);
        if (name.Length <= HashLength) name.CopyTo(_h, 0);
        else SHA256.HashData(name, _h);
        _h.CopyTo(_ck, 0);
    }

    /// <summary>The handshake hash <c>h</c> (channel binding value once the handshake is done).</summary>
    public ReadOnlySpan<byte> HandshakeHash => _h;

    /// <summary>The chaining key <c>ck</c>.</summary>
    public ReadOnlySpan<byte> ChainingKey => _ck;

    /// <summary>True once a DH result has been mixed in, so payloads are encrypted.</summary>
    public bool HasKey => _cs.HasKey;

    public void MixKey(ReadOnlySpan<byte> inputKeyMaterial)
    {
        Span<byte> output = stackalloc byte[2 * HashLength];
        Hkdf2(_ck, inputKeyMaterial, output);
        output[..HashLength].CopyTo(_ck);
        _cs.InitializeKey(output[HashLength..]);
        CryptographicOperations.ZeroMemory(output);
    }

    public void MixHash(ReadOnlySpan<byte> data)
    {
        _hash.AppendData(_h);
        _hash.AppendData(data);
        _hash.GetHashAndReset(_h);
    }

    /// <summary>Encrypts (or copies, before any key) and mixes the result into <c>h</c>. Returns bytes written.</summary>
    public int EncryptAndHash(ReadOnlySpan<byte> plaintext, Span<byte> destination)
    {
        var n = _cs.EncryptWithAd(_h, plaintext, destination);
        MixHash(destination[..n]);
        return n;
    }

    /// <summary>Decrypts (or copies, before any key) and mixes the ciphertext into <c>h</c>. Returns the plaintext length.</summary>
    public int DecryptAndHash(ReadOnlySpan<byte> ciphertext, Span<byte> destination)
    {
        var n = _cs.DecryptWithAd(_h, ciphertext, destination);
        MixHash(ciphertext);
        return n;
    }

    /// <summary>Noise <c>Split()</c>: the initiator-to-responder and responder-to-initiator cipher states.</summary>
    public (CipherState InitiatorToResponder, CipherState ResponderToInitiator) Split()
    {
        Span<byte> output = stackalloc byte[2 * HashLength];
        Hkdf2(_ck, ReadOnlySpan<byte>.Empty, output);
        var c1 = new CipherState();
        var c2 = new CipherState();
        c1.InitializeKey(output[..HashLength]);
        c2.InitializeKey(output[HashLength..]);
        CryptographicOperations.ZeroMemory(output);
        return (c1, c2);
    }

    /// <summary>
    /// Noise <c>HKDF(chaining_key, input_key_material, 2)</c>: RFC 5869 extract with the chaining key as salt,
    /// then two expand blocks with empty info. Written out with HMAC because the platform HKDF rejects an
    /// empty input key (which <see cref="Split"/> uses).
    /// </summary>
    public static void Hkdf2(ReadOnlySpan<byte> chainingKey, ReadOnlySpan<byte> inputKeyMaterial, Span<byte> output)
    {
        Span<byte> tempKey = stackalloc byte[HashLength];
        Span<byte> block = stackalloc byte[HashLength + 1];
        HMACSHA256.HashData(chainingKey, inputKeyMaterial, tempKey);
        block[0] = 0x01;
        HMACSHA256.HashData(tempKey, block[..1], output[..HashLength]);
        output[..HashLength].CopyTo(block);
        block[HashLength] = 0x02;
        HMACSHA256.HashData(tempKey, block, output.Slice(HashLength, HashLength));
        CryptographicOperations.ZeroMemory(tempKey);
        CryptographicOperations.ZeroMemory(block);
    }

    public void Dispose()
    {
        _cs.Dispose();
        _hash.Dispose();
        CryptographicOperations.ZeroMemory(_ck);
    }
}
