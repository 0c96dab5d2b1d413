import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createConnection } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { credsAuthenticator, headers, nkeyAuthenticator, nkeys, nuid, tokenAuthenticator, type NatsConnection } from "@nats-io/nats-core";
import { jetstreamManager } from "@nats-io/jetstream";
import type { NodeConnectionOptions } from "@nats-io/transport-node";
import { BulkConnection, BulkConnectionError, type BulkHandler, type BulkMessage } from "../src/bulk/bulk-connection.ts";
import { ProtocolReader, type ProtocolEvents } from "../src/bulk/protocol-reader.ts";
import { settingsLike } from "../src/bulk/connection-settings.ts";
import { BackupError, type StreamManifest, type JobRecord } from "../src/mod.ts";
import { NatsServer, freePort, needsServer } from "./harness/nats-server.ts";
import { certificateAuthority, issue, opensslMissing, serverTlsBlock, type Certificate, type CertificateAuthority } from "./harness/tls.ts";
import { operatorSetup } from "./harness/operator.ts";
import { makeStream } from "./harness/fixtures.ts";
import { fingerprint } from "./harness/proc-checks.ts";
import { request, startService, warningsLogger } from "./harness/service.ts";
import { waitUntil } from "./harness/inspect.ts";

interface Received {
  msg: BulkMessage;
  data: Buffer;
  parts: number;
}

/** Reassembles what a bulk subscription hands over, checking the calls come in order. */
function collector(): { handler: BulkHandler; received: Received[]; lost: Promise<Error>; arrived: (n: number) => Promise<void> } {
  const received: Received[] = [];
  let open: { msg: BulkMessage; parts: Buffer[] } | null = null;
  let onLost!: (err: Error) => void;
  const lost = new Promise<Error>((resolve) => (onLost = resolve));
  const waiters: { n: number; resolve: () => void }[] = [];
  const handler: BulkHandler = {
    begin(msg) {
      assert.equal(open, null, "begin while a message is open");
      open = { msg, parts: [] };
    },
    part(bytes) {
      assert.ok(open, "part outside a message");
      // A view into the socket's buffer: copy it, as a real consumer that keeps bytes must.
      open.parts.push(Buffer.from(bytes));
    },
    end() {
      assert.ok(open, "end outside a message");
      received.push({ msg: open.msg, data: Buffer.concat(open.parts), parts: open.parts.length });
      open = null;
      for (const w of waiters.filter((w) => received.length >= w.n)) w.resolve();
    },
    lost: (err) => onLost(err),
  };
  const arrived = (n: number) =>
    received.length >= n ? Promise.resolve() : new Promise<void>((resolve) => waiters.push({ n, resolve }));
  return { handler, received, lost, arrived };
}

describe("bulk connection", () => {
  let server: NatsServer;
  let nc: NatsConnection;

  before(async () => {
    server = await NatsServer.start({ config: 'authorization { users: [ { user: "bulk", password: "s3cret" } ] }' });
    nc = await server.connect({ user: "bulk", pass: "s3cret" });
  });
  after(async () => {
    await nc?.close();
    await server?.stop();
  });

  test("delivers every payload byte for byte, with headers and reply subjects, whatever its size", async () => {
    const bulk = await BulkConnection.like(nc, undefined, "test-bulk");
    const { handler, received, arrived } = collector();
    bulk.subscribe("bulk.data.>", handler);
    await bulk.flush();
    const sizes = [0, 1, 100, 65535, 65536, 65537, 256 * 1024, 1024 * 1024 - 200];
    const sent: { data: Buffer; withHeaders: boolean }[] = [];
    for (const [i, size] of sizes.entries()) {
      for (const withHeaders of [false, true]) {
        const data = randomBytes(size);
        const h = headers();
        h.set("Bulk-Index", `${i}`);
        nc.publish(`bulk.data.${i}`, data, { reply: `reply.${i}`, ...(withHeaders ? { headers: h } : {}) });
        sent.push({ data, withHeaders });
      }
    }
    await nc.flush();
    await arrived(sent.length);
    assert.equal(received.length, sent.length);
    for (const [i, got] of received.entries()) {
      const want = sent[i]!;
      const index = Math.floor(i / 2);
      assert.equal(got.msg.subject, `bulk.data.${index}`);
      assert.equal(got.msg.reply, `reply.${index}`);
      assert.equal(got.msg.size, want.data.length);
      assert.ok(got.data.equals(want.data), `payload ${i} (${want.data.length} bytes) differs`);
      assert.equal(got.msg.headers?.get("Bulk-Index"), want.withHeaders ? `${index}` : undefined);
    }
    // A megabyte arrives in several socket reads: proof the pieces are handed over unassembled.
    assert.ok(received.at(-1)!.parts > 1, "expected the largest payload in more than one piece");
    bulk.close();
  });

  test("publishes acks the server routes, and unsubscribes", async () => {
    const bulk = await BulkConnection.like(nc, undefined, "test-bulk");
    const acks = nc.subscribe("bulk.ack.>", { max: 3 });
    await nc.flush();
    for (let i = 0; i < 3; i++) bulk.publish(`bulk.ack.${i}`);
    const seen: string[] = [];
    for await (const m of acks) seen.push(`${m.subject}:${m.data.length}`);
    assert.deepEqual(seen, ["bulk.ack.0:0", "bulk.ack.1:0", "bulk.ack.2:0"]);

    const { handler, received, arrived } = collector();
    const sub = bulk.subscribe("bulk.unsub", handler);
    await bulk.flush();
    nc.publish("bulk.unsub", "one");
    await nc.flush();
    await arrived(1);
    sub.unsubscribe();
    await bulk.flush();
    nc.publish("bulk.unsub", "two");
    await nc.flush();
    await bulk.flush();
    assert.deepEqual(received.map((r) => r.data.toString()), ["one"]);
    bulk.close();
  });

  test("refuses bad credentials with the server's reason", async () => {
    await assert.rejects(
      BulkConnection.open({ server: `127.0.0.1:${server.port}`, name: "test-bulk", authenticator: () => ({ user: "bulk", pass: "wrong" }) }),
      /Authorization Violation/i,
    );
  });

  test("a server it cannot reach is a 503 that names the address", async () => {
    const port = await freePort();
    await assert.rejects(BulkConnection.open({ server: `127.0.0.1:${port}`, name: "test-bulk" }), (err: unknown) => {
      assert.ok(err instanceof BulkConnectionError, String(err));
      assert.equal(err.code, 503);
      assert.match(err.description, new RegExp(`127\\.0\\.0\\.1:${port}`));
      return true;
    });
    await assert.rejects(BulkConnection.open({ server: "nats://[bad", name: "test-bulk" }), BulkConnectionError);
  });

  test("a handler that throws is unsubscribed and told; others go on", async () => {
    const bulk = await BulkConnection.like(nc, undefined, "test-bulk");
    const bad = collector();
    const good = collector();
    bulk.subscribe("bulk.throw", { ...bad.handler, part: () => { throw new Error("handler broke"); } });
    bulk.subscribe("bulk.throw", good.handler);
    await bulk.flush();
    nc.publish("bulk.throw", "x");
    nc.publish("bulk.throw", "y");
    await nc.flush();
    assert.match((await bad.lost).message, /handler broke/);
    await good.arrived(2);
    assert.equal(bad.received.length, 0);
    bulk.close();
  });

  test("tells its subscriptions when the server goes away", async () => {
    const other = await NatsServer.start();
    try {
      const bulk = await BulkConnection.open({ server: other.url, name: "test-bulk" });
      const { handler, lost } = collector();
      bulk.subscribe("bulk.gone", handler);
      await bulk.flush();
      await other.halt();
      assert.match((await lost).message, /closed the data connection|failed/);
      assert.ok(bulk.isClosed);
      assert.ok((await bulk.closed) instanceof Error);
    } finally {
      await other.stop();
    }
  });
});

/**
 * A backup and a restore through the service on `serviceNc` (connected with `options`), checked
 * by `client`: the restored stream is the one backed up, and nothing fell back to a read-back
 * (so the data connections watched as they should). Every chunk crossed a data connection.
 */
async function roundTrip(serviceNc: NatsConnection, options: NodeConnectionOptions, client: NatsConnection, stream: string): Promise<void> {
  const { logger, warnings } = warningsLogger();
  const svc = await startService(serviceNc, { logger, connectionOptions: options });
  try {
    await makeStream(client, stream, { messages: 60 });
    const original = await fingerprint(client, stream);
    const backup = await request<JobRecord>(client, `$BACKUP.stream.${stream}`, { wait: true, chunk_size: 65536 }, 60_000);
    assert.equal(backup.errorCode, null, backup.raw);
    const manifest = backup.body.result as StreamManifest;
    assert.ok(manifest.chunks > 2, `archive of ${manifest.chunks} chunks`);
    await (await jetstreamManager(client)).streams.delete(stream);
    const restored = await request<JobRecord>(client, `$RESTORE.stream.${stream}`, { wait: true, backup: manifest.id }, 60_000);
    assert.equal(restored.errorCode, null, restored.raw);
    assert.deepEqual(await fingerprint(client, stream), original);
    assert.deepEqual(warnings, []);
  } finally {
    await svc.stop();
  }
}

/** `size` random bytes published by `nc` arrive whole on a subscription of `bulk`. */
async function bulkRead(bulk: BulkConnection, nc: NatsConnection, size = 300 * 1024): Promise<void> {
  const { handler, received, arrived } = collector();
  const subject = `bulk.read.${nuid.next()}`;
  bulk.subscribe(subject, handler);
  await bulk.flush();
  const data = randomBytes(size);
  nc.publish(subject, data);
  await nc.flush();
  await arrived(1);
  assert.ok(received[0]!.data.equals(data));
}

/** The server's view of its client connections (monitoring port), by connection name. */
async function connz(monitorPort: number): Promise<Map<string, { tls_version?: string; authorized_user?: string }>> {
  const res = await fetch(`http://127.0.0.1:${monitorPort}/connz?auth=true`);
  const body = (await res.json()) as { connections: { name?: string; tls_version?: string; authorized_user?: string }[] };
  return new Map(body.connections.map((c) => [c.name ?? "", c]));
}

describe("bulk connection over TLS", () => {
  let dir: string;
  let ca: CertificateAuthority;
  let serverCert: Certificate;
  let clientCert: Certificate;
  const servers: NatsServer[] = [];
  const conns: NatsConnection[] = [];

  async function start(config: string, bin?: string): Promise<NatsServer> {
    const server = await NatsServer.start({ config, ...(bin ? { bin } : {}) });
    servers.push(server);
    return server;
  }
  async function connect(server: NatsServer, opts: NodeConnectionOptions): Promise<NatsConnection> {
    const nc = await server.connect(opts);
    conns.push(nc);
    return nc;
  }

  before(() => {
    dir = mkdtempSync(join(tmpdir(), "nats-backup-tls-"));
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

  test("a server that requires client certificates: backup and restore, certificates as files", { skip: opensslMissing() }, async () => {
    const server = await start(serverTlsBlock(serverCert, { verifyWith: ca }));
    const options: NodeConnectionOptions = { tls: { caFile: ca.cert, certFile: clientCert.cert, keyFile: clientCert.key } };
    const serviceNc = await connect(server, { ...options, name: "svc" });
    const client = await connect(server, options);
    await roundTrip(serviceNc, options, client, "TLSFILES");
    // Without its certificate the same data connection is refused: the one above had it.
    await assert.rejects(BulkConnection.open({ server: server.url, name: "test-bulk", tls: { caFile: ca.cert } }), BulkConnectionError);
  });

  test("the same with the CA, certificate and key given as PEM text", { skip: opensslMissing() }, async () => {
    const server = await start(serverTlsBlock(serverCert, { verifyWith: ca }));
    const options: NodeConnectionOptions = { tls: { ca: readFileSync(ca.cert, "utf8"), cert: clientCert.certPem(), key: clientCert.keyPem() } };
    const serviceNc = await connect(server, options);
    const bulk = await BulkConnection.like(serviceNc, options, "test-bulk");
    try {
      await bulkRead(bulk, serviceNc);
    } finally {
      bulk.close();
    }
  });

  test("a server that only offers TLS: the data connection upgrades as the main one did", { skip: opensslMissing() }, async () => {
    const monitorPort = await freePort();
    const server = await start(`${serverTlsBlock(serverCert)}\nallow_non_tls: true\nhttp: "127.0.0.1:${monitorPort}"`);
    const options: NodeConnectionOptions = { name: "main", tls: { caFile: ca.cert } };
    const nc = await connect(server, options);
    assert.equal(nc.info?.tls_available, true, "the server offers TLS");
    assert.notEqual(nc.info?.tls_required, true, "the server does not require TLS");
    const bulk = await BulkConnection.like(nc, options);
    try {
      await bulkRead(bulk, nc);
      const seen = await connz(monitorPort);
      assert.ok(seen.get("main")?.tls_version, "the main connection is TLS");
      assert.ok(seen.get("main-data")?.tls_version, `the data connection is TLS too: ${JSON.stringify([...seen])}`);
    } finally {
      bulk.close();
    }
    await roundTrip(nc, options, nc, "TLSOFFERED");
  });

  test("handshake first (TLS before the server's INFO)", { skip: opensslMissing() || needsServer("2.10.0", "do a TLS handshake first") }, async () => {
    const server = await start(serverTlsBlock(serverCert, { handshakeFirst: true }));
    const options: NodeConnectionOptions = { tls: { caFile: ca.cert, handshakeFirst: true } };
    const nc = await connect(server, options);
    await roundTrip(nc, options, nc, "TLSFIRST");
    // Proof the data connection did it too: without it the server never answers in TLS.
    await assert.rejects(BulkConnection.open({ server: server.url, name: "test-bulk", tls: { caFile: ca.cert }, timeoutMs: 3000 }), BulkConnectionError);
  });

  test("node's TLS options reach it: rejectUnauthorized false, and a servername", { skip: opensslMissing() }, async () => {
    // A certificate only for nats.test, by a CA nobody here is told to trust.
    const strangerCa = certificateAuthority(dir, "stranger-ca");
    const named = issue(strangerCa, "named-server", { names: ["nats.test"], use: "server" });
    const server = await start(serverTlsBlock(named));
    const trusting = { tls: { rejectUnauthorized: false } } as NodeConnectionOptions;
    const nc = await connect(server, trusting);
    let bulk = await BulkConnection.like(nc, trusting, "test-bulk");
    await bulkRead(bulk, nc);
    bulk.close();

    const byName = { tls: { caFile: strangerCa.cert, servername: "nats.test" } } as NodeConnectionOptions;
    const nc2 = await connect(server, byName);
    bulk = await BulkConnection.like(nc2, byName, "test-bulk");
    await bulkRead(bulk, nc2);
    bulk.close();
  });

  test("checks the server's certificate: a CA that did not sign it, or a name it does not carry, is refused clearly", { skip: opensslMissing() }, async () => {
    const server = await start(serverTlsBlock(serverCert));
    const otherCa = certificateAuthority(dir, "other-ca");
    await assert.rejects(BulkConnection.open({ server: server.url, name: "test-bulk", tls: { caFile: otherCa.cert } }), (err: unknown) => {
      assert.ok(err instanceof BulkConnectionError, String(err));
      assert.equal(err.code, 503);
      assert.match(err.description, /certificate/i);
      assert.match(err.description, /TLS handshake; the server's certificate was checked against the CA in .*other-ca\.pem/);
      return true;
    });
    await assert.rejects(
      BulkConnection.open({ server: server.url, name: "test-bulk", tls: { caFile: ca.cert }, tlsName: "elsewhere.test" }),
      (err: unknown) => {
        assert.ok(err instanceof BulkConnectionError, String(err));
        assert.match(err.description, /altnames|does not match/i);
        assert.match(err.description, /checked for elsewhere\.test against the CA in/);
        return true;
      },
    );
    // Without TLS settings (tls absent) it still upgrades, and the system's CAs do not know this one.
    await assert.rejects(BulkConnection.open({ server: server.url, name: "test-bulk" }), /certificate/i);
  });

  test("on a gossiped server (an IP address), the certificate is checked for the host name the connection was configured with", { skip: opensslMissing() }, async () => {
    // The certificate names only localhost; the servers gossip their address as 127.0.0.1.
    const localOnly = issue(ca, "localhost-server", { names: ["localhost"], use: "server" });
    const [routeA, routeB] = [await freePort(), await freePort()];
    const routes = `routes: ["nats-route://127.0.0.1:${routeA}", "nats-route://127.0.0.1:${routeB}"]`;
    const a = await start(`${serverTlsBlock(localOnly)}\ncluster { name: G, listen: "127.0.0.1:${routeA}", ${routes} }`);
    const b = await start(`${serverTlsBlock(localOnly)}\ncluster { name: G, listen: "127.0.0.1:${routeB}", ${routes} }`);
    const options: NodeConnectionOptions = { servers: [`localhost:${a.port}`], tls: { caFile: ca.cert }, reconnectTimeWait: 100, maxReconnectAttempts: -1 };
    const nc = await connect(a, options);
    const gossiped = `127.0.0.1:${b.port}`;
    await waitUntil("the cluster to gossip the second server", async () => nc.getServers().some((s) => s.listen === gossiped) || undefined, 10_000, 50);
    await a.halt();
    await waitUntil("the main connection to move to the gossiped server", async () => nc.getServer() === gossiped || undefined, 20_000, 50);
    const settings = settingsLike(nc, options);
    assert.equal(settings.server, gossiped, "to the server the main connection is on");
    assert.equal(settings.tlsName, "localhost", "checked for the host name the main connection was configured with");
    // (End to end this also passes without that name: node checks a connection to an IP address
    // without a servername against "localhost", the one name that resolves here.)
    const bulk = await BulkConnection.like(nc, options, "test-bulk");
    try {
      await bulkRead(bulk, nc);
      assert.equal(bulk.server, gossiped, "the data connection went to the server the main connection is on");
    } finally {
      bulk.close();
    }
  });
});

describe("bulk connection: credentials", () => {
  const servers: NatsServer[] = [];
  const conns: NatsConnection[] = [];
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), "nats-backup-auth-"));
  });
  after(async () => {
    for (const nc of conns) await nc.close().catch(() => {});
    for (const server of servers) await server.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  async function serverWith(config: string): Promise<NatsServer> {
    const server = await NatsServer.start({ config });
    servers.push(server);
    return server;
  }
  async function connect(server: NatsServer, opts: NodeConnectionOptions): Promise<NatsConnection> {
    const nc = await server.connect(opts);
    conns.push(nc);
    return nc;
  }

  test("a token: backup and restore", async () => {
    const server = await serverWith('authorization { token: "t0ken-for-bulk" }');
    const options: NodeConnectionOptions = { token: "t0ken-for-bulk" };
    const nc = await connect(server, options);
    await roundTrip(nc, options, nc, "BYTOKEN");
    await assert.rejects(BulkConnection.open({ server: server.url, name: "test-bulk", authenticator: tokenAuthenticator("wrong") }), (err: unknown) => {
      assert.ok(err instanceof BackupError && err.code === 403, String(err));
      assert.match(err.description, /Authorization Violation/);
      return true;
    });
  });

  test("an nkey: backup and restore", async () => {
    const user = nkeys.createUser();
    const server = await serverWith(`authorization { users: [ { nkey: ${user.getPublicKey()} } ] }`);
    const options: NodeConnectionOptions = { authenticator: nkeyAuthenticator(user.getSeed()) };
    const nc = await connect(server, options);
    await roundTrip(nc, options, nc, "BYNKEY");
  });

  test("a creds file (JWT) on an operator-mode server: backup and restore", async () => {
    const setup = await operatorSetup(dir);
    const server = await serverWith(setup.config);
    const creds = await setup.userCreds("backup-user");
    const options: NodeConnectionOptions = { authenticator: credsAuthenticator(readFileSync(creds)) };
    const nc = await connect(server, options);
    await roundTrip(nc, options, nc, "BYCREDS");
  });

  test("user and password, given only as options (not read from the connection)", async () => {
    const server = await serverWith('authorization { users: [ { user: "u", password: "p" } ] }');
    const options: NodeConnectionOptions = { user: "u", pass: "p" };
    const nc = await connect(server, options);
    await roundTrip(nc, options, nc, "BYUSER");
  });
});

describe("bulk connection: permissions", () => {
  let server: NatsServer;
  let nc: NatsConnection;

  before(async () => {
    server = await NatsServer.start({
      config: `authorization { users: [
  { user: admin, password: admin }
  { user: limited, password: limited, permissions: { subscribe: { deny: ["secret.>"] }, publish: { deny: ["forbidden.>"] } } }
  # Its own inboxes are _MAIN.>: a data connection that subscribes to _INBOX.> is refused.
  { user: noinbox, password: noinbox, permissions: { subscribe: { deny: ["_INBOX.>", "$O.backups.C.>"] } } }
] }`,
    });
    nc = await server.connect({ user: "admin", pass: "admin" });
  });
  after(async () => {
    await nc?.close();
    await server?.stop();
  });

  test("a refused subscription fails that subscription with the server's words, as a 403; the connection goes on", async () => {
    const limited = { user: "limited", pass: "limited" };
    const lnc = await server.connect(limited);
    const bulk = await BulkConnection.like(lnc, limited, "test-bulk");
    try {
      const refused = collector();
      bulk.subscribe("secret.plans", refused.handler);
      await bulk.flush();
      const err = await refused.lost;
      assert.ok(err instanceof BackupError, String(err));
      assert.equal(err.code, 403);
      assert.match(err.description, /Permissions Violation for Subscription to "?secret\.plans/);
      assert.match(err.description, /needs permission to subscribe to secret\.plans/);
      assert.equal(bulk.isClosed, false);
      await bulkRead(bulk, nc);
    } finally {
      bulk.close();
      await lnc.close();
    }
  });

  test("a refused publish (an ack) ends the connection with a 403 naming the subject", async () => {
    const limited = { user: "limited", pass: "limited" };
    const lnc = await server.connect(limited);
    const bulk = await BulkConnection.like(lnc, limited, "test-bulk");
    try {
      const sub = collector();
      bulk.subscribe("open.data", sub.handler);
      bulk.publish("forbidden.ack");
      const err = await sub.lost;
      assert.ok(err instanceof BackupError, String(err));
      assert.equal(err.code, 403);
      assert.match(err.description, /Permissions Violation for Publish to "?forbidden\.ack/);
      assert.match(err.description, /needs permission to publish to forbidden\.ack/);
      assert.equal(await bulk.closed, err);
    } finally {
      bulk.close();
      await lnc.close();
    }
  });

  test("a backup whose data connection may not subscribe fails with the server's words (403), not a lost connection", async () => {
    const options: NodeConnectionOptions = { user: "noinbox", pass: "noinbox", inboxPrefix: "_MAIN" };
    const serviceNc = await server.connect(options);
    const { logger, warnings } = warningsLogger();
    const svc = await startService(serviceNc, { logger, connectionOptions: options });
    try {
      await makeStream(nc, "REFUSED", { messages: 30, consumers: false });
      const reply = await request<JobRecord>(nc, "$BACKUP.stream.REFUSED", { wait: true }, 60_000);
      assert.equal(reply.errorCode, 403, reply.raw);
      assert.match(reply.errorHeader ?? "", /Permissions Violation for Subscription to "?_INBOX\./);
      assert.match(reply.errorHeader ?? "", /needs permission to subscribe to _INBOX\./);
      // First the watch on the chunks was refused, and the backup took the snapshot again the careful way.
      assert.ok(warnings.some((w) => /snapshot watch lost/.test(w)), JSON.stringify(warnings));
    } finally {
      await svc.stop();
      await serviceNc.close();
    }
  });
});

describe("message headers", () => {
  test("a status line without a description (a 2.10 snapshot's end, NATS/1.0 204) and repeated keys", async () => {
    const server = await NatsServer.start();
    const bulk = await BulkConnection.open({ server: server.url, name: "test-bulk" });
    try {
      const { handler, received, arrived } = collector();
      bulk.subscribe("hdr.raw", handler);
      await bulk.flush();
      // A raw publisher: nats.js cannot send a status without a description.
      const raw = createConnection({ host: "127.0.0.1", port: server.port });
      const hdr = "NATS/1.0 204\r\nA: 1\r\nA: 2\r\nB:  spaced \r\n\r\n";
      raw.write(`CONNECT {"verbose":false,"headers":true}\r\nHPUB hdr.raw ${hdr.length} ${hdr.length + 2}\r\n${hdr}ok\r\nPING\r\n`);
      await arrived(1);
      raw.destroy();
      const h = received[0]!.msg.headers!;
      assert.equal(h.code, 204);
      assert.equal(h.description, "");
      assert.deepEqual(h.values("A"), ["1", "2"]);
      assert.equal(h.get("B"), "spaced");
      assert.equal(received[0]!.data.toString(), "ok");
    } finally {
      bulk.close();
      await server.stop();
    }
  });
});

describe("protocol reader", () => {
  /** Records events as text, so two parses can be compared. */
  function recorder(): { events: ProtocolEvents; log: string[] } {
    const log: string[] = [];
    let payload: Buffer[] = [];
    return {
      log,
      events: {
        info: (json) => log.push(`INFO ${json}`),
        ping: () => log.push("PING"),
        pong: () => log.push("PONG"),
        error: (text) => log.push(`ERR ${text}`),
        begin: (sid, subject, reply, hdrs, size) => {
          payload = [];
          log.push(`BEGIN ${sid} ${subject} ${reply ?? "-"} ${hdrs ? Buffer.from(hdrs).toString("hex") : "-"} ${size}`);
        },
        part: (_sid, bytes) => payload.push(Buffer.from(bytes)),
        end: (sid) => log.push(`END ${sid} ${Buffer.concat(payload).toString("hex")}`),
      },
    };
  }

  test("gives the same events however the bytes are split", () => {
    const hdr = "NATS/1.0\r\nA: b\r\n\r\n";
    const body = randomBytes(5000);
    const stream = Buffer.concat([
      Buffer.from('INFO {"server_id":"x"}\r\nPING\r\n+OK\r\n'),
      Buffer.from(`MSG a.b 1 ${body.length}\r\n`), body, Buffer.from("\r\n"),
      Buffer.from(`HMSG c.d 2 _INBOX.r ${hdr.length} ${hdr.length + 3}\r\n${hdr}xyz\r\n`),
      Buffer.from(`HMSG e 3 ${hdr.length} ${hdr.length}\r\n${hdr}\r\n`),
      Buffer.from("MSG f 4 0\r\n\r\nPONG\r\n-ERR 'Permissions Violation'\r\n"),
    ]);
    const whole = recorder();
    new ProtocolReader(whole.events).feed(stream);
    assert.equal(whole.log.length, 12);
    assert.equal(whole.log.at(-1), "ERR Permissions Violation");
    for (let round = 0; round < 200; round++) {
      const split = recorder();
      const reader = new ProtocolReader(split.events);
      for (let at = 0; at < stream.length; ) {
        const n = 1 + Math.floor(Math.random() * (round % 2 ? 7 : 1500));
        reader.feed(stream.subarray(at, at + n));
        at += n;
      }
      assert.deepEqual(split.log, whole.log);
    }
  });

  test("refuses what is not the protocol", () => {
    const reader = new ProtocolReader(recorder().events);
    assert.throws(() => reader.feed(Buffer.from("HELLO there\r\n")), /unexpected protocol line/);
    assert.throws(() => new ProtocolReader(recorder().events).feed(Buffer.from("MSG a b c\r\n")), /malformed MSG/);
    assert.throws(() => new ProtocolReader(recorder().events).feed(Buffer.alloc(70_000, 0x41)), /longer than/);
  });
});
