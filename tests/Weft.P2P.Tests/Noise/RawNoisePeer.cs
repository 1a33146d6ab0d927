using System.Buffers;
using System.IO.Pipelines;
using System.Security.Cryptography;
using Org.BouncyCastle.Asn1;
using Org.BouncyCastle.Asn1.Sec;
using Org.BouncyCastle.Crypto.Digests;
using Org.BouncyCastle.Crypto.Parameters;
using Org.BouncyCastle.Crypto.Signers;
using Org.BouncyCastle.Math;
using Weft.Wire.Identity;
using Weft.Wire.Noise;

namespace Weft.P2P.Tests.Noise;

/// <summary>
/// A hand-driven Noise peer built only from the pure codecs, so tests can send exactly the bytes they want
/// (tampered, truncated, split, garbage) to a <c>NoiseSecurity</c> peer.
/// </summary>
internal sealed class RawNoisePeer : IDisposable
{
    private readonly IDuplexPipe _pipe;
    private readonly X25519Key _static = X25519Key.Generate();
    private readonly HandshakeState _hs;

    public RawNoisePeer(IDuplexPipe pipe, bool initiator)
    {
        _pipe = pipe;
        _hs = new HandshakeState(initiator, _static);
    }

    public CipherState? Send { get; private set; }
    public CipherState? Receive { get; private set; }
    public NoiseHandshakePayload? RemotePayload { get; private set; }

    /// <summary>Builds a payload signed by an identity (Ed25519 key, or a custom signer for other key types).</summary>
    public byte[] Payload(byte[] identityKeyProtobuf, Func<byte[], byte[]> sign, params string[] muxers) => new NoiseHandshakePayload
    {
        IdentityKey = identityKeyProtobuf,
        IdentitySignature = sign(NoiseHandshakePayload.StaticKeySignedData(_static.PublicKey)),
        Extensions = muxers.Length == 0 ? null : new NoiseExtensions { StreamMuxers = muxers },
    }.ToProtobuf();

    public byte[] Payload(Ed25519PrivateKey key, params string[] muxers) => Payload(key.PublicKey.ToProtobuf(), d => key.Sign(d), muxers);

    /// <summary>The next handshake message, framed, without sending it.</summary>
    public byte[] BuildMessage(byte[] payload)
    {
        var message = new byte[payload.Length + HandshakeState.MessageOverhead(_hs.MessageIndex)];
        var n = _hs.WriteMessage(payload, message);
        var framed = new byte[2 + n];
        NoiseFrame.Write(framed, message.AsSpan(0, n));
        if (_hs.IsCompleted) SplitKeys();
        return framed;
    }

    public async Task WriteMessageAsync(byte[] payload) => await WriteRawAsync(BuildMessage(payload));

    public async Task WriteRawAsync(byte[] bytes)
    {
        await _pipe.Output.WriteAsync(bytes);
    }

    public async Task<byte[]> ReadMessageAsync()
    {
        var message = await ReadFrameAsync();
        var payload = new byte[message.Length];
        var n = _hs.ReadMessage(message, payload);
        if (_hs.MessageIndex >= 2 && n > 0) RemotePayload = NoiseHandshakePayload.FromProtobuf(payload.AsSpan(0, n));
        if (_hs.IsCompleted) SplitKeys();
        return payload[..n];
    }

    public async Task<byte[]> ReadFrameAsync()
    {
        while (true)
        {
            var result = await _pipe.Input.ReadAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10));
            var buffer = result.Buffer;
            if (NoiseFrame.TryRead(ref buffer, out var frame))
            {
                var bytes = frame.ToArray();
                _pipe.Input.AdvanceTo(buffer.Start);
                return bytes;
            }
            _pipe.Input.AdvanceTo(buffer.Start, buffer.End);
            if (result.IsCompleted) throw new EndOfStreamException("raw peer: connection closed");
        }
    }

    /// <summary>Encrypts one transport message and returns it framed.</summary>
    public byte[] Seal(ReadOnlySpan<byte> plaintext)
    {
        var framed = new byte[2 + plaintext.Length + 16];
        NoiseFrame.WriteHeader(framed, plaintext.Length + 16);
        Send!.EncryptWithAd(default, plaintext, framed.AsSpan(2));
        return framed;
    }

    public byte[] Open(byte[] message)
    {
        var plain = new byte[message.Length - 16];
        Receive!.DecryptWithAd(default, message, plain);
        return plain;
    }

    private void SplitKeys() => (Send, Receive) = _hs.Split();

    public void Dispose()
    {
        _hs.Dispose();
        _static.Dispose();
        Send?.Dispose();
        Receive?.Dispose();
    }

    // ---- identities of other key types ----

    /// <summary>An RSA-2048 identity: (PublicKey protobuf, signer).</summary>
    public static (byte[] Protobuf, Func<byte[], byte[]> Sign) RsaIdentity()
    {
        var rsa = RSA.Create(2048);
        var spki = rsa.ExportSubjectPublicKeyInfo();
        return (KeyProtobuf(KeyType.Rsa, spki), d => rsa.SignData(d, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1));
    }

    /// <summary>A secp256k1 identity: (PublicKey protobuf, DER ECDSA signer over SHA-256).</summary>
    public static (byte[] Protobuf, Func<byte[], byte[]> Sign) Secp256k1Identity()
    {
        var curve = SecNamedCurves.GetByName("secp256k1");
        var domain = new ECDomainParameters(curve.Curve, curve.G, curve.N, curve.H);
        var d = new BigInteger(1, RandomNumberGenerator.GetBytes(32)).Mod(curve.N.Subtract(BigInteger.One)).Add(BigInteger.One);
        var priv = new ECPrivateKeyParameters(d, domain);
        var pub = curve.G.Multiply(d).Normalize().GetEncoded(true);
        return (KeyProtobuf(KeyType.Secp256k1, pub), data =>
        {
            var signer = new ECDsaSigner(new HMacDsaKCalculator(new Sha256Digest()));
            signer.Init(true, priv);
            var rs = signer.GenerateSignature(SHA256.HashData(data));
            var s = rs[1];
            var halfN = curve.N.ShiftRight(1);
            if (s.CompareTo(halfN) > 0) s = curve.N.Subtract(s); // low-s, as btcec produces
            return new DerSequence(new DerInteger(rs[0]), new DerInteger(s)).GetDerEncoded();
        });
    }

    private static byte[] KeyProtobuf(KeyType type, byte[] data)
    {
        using var w = new Weft.Wire.Protobuf.ProtoWriter();
        w.WriteVarint(1, (ulong)type);
        w.WriteBytes(2, data);
        return w.ToArray();
    }
}
