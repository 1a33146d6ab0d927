using Weft.Mesh.Identity;
using Weft.Wire.Identity;

namespace Weft.Cli.Commands;

public static class KeyCommands
{
    /// <summary>Where `weft key generate` writes without --out.</summary>
    public static string DefaultKeyPath =>
        Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".weft", "identity.key");

    public static int Generate(string[] argv)
    {
        const string usage = "weft key generate [--out PATH] [--force]";
        var a = Args.Parse(argv, usage, ["--out"], ["--force"]);
        if (a.Positionals.Count > 0) throw new UsageException($"unexpected argument '{a.Positionals[0]}'\nusage: {usage}");
        var path = a.Get("--out") ?? DefaultKeyPath;
        if (File.Exists(path))
        {
            if (!a.Has("--force")) throw new UsageException($"{path} already exists; pass --force to replace it (the old identity is lost)");
            File.Delete(path);
        }
        var key = Ed25519PrivateKey.Generate();
        KeyFiles.Save(path, key);
        Console.WriteLine(key.PeerId.ToString());
        return WeftCli.ExitOk;
    }

    public static int Show(string[] argv)
    {
        const string usage = "weft key show PATH";
        var a = Args.Parse(argv, usage, []);
        if (a.Positionals.Count != 1) throw new UsageException($"expected one key file path\nusage: {usage}");
        Console.WriteLine(KeyFiles.Load(a.Positionals[0]).PeerId.ToString());
        return WeftCli.ExitOk;
    }

    public static int LegacyId(string[] argv)
    {
        const string usage = "weft key legacy-id NODE_NAME";
        var a = Args.Parse(argv, usage, []);
        if (a.Positionals.Count != 1 || a.Positionals[0].Length == 0) throw new UsageException($"expected one non-empty node name\nusage: {usage}");
        Console.WriteLine(LegacyIdentity.DerivePeerId(a.Positionals[0]).ToString());
        return WeftCli.ExitOk;
    }
}
