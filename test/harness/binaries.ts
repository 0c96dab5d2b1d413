/**
 * Which nats-server and nats CLI binaries the tests and the bench run, and their versions. One
 * place for it, so `npm test`, `npm run test:servers` and `npm run bench` agree:
 *   nats-server: $NATS_SERVER_BIN, else the newest one scripts/nats-binaries.sh built into the
 *                cache, else `nats-server` on PATH (Debian's 2.9.10 here);
 *   nats CLI:    $NATS_CLI_BIN, else the newest one in the cache, else `nats` on PATH, else none
 *                (tests that need it skip, saying why).
 * The cache is $NATS_BACKUP_BIN_CACHE, default ~/.cache/nats-backup/bin, holding
 * nats-server-<version>/nats-server and natscli-<version>/nats.
 */
import { execFileSync } from "node:child_process";
import { accessSync, constants, readdirSync } from "node:fs";
import { homedir } from "node:os";
import { delimiter, join } from "node:path";

export interface Version {
  major: number;
  minor: number;
  patch: number;
  /** "2.9.10", without the leading v. */
  text: string;
}

export interface Binary {
  path: string;
  /** Where it came from, for messages: "NATS_SERVER_BIN", "the cache (…)", "PATH". */
  source: string;
}

type Env = NodeJS.ProcessEnv;

export function binCacheDir(env: Env = process.env): string {
  return env.NATS_BACKUP_BIN_CACHE || join(homedir(), ".cache", "nats-backup", "bin");
}

/** The first x.y.z in `text` ("nats-server: v2.9.10", "v2.15.3", "0.5.0"), or null. */
export function parseVersion(text: string): Version | null {
  const m = /v?(\d+)\.(\d+)\.(\d+)/.exec(text);
  if (!m) return null;
  const [major, minor, patch] = [Number(m[1]), Number(m[2]), Number(m[3])];
  return { major, minor, patch, text: `${major}.${minor}.${patch}` };
}

export function compareVersions(a: Version, b: Version): number {
  return a.major - b.major || a.minor - b.minor || a.patch - b.patch;
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function onPath(name: string, env: Env): string | null {
  for (const dir of (env.PATH ?? "").split(delimiter)) {
    if (dir && isExecutable(join(dir, name))) return join(dir, name);
  }
  return null;
}

/** The binaries `<prefix><version>/<name>` in the cache, newest first. */
function cached(prefix: string, name: string, env: Env): { version: Version; path: string }[] {
  const dir = binCacheDir(env);
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch {
    return [];
  }
  return entries
    .filter((e) => e.startsWith(prefix))
    .map((e) => ({ version: parseVersion(e.slice(prefix.length)), path: join(dir, e, name) }))
    .filter((b): b is { version: Version; path: string } => b.version !== null && isExecutable(b.path))
    .sort((a, b) => compareVersions(b.version, a.version));
}

/** An explicitly named binary: a path, or a command name looked up on PATH. A wrong one is an error, not a fallback. */
function explicit(variable: string, env: Env): Binary | null {
  const value = env[variable];
  if (!value) return null;
  const path = value.includes("/") ? (isExecutable(value) ? value : null) : onPath(value, env);
  if (!path) throw new Error(`${variable}=${value}: no such executable`);
  return { path, source: variable };
}

/** The nats-server binaries in the cache, newest first. */
export function cachedServers(env: Env = process.env): { version: Version; path: string }[] {
  return cached("nats-server-", "nats-server", env);
}

/** The nats-server to run under `env` (see the file's comment for the order). */
export function findServerBinary(env: Env = process.env): Binary {
  const fromCache = cachedServers(env)[0];
  const fromPath = onPath("nats-server", env);
  const found =
    explicit("NATS_SERVER_BIN", env) ??
    (fromCache ? { path: fromCache.path, source: `the cache (${binCacheDir(env)})` } : null) ??
    (fromPath ? { path: fromPath, source: "PATH" } : null);
  if (!found) {
    throw new Error(
      "no nats-server: set NATS_SERVER_BIN, run scripts/nats-binaries.sh to build releases into " +
        `${binCacheDir(env)}, or install one on PATH (apt-get install nats-server)`,
    );
  }
  return found;
}

let serverBinary: Binary | undefined;

/** The nats-server the tests start, found once per process. */
export function natsServerBinary(): Binary {
  return (serverBinary ??= findServerBinary());
}

export function natsServerBin(): string {
  return natsServerBinary().path;
}

const versions = new Map<string, Version>();

/** The version `<bin> --version` prints; by default of the server the tests start. */
export function serverVersion(bin: string = natsServerBin()): Version {
  let version = versions.get(bin);
  if (!version) {
    const text = execFileSync(bin, ["--version"], { encoding: "utf8" }).trim();
    const parsed = parseVersion(text);
    if (!parsed) throw new Error(`${bin} --version printed no version: ${JSON.stringify(text)}`);
    versions.set(bin, (version = parsed));
  }
  return version;
}

/** Whether the server (by default the one the tests start) is `min` ("2.12.5") or newer. */
export function serverAtLeast(min: string, bin?: string): boolean {
  const wanted = parseVersion(min);
  if (!wanted) throw new Error(`not a version: ${min}`);
  return compareVersions(serverVersion(bin), wanted) >= 0;
}

/**
 * For a test's `skip` option: false when the server is `min` or newer, else the reason, naming
 * both versions. `test("…", { skip: needsServer("2.15.0", "snapshot a memory stream") }, …)`.
 */
export function needsServer(min: string, what: string, bin?: string): false | string {
  return serverAtLeast(min, bin) ? false : `nats-server ${serverVersion(bin).text} cannot ${what} (needs ${min} or newer)`;
}

export type CliBinary = (Binary & { reason?: undefined }) | { path: null; reason: string };

/** The nats CLI under `env`, or null with the reason a test can skip with. */
export function findCliBinary(env: Env = process.env): CliBinary {
  const fromCache = cached("natscli-", "nats", env)[0];
  const fromPath = onPath("nats", env);
  return (
    explicit("NATS_CLI_BIN", env) ??
    (fromCache ? { path: fromCache.path, source: `the cache (${binCacheDir(env)})` } : null) ??
    (fromPath ? { path: fromPath, source: "PATH" } : null) ?? {
      path: null,
      reason: `no nats CLI: set NATS_CLI_BIN, or run scripts/nats-binaries.sh to build it into ${binCacheDir(env)}`,
    }
  );
}

let cliBinary: CliBinary | undefined;

/** The nats CLI the tests run, found once per process. */
export function natsCliBinary(): CliBinary {
  return (cliBinary ??= findCliBinary());
}
