return await Weft.Cli.WeftCli.RunAsync(args).ConfigureAwait(false);
