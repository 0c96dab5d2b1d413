/**
 * Connection settings read the way the nats CLI reads them: flags, then environment
 * (NATS_URL, NATS_CREDS, NATS_NKEY, NATS_USER, NATS_PASSWORD, NATS_TOKEN, NATS_CERT, NATS_KEY,
 * NATS_CA, NATS_CONTEXT), then a nats context file (~/.config/nats/context/<name>.json, or the
 * selected one: its url, creds, nkey, user, password, token, cert, key, ca and tls_first), then
 * defaults. `--tlsfirst` has no variable, as in the nats CLI.
 */
import { existsSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { credsAuthenticator, nkeyAuthenticator, nkeys, type Authenticator, type NatsConnection, type TlsOptions } from "@nats-io/nats-core";
import { connect, type NodeConnectionOptions } from "@nats-io/transport-node";

export interface ConnectionFlags {
  server?: string;
  creds?: string;
  /** A file holding the user's nkey seed. */
  nkey?: string;
  user?: string;
  password?: string;
  token?: string;
  tlscert?: string;
  tlskey?: string;
  tlsca?: string;
  tlsfirst?: boolean;
  context?: string;
}

/** The fields of a nats context file (jsm.go's natscontext) that connecting uses. */
export interface NatsContext {
  url?: string;
  creds?: string;
  nkey?: string;
  user?: string;
  password?: string;
  token?: string;
  cert?: string;
  key?: string;
  ca?: string;
  tls_first?: boolean;
}

type Env = Record<string, string | undefined>;

export const DefaultUrl = "nats://127.0.0.1:4222";

function contextDir(env: Env): string {
  return join(env.XDG_CONFIG_HOME || join(homedir(), ".config"), "nats");
}

/** The named context, or the one `nats context select` chose; none when neither exists. */
export function readContext(name?: string, env: Env = process.env): NatsContext {
  const dir = contextDir(env);
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

/** `~/x` as the nats CLI expands it. */
function expandHome(path: string): string {
  return path.replace(/^~(?=\/|$)/, homedir());
}

/** A file a setting names: it must exist (the nats CLI checks the same). */
function existingFile(setting: string, path: string): string {
  const file = expandHome(path);
  if (!existsSync(file)) throw new Error(`${setting} ${path}: no such file`);
  return file;
}

/** The seed in an nkey file: the first line that is one (comments and decorations around it are allowed). */
function nkeySeed(setting: string, path: string): Uint8Array {
  const text = readFileSync(existingFile(setting, path), "utf8");
  const line = text.split(/\r?\n/).map((l) => l.trim()).find((l) => /^S[A-Z][A-Z2-7]{40,}$/.test(l));
  if (!line) throw new Error(`${setting} ${path}: no nkey seed in the file`);
  const seed = new TextEncoder().encode(line);
  try {
    nkeys.fromSeed(seed);
  } catch (err) {
    throw new Error(`${setting} ${path}: not a valid nkey seed (${(err as Error).message})`);
  }
  return seed;
}

/** A setting's value and where it came from (a flag, a variable, a context field, a tenant's field), for messages. */
export interface ChosenSetting {
  value: string;
  from: string;
}

/** Connection settings once chosen: what `connectionOptionsFrom` turns into options, whoever chose them. */
export interface ChosenSettings {
  /** One URL, or several separated by commas. */
  servers: string;
  creds?: ChosenSetting;
  nkey?: ChosenSetting;
  user?: string;
  password?: string;
  token?: string;
  cert?: ChosenSetting;
  key?: ChosenSetting;
  ca?: ChosenSetting;
  tlsFirst?: boolean;
}

export function connectionOptions(flags: ConnectionFlags, env: Env = process.env): NodeConnectionOptions {
  const ctx = readContext(flags.context ?? env.NATS_CONTEXT, env);
  /** The value and where it came from, for messages. */
  const pick = (flag: string | undefined, flagName: string, envName: string, fromContext: string | undefined, field: string) =>
    flag !== undefined
      ? { value: flag, from: `--${flagName}` }
      : env[envName]
        ? { value: env[envName]!, from: envName }
        : fromContext
          ? { value: fromContext, from: `the context's ${field}` }
          : undefined;
  return connectionOptionsFrom({
    servers: pick(flags.server, "server", "NATS_URL", ctx.url, "url")?.value ?? DefaultUrl,
    creds: pick(flags.creds, "creds", "NATS_CREDS", ctx.creds, "creds"),
    nkey: pick(flags.nkey, "nkey", "NATS_NKEY", ctx.nkey, "nkey"),
    user: pick(flags.user, "user", "NATS_USER", ctx.user, "user")?.value,
    password: pick(flags.password, "password", "NATS_PASSWORD", ctx.password, "password")?.value,
    token: pick(flags.token, "token", "NATS_TOKEN", ctx.token, "token")?.value,
    cert: pick(flags.tlscert, "tlscert", "NATS_CERT", ctx.cert, "cert"),
    key: pick(flags.tlskey, "tlskey", "NATS_KEY", ctx.key, "key"),
    ca: pick(flags.tlsca, "tlsca", "NATS_CA", ctx.ca, "ca"),
    tlsFirst: flags.tlsfirst === true || ctx.tls_first === true,
  });
}

/**
 * Options from settings already chosen; reads the creds, nkey and TLS files they name (each must
 * exist). Nothing comes from the environment or a context here: `connectionOptions` chooses for
 * `serve`, a tenants file for each tenant.
 */
export function connectionOptionsFrom(settings: ChosenSettings): NodeConnectionOptions {
  const { servers, creds, nkey, user, password: pass, token, cert, key, ca } = settings;
  const tlsFirst = settings.tlsFirst === true;
  if (Boolean(cert) !== Boolean(key)) {
    throw new Error(`a client certificate needs both a certificate and its key: ${cert ? `${cert.from} without a key (--tlskey, NATS_KEY)` : `${key!.from} without a certificate (--tlscert, NATS_CERT)`}`);
  }

  const authenticators: Authenticator[] = [];
  if (creds) authenticators.push(credsAuthenticator(readFileSync(existingFile(creds.from, creds.value))));
  if (nkey) authenticators.push(nkeyAuthenticator(nkeySeed(nkey.from, nkey.value)));
  const tls: TlsOptions = {
    ...(cert ? { certFile: existingFile(cert.from, cert.value) } : {}),
    ...(key ? { keyFile: existingFile(key.from, key.value) } : {}),
    ...(ca ? { caFile: existingFile(ca.from, ca.value) } : {}),
    ...(tlsFirst ? { handshakeFirst: true } : {}),
  };
  return {
    servers: servers.split(",").map((s) => s.trim()),
    name: "nats-backup",
    maxReconnectAttempts: -1,
    ...(authenticators.length ? { authenticator: authenticators.length === 1 ? authenticators[0]! : authenticators } : {}),
    ...(user ? { user } : {}),
    ...(pass ? { pass } : {}),
    ...(token ? { token } : {}),
    // Any TLS setting makes TLS required, as in the nats CLI; without one, TLS when the server offers it.
    ...(Object.keys(tls).length ? { tls } : {}),
  };
}

/** The service's connection, named `nats-backup` (its jobs' bulk connections are `nats-backup-data`). */
export function connectNats(options: NodeConnectionOptions): Promise<NatsConnection> {
  return connect(options);
}
