using System.Security.Cryptography;

namespace Weft.Wire.Noise;

/// <summary>
/// Noise <c>HandshakeState</c> for <c>Noise_XX_25519_ChaChaPoly_SHA256</c>, the only protocol libp2p uses:
/// <code>
/// -> e
/// &lt;- e, ee, s, es
/// -> s, se
/// </code>
/// Write and read the three messages in turn, then <see cref="Split"/>. Any failure leaves the state unusable.
/// </summary>
public sealed class HandshakeState : IDisposable
{
    public const string ProtocolName = "Noise_XX_25519_ChaChaPoly_SHA256";

    /// <summary>The number of messages in the XX pattern.</summary>
    public const int MessageCount = 3;

    /// <summary>Largest Noise message (the 2-byte length frame bounds it).</summary>
    public const int MaxMessageLength = NoiseFrame.MaxMessageLength;

    private const int DhLength = X25519Key.Length;
    private const int EncryptedKeyLength = DhLength + CipherState.TagLength;

    private readonly SymmetricState _ss;
    private readonly X25519Key _s;
    private readonly X25519Key _e;
    private readonly byte[] _re = new byte[DhLength];
    private readonly byte[] _rs = new byte[DhLength];
    private int _index;
    private bool _failed;
    private bool _disposed;

    /// <param name="initiator">True for the dialer.</param>
    /// <param name="staticKey">Our static Noise key; the state does not dispose it.</param>
    /// <param name="prologue">Bytes both sides mix in first (libp2p uses none).</param>
    /// <param name="ephemeralKey">A fixed ephemeral key for test vectors; a fresh one otherwise. Owned by the state.</param>
    public HandshakeState(bool initiator, X25519Key staticKey, ReadOnlySpan<byte> prologue = default, X25519Key? ephemeralKey = null)
    {
        IsInitiator = initiator;
        _s = staticKey;
        _e = ephemeralKey ?? X25519Key.Generate();
        _ss = new SymmetricState(ProtocolName);
        _ss.MixHash(prologue);
    }

    public bool IsInitiator { get; }

    /// <summary>Index (0..3) of the next message to write or read; 3 means the handshake is complete.</summary>
    public int MessageIndex => _index;

    public bool IsCompleted => _index == MessageCount;

    /// <summary>True when the next message is ours to write.</summary>
    public bool IsMyTurn => !IsCompleted && (_index % 2 == 0) == IsInitiator;

    /// <summary>The peer's static key, valid once it has been received (message 2 for the initiator, 3 for the responder).</summary>
    public ReadOnlySpan<byte> RemoteStaticKey => _rs;

    /// <summary>Our static public key.</summary>
    public ReadOnlySpan<byte> LocalStaticKey => _s.PublicKey;

    /// <summary>The handshake hash so far (final after message 3).</summary>
    public ReadOnlySpan<byte> HandshakeHash => _ss.HandshakeHash;

    /// <summary>Bytes a message with message index <paramref name="index"/> adds to its payload.</summary>
    public static int MessageOverhead(int index) => index switch
    {
        0 => DhLength,
        1 => DhLength + EncryptedKeyLength + CipherState.TagLength,
        2 => EncryptedKeyLength + CipherState.TagLength,
        _ => throw new ArgumentOutOfRangeException(nameof(index)),
    };

    /// <summary>Largest payload that fits into message <paramref name="index"/>.</summary>
    public static int MaxPayloadLength(int index) => MaxMessageLength - MessageOverhead(index);

    /// <summary>Writes the next message carrying <paramref name="payload"/>. Returns the message length.</summary>
    public int WriteMessage(ReadOnlySpan<byte> payload, Span<byte> message)
    {
        EnsureUsable();
        if (!IsMyTurn) throw new InvalidOperationException($"message {_index} is the peer's to send");
        if (payload.Length > MaxPayloadLength(_index)) throw new ArgumentException($"payload of {payload.Length} bytes does not fit into a Noise message", nameof(payload));
        if (message.Length < payload.Length + MessageOverhead(_index)) throw new ArgumentException("message buffer too small", nameof(message));
        try
        {
            int n = 0;
            switch (_index)
            {
                case 0: // -> e
                    n += WriteEphemeral(message);
                    break;
                case 1: // <- e, ee, s, es
                    n += WriteEphemeral(message);
                    MixDh(_e, _re);
                    n += _ss.EncryptAndHash(_s.PublicKey, message[n..]);
                    MixDh(_s, _re);
                    break;
                case 2: // -> s, se
                    n += _ss.EncryptAndHash(_s.PublicKey, message);
                    MixDh(_s, _re);
                    break;
            }
            n += _ss.EncryptAndHash(payload, message[n..]);
            _index++;
            return n;
        }
        catch
        {
            _failed = true;
            throw;
        }
    }

    /// <summary>
    /// Reads the next message, writing its payload into <paramref name="payload"/> (at most the message length).
    /// Returns the payload length. Malformed or unauthentic messages throw <see cref="ProtocolViolationException"/>.
    /// </summary>
    public int ReadMessage(ReadOnlySpan<byte> message, Span<byte> payload)
    {
        EnsureUsable();
        if (IsMyTurn) throw new InvalidOperationException($"message {_index} is ours to send");
        if (message.Length < MessageOverhead(_index))
            throw new ProtocolViolationException("noise", $"handshake message {_index + 1} has {message.Length} bytes, at least {MessageOverhead(_index)} expected");
        if (message.Length > MaxMessageLength)
            throw new ProtocolViolationException("noise", $"handshake message {_index + 1} exceeds {MaxMessageLength} bytes");
        try
        {
            int n = 0;
            switch (_index)
            {
                case 0: // -> e
                    n += ReadEphemeral(message);
                    break;
                case 1: // <- e, ee, s, es
                    n += ReadEphemeral(message);
                    MixDh(_e, _re);
                    n += ReadStatic(message.Slice(n, EncryptedKeyLength));
                    MixDh(_e, _rs);
                    break;
                case 2: // -> s, se
                    n += ReadStatic(message[..EncryptedKeyLength]);
                    MixDh(_e, _rs);
                    break;
            }
            var len = _ss.DecryptAndHash(message[n..], payload);
            _index++;
            return len;
        }
        catch
        {
            _failed = true;
            throw;
        }
    }

    /// <summary>
    /// After message 3: the cipher states for sending and receiving (the caller owns and disposes them).
    /// </summary>
    public (CipherState Send, CipherState Receive) Split()
    {
        EnsureUsable();
        if (!IsCompleted) throw new InvalidOperationException("handshake is not complete");
        var (c1, c2) = _ss.Split();
        return IsInitiator ? (c1, c2) : (c2, c1);
    }

    private int WriteEphemeral(Span<byte> message)
    {
        _e.PublicKey.CopyTo(message);
        _ss.MixHash(_e.PublicKey);
        return DhLength;
    }

    private int ReadEphemeral(ReadOnlySpan<byte> message)
    {
        message[..DhLength].CopyTo(_re);
        _ss.MixHash(_re);
        return DhLength;
    }

    private int ReadStatic(ReadOnlySpan<byte> encryptedKey)
    {
        try
        {
            _ss.DecryptAndHash(encryptedKey, _rs);
        }
        catch (ProtocolViolationException e)
        {
            throw new ProtocolViolationException("noise", "could not decrypt the peer's static key (tampered handshake)", e);
        }
        return EncryptedKeyLength;
    }

    private void MixDh(X25519Key local, ReadOnlySpan<byte> remote)
    {
        Span<byte> shared = stackalloc byte[DhLength];
        local.Agree(remote, shared);
        _ss.MixKey(shared);
        CryptographicOperations.ZeroMemory(shared);
    }

    private void EnsureUsable()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_failed) throw new InvalidOperationException("handshake state is unusable after a failure");
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _ss.Dispose();
        _e.Dispose();
    }
}
