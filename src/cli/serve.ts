/** `nats-backup serve`: runs the service (or, with --tenants, one per account of a tenants file) until SIGINT or SIGTERM. */
import { Command, InvalidArgumentError } from "commander";
import { pino } from "pino";
import type { NatsConnection } from "@nats-io/nats-core";
import { Defaults, startBackupService, type BackupService } from "../service/service.ts";
import { DefaultTuning } from "../jobs/context.ts";
import { durationMs } from "../protocol/duration.ts";
import { connectNats, connectionOptions, readContext } from "../connection/connect.ts";
import type { NodeConnectionOptions } from "@nats-io/transport-node";
import { connectionFlags, type GlobalFlags } from "./client-connection.ts";
import { serveTenants, TenantsSubject, type ServedTenants } from "../tenants/serve-tenants.ts";

/** With --tenants, the jobs of every tenant running at once unless --max-jobs-total says otherwise. */
const DefaultMaxJobsTotal = 64;

interface ServeFlags extends GlobalFlags {
  systemCreds?: string;
  systemContext?: string;
  replicas?: number;
  shutdownGrace?: number;
  maxJobs?: number;
  maxJobsTotal?: number;
  tenants?: string;
  accountParallel?: number;
  keepLast?: number;
  maxAge?: string | number;
  logLevel?: string;
}

export function addServeCommand(program: Command): void {
  program
    .command("serve")
    .description("run the backup service against NATS_URL (or --server) until SIGINT or SIGTERM")
    .option("--replicas <n>", `replicas of the buckets it creates [default ${Defaults.replicas}]`, wholeNumber("--replicas"))
    .option("--max-jobs <n>", `jobs this instance runs at once; more get 429 [default ${Defaults.maxJobs}]`, wholeNumber("--max-jobs"))
    .option(
      "--account-parallel <n>",
      `streams one account backup or restore works on at once [default ${DefaultTuning.accountParallel}]`,
      wholeNumber("--account-parallel"),
    )
    .option(
      "--shutdown-grace <seconds>",
      `seconds running jobs get to finish on SIGINT/SIGTERM [default ${Defaults.shutdownGraceMs / 1000}]`,
      wholeNumber("--shutdown-grace"),
    )
    .option("--keep-last <n>", "retention default: keep each stream's N newest backups [default: all]", wholeNumber("--keep-last"))
    .option(
      "--max-age <age>",
      "retention default: remove backups older than AGE, never a stream's newest; as the nats CLI writes durations " +
        "(30d, 12h, 1h30m, 1w, 1M, 1y) or seconds [default: none] (a backup request's keep_last and max_age win for its stream)",
      durationFlag("--max-age"),
    )
    .option("--log-level <level>", "pino level [LOG_LEVEL, default info]")
    .option(
      "--tenants <file>",
      "the accounts to serve (JSON or YAML; see protocol/README.md); read again on SIGHUP and when it changes. " +
        `The connection settings then make the admin connection, which answers ${TenantsSubject}; --bucket, --replicas, ` +
        "--max-jobs (per tenant), --keep-last and --max-age are the tenants' defaults",
    )
    .option(
      "--max-jobs-total <n>",
      `with --tenants: jobs of all tenants running at once, shared fairly [default ${DefaultMaxJobsTotal}]`,
      wholeNumber("--max-jobs-total"),
    )
    .option(
      "--system-creds <file>",
      "credentials of a system-account user, for $RESTORE.server-remove (a dead server removed from the JetStream meta group); " +
        "the same servers and TLS settings as the service's connection",
    )
    .option("--system-context <name>", "a nats context of a system-account user, instead of --system-creds (its url, else the service's servers)")
    .action(async (_opts: unknown, cmd: Command) => serve(cmd.optsWithGlobals<ServeFlags>(), connectionFlags(cmd)));
}

async function serve(values: ServeFlags, flags: ReturnType<typeof connectionFlags>): Promise<void> {
  const log = pino({ name: "nats-backup", level: values.logLevel ?? process.env.LOG_LEVEL ?? "info" });

  // Nothing ends this process unseen: an error no handler caught is logged and, where it names a
  // job, fails that job; an exception thrown out of a callback stops the service as a signal would.
  let svc: BackupService | undefined;
  let tenants: ServedTenants | undefined;
  let system: NatsConnection | undefined;
  const serviceOf = (reason: unknown) => {
    const job = (reason as { job?: string }).job;
    return svc ?? (job ? tenants?.host.status().map((t) => tenants!.host.service(t.name)).find((s) => s?.runner.running(job)) : undefined);
  };
  process.on("unhandledRejection", (reason) => {
    const owner = serviceOf(reason);
    if (owner) owner.failStray(reason);
    else log.error({ err: reason }, "an error escaped its handler");
  });
  process.on("uncaughtException", (err) => {
    log.fatal({ err }, "an exception escaped its handler; stopping");
    void (svc?.stop() ?? tenants?.stop() ?? Promise.resolve()).finally(() => process.exit(70));
  });

  const connection = connectionOptions(flags);
  const { replicas, maxJobs, accountParallel, shutdownGrace: grace, keepLast, maxAge } = values;
  const defaults = {
    ...(values.bucket ? { bucket: values.bucket } : {}),
    ...(replicas ? { replicas } : {}),
    ...(maxJobs ? { maxJobs } : {}),
    ...(accountParallel ? { accountParallel } : {}),
    ...(grace !== undefined ? { shutdownGraceMs: grace * 1000 } : {}),
    ...(keepLast !== undefined || maxAge !== undefined
      ? { retention: { ...(keepLast !== undefined ? { keep_last: keepLast } : {}), ...(maxAge !== undefined ? { max_age: maxAge } : {}) } }
      : {}),
  };
  if (values.tenants && (values.systemCreds || values.systemContext)) throw new InvalidArgumentError("--system-creds and --system-context are for one account's service, not for --tenants");
  if (values.systemCreds && values.systemContext) throw new InvalidArgumentError("--system-creds or --system-context, not both");
  const nc = await connectNats(connection);
  log.info({ server: nc.getServer() }, "connected");
  void (async () => {
    for await (const s of nc.status()) if (s.type !== "ping") log.info({ status: s.type }, "connection status");
  })();
  if (values.tenants) {
    tenants = await serveTenants({
      file: values.tenants,
      servers: (connection.servers as string[]).join(","),
      log,
      maxJobsTotal: Math.max(1, values.maxJobsTotal ?? DefaultMaxJobsTotal),
      defaults,
      admin: nc,
    });
  } else {
    const systemOptions = systemConnectionOptions(values, flags, connection);
    system = systemOptions ? await connectNats(systemOptions) : undefined;
    if (system) log.info({ server: system.getServer() }, "connected as a system-account user (for $RESTORE.server-remove)");
    svc = await startBackupService(nc, {
      logger: log,
      // Its jobs' data connections connect as this one did.
      connectionOptions: connection,
      ...(system ? { systemConnection: system } : {}),
      ...defaults,
    });
  }

  await new Promise<void>((resolve) => {
    const onSignal = (signal: string) => {
      log.info({ signal }, "stopping: no new requests, running jobs finish or fail");
      resolve();
    };
    process.once("SIGINT", onSignal);
    process.once("SIGTERM", onSignal);
  });
  await (svc ?? tenants)?.stop();
  await system?.drain();
  await nc.drain();
}

/**
 * The system-account user's connection, when asked for: --system-creds with the service's own
 * servers and TLS settings, or --system-context read alone (no NATS_* variable is the system user's).
 */
function systemConnectionOptions(values: ServeFlags, flags: ReturnType<typeof connectionFlags>, service: NodeConnectionOptions): NodeConnectionOptions | null {
  const servers = (service.servers as string[]).join(",");
  // Where contexts are found, and nothing else of the environment.
  const env = { XDG_CONFIG_HOME: process.env.XDG_CONFIG_HOME };
  if (values.systemCreds) {
    return connectionOptions({ server: servers, creds: values.systemCreds, tlscert: flags.tlscert, tlskey: flags.tlskey, tlsca: flags.tlsca, tlsfirst: flags.tlsfirst }, env);
  }
  if (values.systemContext) {
    const options = connectionOptions({ context: values.systemContext }, env);
    return readContext(values.systemContext, env).url ? options : { ...options, servers: service.servers };
  }
  return null;
}

/** A parser for a flag that takes a whole number (0 allowed). */
export function wholeNumber(flag: string): (text: string) => number {
  return (text) => {
    const n = Number(text);
    if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`${flag} takes a whole number, not ${JSON.stringify(text)}`);
    return n;
  };
}

/** A duration as the nats CLI writes it (30d, 12h, 1h30m), or a whole number of seconds. */
export function durationFlag(flag: string): (text: string) => string | number {
  return (text) => {
    const value = /^\d+$/.test(text) ? Number(text) : text;
    try {
      durationMs(value);
    } catch (err) {
      throw new InvalidArgumentError(`${flag}: ${(err as Error).message}`);
    }
    return value;
  };
}
