namespace Weft.Cli;

public static class WeftCli
{
    public static int Run(string[] args)
    {
        Console.Error.WriteLine("usage: weft <command> (not yet wired)");
        return 2;
    }
}
