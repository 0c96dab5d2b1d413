/**
 * The connection of a client subcommand, from the root program's connection flags (which every
 * subcommand takes), NATS_* variables and the nats context, read as `serve` reads them.
 */
import type { Command } from "commander";
import type { NatsConnection } from "@nats-io/nats-core";
import { Defaults } from "../service/service.ts";
import { connectNats, connectionOptions, type ConnectionFlags } from "../connection/connect.ts";
import { CliError } from "./ask.ts";

/** The root program's connection options and --bucket, as commander hands them to any subcommand. */
export interface GlobalFlags extends ConnectionFlags {
  "tls-first"?: boolean;
  tlsFirst?: boolean;
  bucket?: string;
}

/** The connection flags of `cmd` merged with its ancestors' (the root program holds them). */
export function connectionFlags(cmd: Command): ConnectionFlags {
  const o = cmd.optsWithGlobals<GlobalFlags>();
  return {
    server: o.server,
    creds: o.creds,
    nkey: o.nkey,
    user: o.user,
    password: o.password,
    token: o.token,
    tlscert: o.tlscert,
    tlskey: o.tlskey,
    tlsca: o.tlsca,
    // --tls-first is nsc's spelling, which the nats CLI also takes.
    tlsfirst: o.tlsfirst === true || o.tlsFirst === true,
    context: o.context,
  };
}

/**
 * Opens a connection for a client subcommand. A client gives up on a server it cannot reach
 * instead of retrying forever as the service does.
 */
export async function connectFor(cmd: Command): Promise<NatsConnection> {
  const options = connectionOptions(connectionFlags(cmd));
  try {
    return await connectNats({ ...options, name: "nats-backup-cli", maxReconnectAttempts: 3 });
  } catch (err) {
    const servers = ([] as string[]).concat(options.servers ?? []).join(", ");
    throw new CliError(`cannot connect to ${servers}: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/** Runs `run` on a connection for the subcommand (`connect`, connectFor unless a test gives one), closed afterwards whatever happens. */
export async function withClientConnection<T>(cmd: Command, run: (nc: NatsConnection) => Promise<T>, connect = connectFor): Promise<T> {
  const nc = await connect(cmd);
  try {
    return await run(nc);
  } finally {
    await nc.close();
  }
}

/** The bucket the subcommand names with --bucket, or the service's default. */
export function bucketOf(cmd: Command): string {
  return cmd.optsWithGlobals<GlobalFlags>().bucket ?? Defaults.bucket;
}
