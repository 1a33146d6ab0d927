using System.Buffers;

namespace Weft.Wire.Protobuf;

/// <summary>A protobuf message that writes its own fields; the encodings every message offers live here once.</summary>
public abstract record ProtoMessage
{
    /// <summary>Writes the message's fields.</summary>
    protected abstract void WriteTo(ProtoWriter writer);

    /// <summary>The protobuf (no length prefix).</summary>
    public byte[] ToProtobuf()
    {
        using var w = new ProtoWriter(64);
        WriteTo(w);
        return w.ToArray();
    }

    /// <summary>The uvarint length prefix followed by the protobuf.</summary>
    public byte[] ToLengthPrefixedArray()
    {
        using var w = new ProtoWriter(64);
        WriteTo(w);
        return w.ToLengthPrefixedArray();
    }

    /// <summary>Appends the uvarint length prefix and the protobuf to <paramref name="output"/>.</summary>
    public void WriteLengthPrefixedTo(IBufferWriter<byte> output)
    {
        using var w = new ProtoWriter(64);
        WriteTo(w);
        w.WriteLengthPrefixedTo(output);
    }
}
