/** `nats-backup`: the command line. `serve` runs the service against NATS_URL. */
import { parseArgs } from "node:util";
import { pino } from "pino";
import { packageVersion } from "../version.ts";
import { Defaults, startBackupService, type BackupService } from "../service/service.ts";
import { DefaultTuning } from "../jobs/context.ts";
import { durationMs } from "../protocol/duration.ts";
import { connectNats, connectionOptions } from "./connect.ts";
import { serveTenants, TenantsSubject, type ServedTenants } from "../tenants/serve-tenants.ts";

/** With --tenants, the jobs of every tenant running at once unless --max-jobs-total says otherwise. */
const DefaultMaxJobsTotal = 64;

const usage = `nats-backup ${packageVersion}: JetStream backup and restore as a NATS micro service

Usage: nats-backup serve [options]

Connection (as the nats CLI reads them; a nats context's fields come after flags and variables):
  -s, --server URL       NATS server(s), comma separated   [NATS_URL, default nats://127.0.0.1:4222]
      --creds FILE       user credentials file              [NATS_CREDS]
      --nkey FILE        user nkey seed file                [NATS_NKEY]
      --user USER        user name                          [NATS_USER]
      --password PASS    password                           [NATS_PASSWORD]
      --token TOKEN      token                              [NATS_TOKEN]
      --tlscert FILE     TLS client certificate             [NATS_CERT]
      --tlskey FILE      TLS client certificate's key       [NATS_KEY]
      --tlsca FILE       CA to check the server with        [NATS_CA]
      --tlsfirst         TLS handshake before the server's greeting (nats-server 2.10+)
      --context NAME     nats context to read settings from [NATS_CONTEXT]
Service:
      --bucket NAME      object store bucket for backups    [default ${Defaults.bucket}]
      --replicas N       replicas of the buckets it creates [default ${Defaults.replicas}]
      --max-jobs N       jobs this instance runs at once; more get 429 [default ${Defaults.maxJobs}]
      --account-parallel N  streams one account backup or restore works on at once [default ${DefaultTuning.accountParallel}]
      --shutdown-grace S seconds running jobs get to finish on SIGINT/SIGTERM [default ${Defaults.shutdownGraceMs / 1000}]
      --keep-last N      retention default: keep each stream's N newest backups [default: all]
      --max-age AGE      retention default: remove backups older than AGE, never a stream's newest;
                         as the nats CLI writes durations (30d, 12h, 1h30m, 1w, 1M, 1y) or seconds [default: none]
                         (a backup request's keep_last and max_age win for its stream)
      --log-level LEVEL  pino level                         [LOG_LEVEL, default info]
Tenants (one process serving many accounts, each with its own credentials and bucket):
      --tenants FILE     the accounts to serve (JSON or YAML; see protocol/README.md); read again
                         on SIGHUP and when it changes. The connection settings above then make
                         the admin connection, which answers ${TenantsSubject}; --bucket, --replicas,
                         --max-jobs (per tenant), --keep-last and --max-age are the tenants' defaults
      --max-jobs-total N jobs of all tenants running at once, shared fairly [default ${DefaultMaxJobsTotal}]
`;

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      server: { type: "string", short: "s" },
      creds: { type: "string" },
      nkey: { type: "string" },
      user: { type: "string" },
      password: { type: "string" },
      token: { type: "string" },
      tlscert: { type: "string" },
      tlskey: { type: "string" },
      tlsca: { type: "string" },
      tlsfirst: { type: "boolean" },
      // nsc's spelling, which the nats CLI also takes.
      "tls-first": { type: "boolean" },
      context: { type: "string" },
      bucket: { type: "string" },
      replicas: { type: "string" },
      "shutdown-grace": { type: "string" },
      "max-jobs": { type: "string" },
      "max-jobs-total": { type: "string" },
      tenants: { type: "string" },
      "account-parallel": { type: "string" },
      "keep-last": { type: "string" },
      "max-age": { type: "string" },
      "log-level": { type: "string" },
      help: { type: "boolean", short: "h" },
      version: { type: "boolean" },
    },
  });
  if (values.version) {
    console.log(packageVersion);
    return 0;
  }
  const [command] = positionals;
  if (values.help || command !== "serve") {
    (command && !values.help ? console.error : console.log)(usage);
    return command && !values.help ? 2 : 0;
  }
  const log = pino({ name: "nats-backup", level: values["log-level"] ?? process.env.LOG_LEVEL ?? "info" });
  const replicas = values.replicas !== undefined ? positiveInt("--replicas", values.replicas) : undefined;
  const grace = values["shutdown-grace"] !== undefined ? positiveInt("--shutdown-grace", values["shutdown-grace"]) : undefined;

  const maxJobs = values["max-jobs"] !== undefined ? positiveInt("--max-jobs", values["max-jobs"]) : undefined;
  const accountParallel = values["account-parallel"] !== undefined ? positiveInt("--account-parallel", values["account-parallel"]) : undefined;
  const keepLast = values["keep-last"] !== undefined ? positiveInt("--keep-last", values["keep-last"]) : undefined;
  const maxAge = values["max-age"] !== undefined ? durationFlag("--max-age", values["max-age"]) : undefined;

  // Nothing ends this process unseen: an error no handler caught is logged and, where it names a
  // job, fails that job; an exception thrown out of a callback stops the service as a signal would.
  let svc: BackupService | undefined;
  let tenants: ServedTenants | undefined;
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

  const connection = connectionOptions({ ...values, tlsfirst: values.tlsfirst || values["tls-first"] });
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
  const nc = await connectNats(connection);
  log.info({ server: nc.getServer() }, "connected");
  void (async () => {
    for await (const s of nc.status()) if (s.type !== "ping") log.info({ status: s.type }, "connection status");
  })();
  if (values.tenants) {
    const maxJobsTotal = values["max-jobs-total"] !== undefined ? positiveInt("--max-jobs-total", values["max-jobs-total"]) : DefaultMaxJobsTotal;
    tenants = await serveTenants({
      file: values.tenants,
      servers: (connection.servers as string[]).join(","),
      log,
      maxJobsTotal: Math.max(1, maxJobsTotal),
      defaults,
      admin: nc,
    });
  } else {
    svc = await startBackupService(nc, {
      logger: log,
      // Its jobs' data connections connect as this one did.
      connectionOptions: connection,
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
  await nc.drain();
  return 0;
}

function positiveInt(flag: string, text: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0) throw new Error(`${flag} takes a whole number, not ${JSON.stringify(text)}`);
  return n;
}

/** A duration as the nats CLI writes it (30d, 12h, 1h30m), or a whole number of seconds. */
function durationFlag(flag: string, text: string): string | number {
  const value = /^\d+$/.test(text) ? Number(text) : text;
  try {
    durationMs(value);
  } catch (err) {
    throw new Error(`${flag}: ${(err as Error).message}`);
  }
  return value;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(`nats-backup: ${(err as Error).message}`);
    process.exit(1);
  },
);
