namespace Weft.Wire.Protobuf;

/// <summary>Protobuf wire types (the low 3 bits of a field tag).</summary>
public enum WireType
{
    Varint = 0,
    Fixed64 = 1,
    LengthDelimited = 2,
    StartGroup = 3,
    EndGroup = 4,
    Fixed32 = 5,
}
