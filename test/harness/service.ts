/** The service under test, on its own connection, and a client that speaks to it like `nats req`. */
import type { NatsConnection } from "@nats-io/nats-core";
import { pino, type Logger } from "pino";
import { NatsServer, type ServerOptions } from "./nats-server.ts";
import { startBackupService, type BackupService, type BackupServiceOptions } from "../../src/mod.ts";

export interface Reply<T = unknown> {
  /** The parsed body. */
  body: T;
  /** Nats-Service-Error-Code, when the reply is an error. */
  errorCode: number | null;
  errorHeader: string | null;
  /** Nats-Backup-Job: the job an error reply is about. */
  job: string | null;
  raw: string;
}

export async function request<T = unknown>(
  nc: NatsConnection,
  subject: string,
  body: unknown = "",
  timeout = 30_000,
): Promise<Reply<T>> {
  const payload = typeof body === "string" ? body : JSON.stringify(body);
  const msg = await nc.request(subject, payload, { timeout });
  const raw = msg.string();
  const code = msg.headers?.get("Nats-Service-Error-Code");
  return {
    body: JSON.parse(raw) as T,
    errorCode: code ? Number(code) : null,
    errorHeader: msg.headers?.get("Nats-Service-Error") || null,
    job: msg.headers?.get("Nats-Backup-Job") || null,
    raw,
  };
}

export function testLogger() {
  return pino({ level: process.env.TEST_LOG_LEVEL ?? "silent" });
}

/** A logger that keeps the message of every line at warn and above, for tests that check what the service warned about. */
export function warningsLogger(): { logger: Logger; warnings: string[] } {
  const warnings: string[] = [];
  const logger = pino({ level: "warn" }, { write: (line: string) => void warnings.push((JSON.parse(line) as { msg: string }).msg) });
  return { logger, warnings };
}

export async function startService(nc: NatsConnection, opts: BackupServiceOptions = {}): Promise<BackupService> {
  return startBackupService(nc, { logger: testLogger(), shutdownGraceMs: 1000, ...opts });
}

/** A nats-server, the service on its own connection, and a client connection; `stop()` ends them all. */
export interface ServiceRig {
  server: NatsServer;
  serviceNc: NatsConnection;
  nc: NatsConnection;
  svc: BackupService;
  stop(): Promise<void>;
}

export async function startRig(opts: BackupServiceOptions = {}, serverOpts: ServerOptions = {}): Promise<ServiceRig> {
  const server = await NatsServer.start(serverOpts);
  const serviceNc = await server.connect();
  const nc = await server.connect();
  const svc = await startService(serviceNc, opts);
  return {
    server,
    serviceNc,
    nc,
    svc,
    stop: async () => {
      await svc.stop();
      await serviceNc.close();
      await nc.close();
      await server.stop();
    },
  };
}
