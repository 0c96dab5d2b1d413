/**
 * Connection settings read the way the nats CLI reads them: flags, then environment
 * (NATS_URL, NATS_CREDS, NATS_USER, NATS_PASSWORD, NATS_TOKEN, NATS_CONTEXT), then a nats
 * context file (~/.config/nats/context/<name>.json, or the selected one), then defaults.
 */
import { existsSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { credsAuthenticator, type NatsConnection } from "@nats-io/nats-core";
import { connect, type NodeConnectionOptions } from "@nats-io/transport-node";

export interface ConnectionFlags {
  server?: string;
  creds?: string;
  user?: string;
  password?: string;
  token?: string;
  context?: string;
}

interface NatsContext {
  url?: string;
  creds?: string;
  user?: string;
  password?: string;
  token?: string;
}

export const DefaultUrl = "nats://127.0.0.1:4222";

function contextDir(): string {
  return join(process.env.XDG_CONFIG_HOME ?? join(homedir(), ".config"), "nats");
}

/** The named context, or the one `nats context select` chose; none when neither exists. */
export function readContext(name?: string): NatsContext {
  const dir = contextDir();
  let selected = name;
  if (!selected && existsSync(join(dir, "context.txt"))) selected = readFileSync(join(dir, "context.txt"), "utf8").trim();
  if (!selected) return {};
  const file = join(dir, "context", `${selected}.json`);
  if (!existsSync(file)) {
    if (name) throw new Error(`nats context ${name} not found (${file})`);
    return {};
  }
  return JSON.parse(readFileSync(file, "utf8")) as NatsContext;
}

export function connectionOptions(flags: ConnectionFlags, env = process.env): NodeConnectionOptions {
  const ctx = readContext(flags.context ?? env.NATS_CONTEXT);
  const pick = (flag: string | undefined, envName: string, fromContext: string | undefined) =>
    flag ?? env[envName] ?? (fromContext || undefined);
  const servers = pick(flags.server, "NATS_URL", ctx.url) ?? DefaultUrl;
  const creds = pick(flags.creds, "NATS_CREDS", ctx.creds);
  const user = pick(flags.user, "NATS_USER", ctx.user);
  const pass = pick(flags.password, "NATS_PASSWORD", ctx.password);
  const token = pick(flags.token, "NATS_TOKEN", ctx.token);
  return {
    servers: servers.split(",").map((s) => s.trim()),
    name: "nats-backup",
    maxReconnectAttempts: -1,
    ...(creds ? { authenticator: credsAuthenticator(readFileSync(creds.replace(/^~(?=\/)/, homedir()))) } : {}),
    ...(user ? { user } : {}),
    ...(pass ? { pass } : {}),
    ...(token ? { token } : {}),
  };
}

/** The service's connection, named `nats-backup` (its jobs' bulk connections are `nats-backup-data`). */
export function connectNats(flags: ConnectionFlags): Promise<NatsConnection> {
  return connect(connectionOptions(flags));
}
