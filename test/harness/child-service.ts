/**
 * The backup service in a process of its own, for tests that kill it (kill -9) or run several
 * instances. Started by test/harness/proc-service.ts as
 *
 *   node --import tsx test/harness/child-service.ts --server URL[,URL…] [--options JSON]
 *
 * The server URLs can also come from NATS_URL, the options from CHILD_SERVICE_OPTIONS (the
 * argument wins). Options are BackupServiceOptions without the logger (bucket, maxJobs,
 * lockTtlMs, sweep, tuning, shutdownGraceMs, …) plus `reconnectTimeWaitMs` for the connection.
 * Logs pino JSON to stderr at TEST_LOG_LEVEL (default silent). Prints one line
 * `READY <instance id>` on stdout once the service is started; on SIGTERM or SIGINT it stops the
 * service, drains the connection and exits 0.
 */
import { parseArgs } from "node:util";
import { pino } from "pino";
import { connect } from "@nats-io/transport-node";
import { startBackupService, type BackupServiceOptions } from "../../src/mod.ts";

export interface ChildServiceOptions extends Omit<BackupServiceOptions, "logger"> {
  /** Pause between reconnect attempts (the connection retries forever). Default 250 ms. */
  reconnectTimeWaitMs?: number;
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: { server: { type: "string" }, options: { type: "string" } },
  });
  const servers = (values.server ?? process.env.NATS_URL ?? "").split(",").map((s) => s.trim()).filter(Boolean);
  if (servers.length === 0) throw new Error("no server: pass --server URL or set NATS_URL");
  const optionsText = values.options ?? process.env.CHILD_SERVICE_OPTIONS ?? "{}";
  const { reconnectTimeWaitMs, ...opts } = JSON.parse(optionsText) as ChildServiceOptions;

  const log = pino({ level: process.env.TEST_LOG_LEVEL ?? "silent", base: { pid: process.pid } }, pino.destination({ dest: 2, sync: true }));
  const nc = await connect({
    servers,
    name: "nats-backup-test-child",
    maxReconnectAttempts: -1,
    reconnectTimeWait: reconnectTimeWaitMs ?? 250,
  });
  void (async () => {
    for await (const s of nc.status()) log.info({ status: s.type }, "connection status");
  })();
  const svc = await startBackupService(nc, { ...opts, logger: log });
  // The endpoints' subscriptions reach the server before anyone is told to send requests.
  await nc.flush();
  process.stdout.write(`READY ${svc.id}\n`);

  const signal = await new Promise<string>((resolve) => {
    process.once("SIGTERM", () => resolve("SIGTERM"));
    process.once("SIGINT", () => resolve("SIGINT"));
  });
  log.info({ signal }, "stopping");
  await svc.stop();
  await nc.drain();
  log.flush();
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`child-service: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
