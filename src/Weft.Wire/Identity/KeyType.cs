namespace Weft.Wire.Identity;

/// <summary>Key types of libp2p's crypto.proto.</summary>
public enum KeyType
{
    Rsa = 0,
    Ed25519 = 1,
    Secp256k1 = 2,
    Ecdsa = 3,
}
