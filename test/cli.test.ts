import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { nkeys, type NatsConnection } from "@nats-io/nats-core";
import { jetstreamManager } from "@nats-io/jetstream";
import type { NodeConnectionOptions } from "@nats-io/transport-node";
import type { StreamManifest, JobRecord } from "../src/mod.ts";
import { connectionOptions } from "../src/connection/connect.ts";
import { NatsServer, freePort, needsServer } from "./harness/nats-server.ts";
import { request } from "./harness/service.ts";
import { waitUntil } from "./harness/inspect.ts";
import { makeStream } from "./harness/fixtures.ts";
import { fingerprint } from "./harness/proc-checks.ts";
import { certificateAuthority, issue, opensslMissing, serverTlsBlock, type Certificate, type CertificateAuthority } from "./harness/tls.ts";

const Bin = join(import.meta.dirname, "..", "bin", "nats-backup.js");

interface Child {
  proc: ChildProcess;
  output: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Children started by `run`, killed (by their PID) when the file's tests end. */
const children: Child[] = [];
/** An empty config directory: no nats context of the user is read. */
let home: string;

before(() => {
  home = mkdtempSync(join(tmpdir(), "nats-backup-cli-"));
});
after(async () => {
  for (const child of children) {
    const { proc } = child;
    if (proc.exitCode === null && proc.signalCode === null && proc.pid) {
      process.kill(proc.pid, "SIGKILL");
      await child.exited;
    }
  }
  rmSync(home, { recursive: true, force: true });
});

/** Starts the CLI as a child process with an environment free of NATS_* settings, plus `env`. */
function run(args: string[], env: Record<string, string> = {}): Child {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("NATS_") && k !== "LOG_LEVEL"));
  const proc = spawn(process.execPath, [Bin, ...args], {
    env: { ...clean, XDG_CONFIG_HOME: home, HOME: home, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  proc.stdout!.on("data", (d: Buffer) => (out = (out + d.toString()).slice(-50_000)));
  proc.stderr!.on("data", (d: Buffer) => (out = (out + d.toString()).slice(-50_000)));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.once("exit", (code, signal) => resolve({ code, signal })),
  );
  const child = { proc, output: () => out, exited };
  children.push(child);
  return child;
}

async function exitWithin(child: Child, ms: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`pid ${child.proc.pid} did not exit in ${ms} ms:\n${child.output()}`)), ms);
  });
  try {
    return await Promise.race([child.exited, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Waits until a `backup` service answers `$SRV.PING.backup` on `nc`; returns its answer. */
async function waitForService(child: Child, nc: NatsConnection): Promise<{ name: string; id: string; metadata?: Record<string, string> }> {
  return waitUntil(
    "the backup service to answer $SRV.PING.backup",
    async () => {
      if (child.proc.exitCode !== null) throw new Error(`the service exited with ${child.proc.exitCode}:\n${child.output()}`);
      try {
        const reply = await nc.request("$SRV.PING.backup", "", { timeout: 1000 });
        return reply.json<{ name: string; id: string; metadata?: Record<string, string> }>();
      } catch {
        return undefined;
      }
    },
    60_000,
    250,
  );
}

describe("nats-backup serve", () => {
  let server: NatsServer;
  let nc: NatsConnection;

  before(async () => {
    server = await NatsServer.start();
    nc = await server.connect();
  });
  after(async () => {
    await nc?.close();
    await server?.stop();
  });

  test("--server: it registers, answers $BACKUP.list, and exits 0 on SIGTERM", async () => {
    const child = run(["serve", "--server", server.url, "--bucket", "b1", "--log-level", "info"]);
    const ping = await waitForService(child, nc);
    assert.equal(ping.name, "backup");
    const info = await nc.request(`$SRV.INFO.backup.${ping.id}`, "", { timeout: 5000 });
    assert.equal(info.json<{ metadata: Record<string, string> }>().metadata.bucket, "b1");

    const list = await request<{ backups: StreamManifest[] }>(nc, "$BACKUP.list");
    assert.equal(list.errorCode, null, list.raw);
    assert.deepEqual(list.body, { backups: [] });
    const streams = await nc.request("$JS.API.STREAM.NAMES", "", { timeout: 5000 });
    assert.ok(streams.string().includes('"OBJ_b1"'), "the bucket b1 was created");

    process.kill(child.proc.pid!, "SIGTERM");
    const { code, signal } = await exitWithin(child, 30_000);
    assert.equal(signal, null, child.output());
    assert.equal(code, 0, child.output());
    // It is gone from the service registry.
    await assert.rejects(nc.request("$SRV.PING.backup", "", { timeout: 1000 }));
  });

  test("NATS_URL is used when --server is absent", async () => {
    const child = run(["serve", "--bucket", "b2"], { NATS_URL: server.url, LOG_LEVEL: "warn" });
    const ping = await waitForService(child, nc);
    const info = await nc.request(`$SRV.INFO.backup.${ping.id}`, "", { timeout: 5000 });
    assert.equal(info.json<{ metadata: Record<string, string> }>().metadata.bucket, "b2");
    const list = await request<{ backups: StreamManifest[] }>(nc, "$BACKUP.list");
    assert.deepEqual(list.body, { backups: [] });
    process.kill(child.proc.pid!, "SIGTERM");
    const { code } = await exitWithin(child, 30_000);
    assert.equal(code, 0, child.output());
  });

  test("--help prints the usage and exits 0", async () => {
    const child = run(["--help"]);
    const { code } = await exitWithin(child, 30_000);
    assert.equal(code, 0, child.output());
    assert.match(child.output(), /Usage: nats-backup \[options\] \[command\]/);
    assert.match(child.output(), /serve \[options\]/);
    assert.match(child.output(), /--server <url>/);
    assert.match(child.output(), /NATS_URL/);
  });

  test("an unknown command prints the usage and exits 2", async () => {
    const child = run(["frobnicate"]);
    const { code } = await exitWithin(child, 30_000);
    assert.equal(code, 2, child.output());
    assert.match(child.output(), /unknown command 'frobnicate'/);
    assert.match(child.output(), /Usage: nats-backup \[options\] \[command\]/);
  });
});

describe("connection settings as the nats CLI reads them", () => {
  let dir: string;
  let files: { seed: string; cert: string; key: string; ca: string; ca2: string; ca3: string };
  const user = nkeys.createUser();

  /** An environment whose nats config directory is `dir`, with a context `ctx` holding `context`. */
  function withContext(context: Record<string, unknown>): Record<string, string> {
    mkdirSync(join(dir, "nats", "context"), { recursive: true });
    writeFileSync(join(dir, "nats", "context", "ctx.json"), JSON.stringify(context));
    return { XDG_CONFIG_HOME: dir };
  }

  before(() => {
    dir = mkdtempSync(join(tmpdir(), "nats-backup-flags-"));
    const file = (name: string, text: string) => {
      writeFileSync(join(dir, name), text);
      return join(dir, name);
    };
    files = {
      // A seed file as `nsc` writes one: decorated, the seed on a line of its own.
      seed: file("user.nk", `-----BEGIN USER NKEY SEED-----\n${new TextDecoder().decode(user.getSeed())}\n------END USER NKEY SEED------\n`),
      cert: file("cert.pem", "cert"),
      key: file("key.pem", "key"),
      ca: file("ca.pem", "ca"),
      ca2: file("ca2.pem", "ca2"),
      ca3: file("ca3.pem", "ca3"),
    };
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  /** What the authenticator sends for a nonce, checked to be `user`'s signature. */
  function signsAsUser(opts: NodeConnectionOptions): void {
    const auth = (opts.authenticator as (nonce?: string) => { nkey?: string; sig?: string })("n0nce");
    assert.equal(auth.nkey, user.getPublicKey());
    assert.ok(nkeys.fromPublic(auth.nkey!).verify(new TextEncoder().encode("n0nce"), Buffer.from(auth.sig!, "base64url")));
  }

  test("flags: --nkey, --tlscert, --tlskey, --tlsca, --tlsfirst", () => {
    const opts = connectionOptions({ nkey: files.seed, tlscert: files.cert, tlskey: files.key, tlsca: files.ca, tlsfirst: true }, { XDG_CONFIG_HOME: dir });
    assert.deepEqual(opts.tls, { certFile: files.cert, keyFile: files.key, caFile: files.ca, handshakeFirst: true });
    signsAsUser(opts);
  });

  test("variables: NATS_NKEY, NATS_CERT, NATS_KEY, NATS_CA", () => {
    const opts = connectionOptions({}, { XDG_CONFIG_HOME: dir, NATS_NKEY: files.seed, NATS_CERT: files.cert, NATS_KEY: files.key, NATS_CA: files.ca });
    assert.deepEqual(opts.tls, { certFile: files.cert, keyFile: files.key, caFile: files.ca });
    signsAsUser(opts);
  });

  test("a context's nkey, cert, key, ca and tls_first", () => {
    const env = withContext({ nkey: files.seed, cert: files.cert, key: files.key, ca: files.ca, tls_first: true });
    for (const opts of [connectionOptions({ context: "ctx" }, env), connectionOptions({}, { ...env, NATS_CONTEXT: "ctx" })]) {
      assert.deepEqual(opts.tls, { certFile: files.cert, keyFile: files.key, caFile: files.ca, handshakeFirst: true });
      signsAsUser(opts);
    }
  });

  test("flags come before variables, variables before the context", () => {
    const env = { ...withContext({ ca: files.ca }), NATS_CONTEXT: "ctx" };
    assert.equal(connectionOptions({}, env).tls?.caFile, files.ca);
    assert.equal(connectionOptions({}, { ...env, NATS_CA: files.ca2 }).tls?.caFile, files.ca2);
    assert.equal(connectionOptions({ tlsca: files.ca3 }, { ...env, NATS_CA: files.ca2 }).tls?.caFile, files.ca3);
  });

  test("without TLS settings there is no tls option: TLS when the server offers it, as nats.js does", () => {
    assert.equal(connectionOptions({}, { XDG_CONFIG_HOME: dir }).tls, undefined);
  });

  test("a missing file, a certificate without its key, or a file with no seed is refused, naming the setting", () => {
    assert.throws(() => connectionOptions({ tlsca: join(dir, "nope.pem") }, { XDG_CONFIG_HOME: dir }), /--tlsca .*nope\.pem: no such file/);
    assert.throws(() => connectionOptions({}, { XDG_CONFIG_HOME: dir, NATS_CERT: files.cert }), /NATS_CERT without a key/);
    assert.throws(() => connectionOptions({ tlskey: files.key }, { XDG_CONFIG_HOME: dir }), /--tlskey without a certificate/);
    assert.throws(() => connectionOptions({}, { XDG_CONFIG_HOME: dir, NATS_NKEY: files.ca }), /NATS_NKEY .*ca\.pem: no nkey seed/);
  });
});

/** Backs `stream` up and restores it through the service, as a client `nc` would; the restored stream is the one backed up. */
async function backupAndRestore(nc: NatsConnection, stream: string): Promise<void> {
  await makeStream(nc, stream, { messages: 60 });
  const original = await fingerprint(nc, stream);
  const backup = await request<JobRecord>(nc, `$BACKUP.stream.${stream}`, { wait: true, chunk_size: 65536 }, 60_000);
  assert.equal(backup.errorCode, null, backup.raw);
  const manifest = backup.body.result as StreamManifest;
  await (await jetstreamManager(nc)).streams.delete(stream);
  const restored = await request<JobRecord>(nc, `$RESTORE.stream.${stream}`, { wait: true, backup: manifest.id }, 60_000);
  assert.equal(restored.errorCode, null, restored.raw);
  assert.deepEqual(await fingerprint(nc, stream), original);
}

/** The server's closed client connections named `name` (its monitoring port keeps them). */
async function closedConnections(monitorPort: number, name: string): Promise<{ name?: string; tls_version?: string }[]> {
  const res = await fetch(`http://127.0.0.1:${monitorPort}/connz?state=closed&limit=1000`);
  const body = (await res.json()) as { connections: { name?: string; tls_version?: string }[] };
  return body.connections.filter((c) => c.name === name);
}

describe("nats-backup serve with TLS and nkey settings", () => {
  let dir: string;
  let ca: CertificateAuthority;
  let serverCert: Certificate;
  let clientCert: Certificate;
  const user = nkeys.createUser();
  let seedFile: string;
  const servers: NatsServer[] = [];
  const conns: NatsConnection[] = [];

  before(() => {
    dir = mkdtempSync(join(tmpdir(), "nats-backup-cli-tls-"));
    seedFile = join(dir, "service.nk");
    writeFileSync(seedFile, user.getSeed(), { mode: 0o600 });
    if (opensslMissing()) return;
    ca = certificateAuthority(dir);
    serverCert = issue(ca, "server", { names: ["localhost", "127.0.0.1"], use: "server" });
    clientCert = issue(ca, "client", { use: "client" });
  });
  after(async () => {
    for (const nc of conns) await nc.close().catch(() => {});
    for (const server of servers) await server.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  async function start(config: string): Promise<{ server: NatsServer; monitorPort: number }> {
    const monitorPort = await freePort();
    const server = await NatsServer.start({ config: `${config}\nhttp: "127.0.0.1:${monitorPort}"` });
    servers.push(server);
    return { server, monitorPort };
  }
  async function client(server: NatsServer, opts: NodeConnectionOptions): Promise<NatsConnection> {
    const nc = await server.connect(opts);
    conns.push(nc);
    return nc;
  }
  const users = () => `authorization { users: [ { nkey: ${user.getPublicKey()} }, { user: client, password: client } ] }`;

  test("--tlsca, --tlscert, --tlskey and --nkey reach the service and its jobs' data connections", { skip: opensslMissing() }, async () => {
    const { server, monitorPort } = await start(`${serverTlsBlock(serverCert, { verifyWith: ca })}\n${users()}`);
    const child = run([
      "serve", "--server", server.url, "--bucket", "backups",
      "--tlsca", ca.cert, "--tlscert", clientCert.cert, "--tlskey", clientCert.key, "--nkey", seedFile,
    ]);
    const nc = await client(server, { user: "client", pass: "client", tls: { caFile: ca.cert, certFile: clientCert.cert, keyFile: clientCert.key } });
    await waitForService(child, nc);
    await backupAndRestore(nc, "CLIFLAGS");
    const data = await closedConnections(monitorPort, "nats-backup-data");
    assert.ok(data.length >= 2, `the backup's and the restore's data connections: ${JSON.stringify(data)}`);
    assert.ok(data.every((c) => c.tls_version), JSON.stringify(data));
  });

  test("a context's ca, cert, key, nkey and tls_first reach them too (handshake first)", { skip: opensslMissing() || needsServer("2.10.0", "do a TLS handshake first") }, async () => {
    const { server } = await start(`${serverTlsBlock(serverCert, { verifyWith: ca, handshakeFirst: true })}\n${users()}`);
    const configHome = join(dir, "config");
    mkdirSync(join(configHome, "nats", "context"), { recursive: true });
    writeFileSync(
      join(configHome, "nats", "context", "tls.json"),
      JSON.stringify({ url: server.url, ca: ca.cert, cert: clientCert.cert, key: clientCert.key, nkey: seedFile, tls_first: true }),
    );
    const child = run(["serve", "--context", "tls"], { XDG_CONFIG_HOME: configHome });
    const nc = await client(server, { user: "client", pass: "client", tls: { caFile: ca.cert, certFile: clientCert.cert, keyFile: clientCert.key, handshakeFirst: true } });
    await waitForService(child, nc);
    await backupAndRestore(nc, "CLICONTEXT");
  });

  test("a server that only offers TLS, its CA trusted by the system: the data connections use TLS like the main one", { skip: opensslMissing() }, async () => {
    const { server, monitorPort } = await start(`${serverTlsBlock(serverCert)}\nallow_non_tls: true`);
    // No TLS settings: nats.js takes the TLS the server offers, checked against the system's CAs.
    const child = run(["serve", "--server", server.url], { NODE_EXTRA_CA_CERTS: ca.cert });
    const nc = await client(server, { tls: null });
    await waitForService(child, nc);
    await backupAndRestore(nc, "CLIOFFERED");
    const data = await closedConnections(monitorPort, "nats-backup-data");
    assert.ok(data.length >= 2, `the backup's and the restore's data connections: ${JSON.stringify(data)}`);
    assert.ok(data.every((c) => c.tls_version), `every data connection used TLS: ${JSON.stringify(data)}`);
  });
});
