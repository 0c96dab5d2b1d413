/**
 * `nats-backup`: the command line. `serve` runs the service; the other subcommands are its
 * clients (they ask a running service over NATS), and export, import and verify work on the
 * bucket directly. The connection flags belong to the root program, so every subcommand takes them.
 */
import { Command, CommanderError, Option } from "commander";
import { packageVersion } from "../version.ts";
import { Defaults } from "../service/service.ts";
import { DefaultUrl } from "../connection/connect.ts";
import { addServeCommand } from "./serve.ts";
import { addJobCommands } from "./job-commands.ts";
import { addCatalogueCommands } from "./catalogue-commands.ts";
import { addWatchCommand } from "./watch-command.ts";
import { connectFor, bucketOf } from "./client-connection.ts";
import { addTransferCommands } from "./transfer-commands.ts";
import { addReportCommand } from "./report-command.ts";
import { CliError } from "./ask.ts";

function program(): Command {
  const program = new Command("nats-backup")
    .description(`nats-backup ${packageVersion}: JetStream backup and restore as a NATS micro service`)
    .version(packageVersion, "--version")
    // Usage errors end with 2 (a flag value it cannot read with 1, as before commander); see run().
    .exitOverride()
    .configureHelp({ showGlobalOptions: true, sortSubcommands: false })
    .addHelpText(
      "after",
      "\nConnection settings are read as the nats CLI reads them: flags, then NATS_* variables, then a nats context's fields.",
    )
    .option("-s, --server <url>", `NATS server(s), comma separated [NATS_URL, default ${DefaultUrl}]`)
    .option("--creds <file>", "user credentials file [NATS_CREDS]")
    .option("--nkey <file>", "user nkey seed file [NATS_NKEY]")
    .option("--user <user>", "user name [NATS_USER]")
    .option("--password <password>", "password [NATS_PASSWORD]")
    .option("--token <token>", "token [NATS_TOKEN]")
    .option("--tlscert <file>", "TLS client certificate [NATS_CERT]")
    .option("--tlskey <file>", "TLS client certificate's key [NATS_KEY]")
    .option("--tlsca <file>", "CA to check the server with [NATS_CA]")
    .option("--tlsfirst", "TLS handshake before the server's greeting (nats-server 2.10+)")
    // nsc's spelling, which the nats CLI also takes.
    .addOption(new Option("--tls-first").hideHelp())
    .option("--context <name>", "nats context to read settings from [NATS_CONTEXT]")
    .option("--bucket <name>", `object store bucket for backups [default ${Defaults.bucket}]`);
  addServeCommand(program);
  addJobCommands(program);
  addCatalogueCommands(program);
  addWatchCommand(program);
  addTransferCommands(program, { connectFor, bucketOf });
  addReportCommand(program, { connectFor });
  return program;
}

async function run(argv: string[]): Promise<number> {
  const cli = program();
  try {
    await cli.parseAsync(argv, { from: "user" });
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // commander has already said what was wrong.
      if (err.code === "commander.unknownCommand") cli.outputHelp({ error: true });
      if (err.exitCode === 0) return 0;
      return err.code === "commander.invalidArgument" ? 1 : 2;
    }
    throw err;
  }
}

/** Exits once stdout and stderr have written everything: a pipe takes large writes asynchronously, and exit would cut them. */
async function exit(code: number): Promise<never> {
  await Promise.all([process.stdout, process.stderr].map((out) => new Promise((resolve) => out.write("", resolve))));
  process.exit(code);
}

// The reader of the output went away (`nats-backup ls | head`): stop quietly, as other command
// line tools do, not with an unhandled EPIPE. (serve logs through pino to fd 1, not this stream.)
process.stdout.on("error", (err: NodeJS.ErrnoException) => {
  if (err.code === "EPIPE") process.exit(0);
  throw err;
});

run(process.argv.slice(2)).then(
  (code) => exit(code),
  (err: unknown) => {
    const e = err as Error;
    const code = err instanceof CliError && err.code !== undefined ? ` (code ${err.code})` : "";
    console.error(`nats-backup: ${e.message}${code}`);
    return exit(err instanceof CliError ? err.exitCode : 1);
  },
);
