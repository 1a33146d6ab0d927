return Weft.Cli.WeftCli.Run(args);
