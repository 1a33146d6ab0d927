using Weft.Wire;
using Weft.Wire.Identity;

namespace Weft.Mesh.Identity;

/// <summary>Identity key files: the libp2p PrivateKey protobuf, written with mode 0600.</summary>
public static class KeyFiles
{
    /// <summary>Largest key file we read.</summary>
    public const int MaxKeyFileBytes = 16 * 1024;

    public static Ed25519PrivateKey Load(string path)
    {
        var info = new FileInfo(path);
        if (!info.Exists) throw new FileNotFoundException($"key file {path} does not exist (create one with: weft key generate --out {path})", path);
        if (info.Length > MaxKeyFileBytes) throw new InvalidDataException($"key file {path} is {info.Length} bytes; a key file is under {MaxKeyFileBytes}");
        if (!OperatingSystem.IsWindows() && (File.GetUnixFileMode(path) & (UnixFileMode.GroupRead | UnixFileMode.OtherRead | UnixFileMode.GroupWrite | UnixFileMode.OtherWrite)) != 0)
            throw new InvalidDataException($"key file {path} is readable by group or others; fix with: chmod 600 {path}");
        try
        {
            return Ed25519PrivateKey.FromProtobuf(File.ReadAllBytes(path));
        }
        catch (ProtocolViolationException ex)
        {
            throw new InvalidDataException($"key file {path} is not a libp2p Ed25519 private key: {ex.Detail}", ex);
        }
    }

    /// <summary>Writes a key file with mode 0600, creating its directory (0700) if needed; never overwrites.</summary>
    public static void Save(string path, Ed25519PrivateKey key)
    {
        var dir = Path.GetDirectoryName(Path.GetFullPath(path))!;
        if (!Directory.Exists(dir))
        {
            if (OperatingSystem.IsWindows()) Directory.CreateDirectory(dir);
            else Directory.CreateDirectory(dir, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        }
        var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows()) options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        using var fs = new FileStream(path, options);
        fs.Write(key.ToProtobuf());
        fs.Flush(true);
    }

    /// <summary>Loads the key at <paramref name="path"/>, or creates and persists a new random one there.</summary>
    public static (Ed25519PrivateKey Key, bool Created) LoadOrCreate(string path)
    {
        if (File.Exists(path)) return (Load(path), false);
        var key = Ed25519PrivateKey.Generate();
        Save(path, key);
        return (key, true);
    }
}
