/**
 * Many tenants in one process (issue 13): `serveTenants` with a tenants file serves accounts A and
 * B of one real nats-server, each inside its own account with its own credentials. A backs up and
 * restores its ORDERS without touching B's; B cannot reach A's backups by their ids; a user whose
 * NATS permissions deny `$RESTORE.>` is refused by the server; a tenant revoked by a server reload
 * is reported on `$BACKUP.tenants` and comes back when the file has its new password; a tenant of
 * an operator-mode server connects with a .creds file; every event, record and log line names its
 * tenant; and a process-wide limit of one job serves the tenants in turn.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { credsAuthenticator, PermissionViolationError, RequestError, type NatsConnection, type Status } from "@nats-io/nats-core";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { pino, type Logger } from "pino";
import type { JobRecord } from "../src/mod.ts";
import { serveTenants, TenantsSubject, type ServedTenants } from "../src/tenants/serve-tenants.ts";
import type { TenantStatus } from "../src/tenants/tenant-host.ts";
import { readStream, type StoredMessage } from "./harness/fixtures.ts";
import { Gate, gateOnce, openAllGates } from "./harness/gate.ts";
import { Collector, streamState, waitUntil } from "./harness/inspect.ts";
import { NatsServer } from "./harness/nats-server.ts";
import { operatorSetup } from "./harness/operator.ts";
import { request, type Reply } from "./harness/service.ts";

interface Manifest {
  id: string;
  stream?: string;
  sha256?: string;
  size: number;
  messages: number;
}
interface ListReply {
  backups: Manifest[];
}
interface ErrorBody {
  error: { code: number; description: string };
}

const Passwords = { aSvc: "a-svc-secret", a: "a-secret", aRo: "a-ro-secret", b: "b-secret", admin: "admin-secret" };

/**
 * Accounts A and B with JetStream, each with the user its tenant connects as (`a-svc`, `b-svc`)
 * and users a client connects as; `a-ro` may not publish to `$RESTORE.>` or `$BACKUP.delete.>`.
 * ADMIN (no JetStream) is where `$BACKUP.tenants` is answered.
 */
function accountsConfig(bServicePassword: string): string {
  return `
accounts {
  A: {
    jetstream: enabled
    users: [
      { user: "a-svc", password: "${Passwords.aSvc}" }
      { user: "a", password: "${Passwords.a}" }
      { user: "a-ro", password: "${Passwords.aRo}", permissions: { publish: { deny: ["$RESTORE.>", "$BACKUP.delete.>"] } } }
    ]
  }
  B: {
    jetstream: enabled
    users: [
      { user: "b-svc", password: "${bServicePassword}" }
      { user: "b", password: "${Passwords.b}" }
    ]
  }
  ADMIN: {
    users: [ { user: "admin", password: "${Passwords.admin}" } ]
  }
}
`;
}

/** The tenants file for A and B (B with a bucket of its own name), written to `file`. */
function writeTenantsFile(file: string, bServicePassword: string): void {
  writeFileSync(
    file,
    JSON.stringify({
      tenants: [
        { name: "A", user: "a-svc", password: Passwords.aSvc },
        { name: "B", user: "b-svc", password: bServicePassword, bucket: "b-backups" },
      ],
    }),
  );
}

/** A logger that keeps every line (info and up) as parsed JSON. */
function capturingLogger(): { log: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const log = pino({ level: "info" }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
  return { log, lines };
}

/** `count` messages on ORDERS.<n>, each saying which account it was written in. */
async function makeOrders(nc: NatsConnection, account: string, count: number, stream = "ORDERS"): Promise<void> {
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: stream, subjects: [`${stream}.>`] });
  const js = jetstream(nc);
  for (let i = 1; i <= count; i++) await js.publish(`${stream}.${i % 3}`, `order ${i} of account ${account}`);
}

const contents = (messages: StoredMessage[]) => messages.map((m) => ({ seq: m.seq, subject: m.subject, data: Buffer.from(m.data, "base64").toString() }));

async function backup(nc: NatsConnection, stream: string): Promise<JobRecord> {
  const reply = await request<JobRecord & ErrorBody>(nc, `$BACKUP.stream.${stream}`, { wait: true }, 60_000);
  assert.equal(reply.errorCode, null, reply.raw);
  assert.equal(reply.body.state, "completed", reply.raw);
  return reply.body;
}

async function listIds(nc: NatsConnection): Promise<string[]> {
  const reply = await request<ListReply>(nc, "$BACKUP.list");
  assert.equal(reply.errorCode, null, reply.raw);
  return reply.body.backups.map((b) => b.id);
}

async function tenantsReply(nc: NatsConnection): Promise<TenantStatus[]> {
  const reply = await request<{ tenants: TenantStatus[] }>(nc, TenantsSubject, "", 5_000);
  return reply.body.tenants;
}

/** Requests the restore and delete endpoints of the account's backup service received (`$SRV.STATS`). */
async function endpointRequests(nc: NatsConnection): Promise<Record<string, number>> {
  const stats = (await request<{ endpoints: { name: string; num_requests: number }[] }>(nc, "$SRV.STATS.backup")).body;
  const of = (name: string) => {
    const count = stats.endpoints.find((e) => e.name === name)?.num_requests;
    assert.equal(typeof count, "number", `$SRV.STATS.backup has no endpoint ${name}: ${JSON.stringify(stats)}`);
    return count!;
  };
  return { "restore-stream": of("restore-stream"), delete: of("delete") };
}

const stateOf = (tenants: TenantStatus[], name: string) => tenants.find((t) => t.name === name);

/** Waits until the tenant's service is up, and returns it. */
function servedService(served: ServedTenants, name: string) {
  return waitUntil(`tenant ${name} serving`, () => served.host.service(name), 30_000);
}

describe("tenants A and B on one server with accounts", () => {
  let server: NatsServer;
  let dir: string;
  let file: string;
  let served: ServedTenants;
  let logged: ReturnType<typeof capturingLogger>;
  let adminSvc: NatsConnection;
  let admin: NatsConnection;
  let a: NatsConnection;
  let b: NatsConnection;
  let eventsA: Collector;
  let eventsB: Collector;
  /** Contents of each account's ORDERS before anything ran. */
  let ordersA: ReturnType<typeof contents>;
  let ordersB: ReturnType<typeof contents>;
  let bBackup: string;
  let aBackup: Manifest;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "nats-backup-tenants-"));
    file = join(dir, "tenants.json");
    writeTenantsFile(file, "b-svc-secret");
    server = await NatsServer.start({ config: accountsConfig("b-svc-secret") });
    adminSvc = await server.connect({ user: "admin", pass: Passwords.admin });
    admin = await server.connect({ user: "admin", pass: Passwords.admin });
    a = await server.connect({ user: "a", pass: Passwords.a });
    b = await server.connect({ user: "b", pass: Passwords.b });
    await makeOrders(a, "A", 30);
    await makeOrders(b, "B", 17);
    ordersA = contents(await readStream(a, "ORDERS"));
    ordersB = contents(await readStream(b, "ORDERS"));
    eventsA = await Collector.start(a, "$BACKUP.status.>");
    eventsB = await Collector.start(b, "$BACKUP.status.>");
    logged = capturingLogger();
    served = await serveTenants({
      file,
      servers: server.url,
      log: logged.log,
      maxJobsTotal: 4,
      defaults: { shutdownGraceMs: 1000 },
      admin: adminSvc,
      backoffMs: { first: 200, max: 1000 },
    });
    await servedService(served, "A");
    await servedService(served, "B");
  });

  after(async () => {
    openAllGates();
    eventsA?.stop();
    eventsB?.stop();
    await served?.stop();
    for (const nc of [a, b, admin, adminSvc]) await nc?.close();
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test("each account has the backup service, registered with its tenant; $BACKUP.tenants says both serve", async () => {
    for (const [nc, tenant, bucket] of [
      [a, "A", "backups"],
      [b, "B", "b-backups"],
    ] as const) {
      const info = (await request<{ name: string; metadata: Record<string, string> }>(nc, "$SRV.INFO.backup")).body;
      assert.equal(info.name, "backup");
      assert.equal(info.metadata.tenant, tenant);
      assert.equal(info.metadata.bucket, bucket);
    }
    const tenants = await tenantsReply(admin);
    assert.deepEqual(
      tenants.map((t) => [t.name, t.state, t.bucket]),
      [
        ["A", "serving", "backups"],
        ["B", "serving", "b-backups"],
      ],
    );
  });

  test("A backs up and restores its ORDERS; B's ORDERS and backups are unchanged, and B's list shows none of A's", async () => {
    bBackup = (await backup(b, "ORDERS")).id;
    const bBucketBefore = await streamState(b, "OBJ_b-backups");

    const aRecord = await backup(a, "ORDERS");
    aBackup = aRecord.result as unknown as Manifest;
    assert.equal(aRecord.tenant, "A");
    assert.equal(aBackup.messages, 30);
    assert.deepEqual(await listIds(a), [aRecord.id]);

    await jetstreamManager(a).then((jsm) => jsm.streams.delete("ORDERS"));
    const restored = await request<JobRecord>(a, "$RESTORE.stream.ORDERS", { backup: aRecord.id, wait: true }, 60_000);
    assert.equal(restored.body.state, "completed", restored.raw);
    assert.equal(restored.body.tenant, "A");
    assert.deepEqual(contents(await readStream(a, "ORDERS")), ordersA);

    // B: its stream, its backup and its bucket as they were; A's backup is not in B's list.
    assert.deepEqual(contents(await readStream(b, "ORDERS")), ordersB);
    assert.deepEqual(await listIds(b), [bBackup]);
    assert.deepEqual(await streamState(b, "OBJ_b-backups"), bBucketBefore);
    // Each bucket is in its own account only.
    assert.equal(await streamState(a, "OBJ_b-backups"), null);
    assert.equal(await streamState(b, "OBJ_backups"), null);
  });

  test("B cannot inspect, restore or delete A's backup by its id: 404, and nothing is touched", async () => {
    const aBucketBefore = await streamState(a, "OBJ_backups");
    const bBucketBefore = await streamState(b, "OBJ_b-backups");
    const attempts: [string, unknown][] = [
      [`$BACKUP.info.${aBackup.id}`, ""],
      [`$BACKUP.job.${aBackup.id}`, ""],
      ["$RESTORE.stream.ORDERS", { backup: aBackup.id, wait: true }],
      ["$RESTORE.account", { backup: aBackup.id, wait: true }],
      [`$BACKUP.delete.${aBackup.id}`, ""],
    ];
    for (const [subject, body] of attempts) {
      const reply: Reply<ErrorBody> = await request<ErrorBody>(b, subject, body);
      assert.equal(reply.errorCode, 404, `${subject}: ${reply.raw}`);
      assert.match(reply.body.error.description, new RegExp(aBackup.id), `${subject}: ${reply.raw}`);
    }
    // A's backup is still listed, whole, in A.
    assert.deepEqual(await listIds(a), [aBackup.id]);
    const info = await request<Manifest>(a, `$BACKUP.info.${aBackup.id}`);
    assert.equal(info.errorCode, null, info.raw);
    assert.deepEqual(info.body, aBackup);
    assert.deepEqual(await streamState(a, "OBJ_backups"), aBucketBefore);
    // B's stream and bucket are as they were.
    assert.deepEqual(contents(await readStream(b, "ORDERS")), ordersB);
    assert.deepEqual(await streamState(b, "OBJ_b-backups"), bBucketBefore);
    assert.deepEqual(await listIds(b), [bBackup]);
  });

  test("a user of A denied $RESTORE.> by its NATS permissions can back up, but the server refuses its restore", async () => {
    const ro = await server.connect({ user: "a-ro", pass: Passwords.aRo });
    const statuses: Status[] = [];
    void (async () => {
      for await (const s of ro.status()) statuses.push(s);
    })();
    try {
      const own = await backup(ro, "ORDERS");
      assert.equal(own.tenant, "A");

      // Without ORDERS, a restore the service received would succeed: its absence afterwards shows none ran.
      await jetstreamManager(a).then((jsm) => jsm.streams.delete("ORDERS"));
      const restoresBefore = eventsA.bodies((e) => e.operation === "restore").length;
      const requestsBefore = await endpointRequests(a);
      // nats.js fails the request with a RequestError whose cause is the server's -ERR.
      const refusedBy = (subject: string) => (err: unknown) => {
        assert.ok(err instanceof RequestError, String(err));
        assert.ok(err.cause instanceof PermissionViolationError, String(err.cause));
        assert.equal(err.cause.operation, "publish");
        assert.equal(err.cause.subject, subject);
        return true;
      };
      await assert.rejects(request(ro, "$RESTORE.stream.ORDERS", { backup: own.id, wait: true }, 10_000), refusedBy("$RESTORE.stream.ORDERS"));
      await assert.rejects(request(ro, `$BACKUP.delete.${own.id}`, "", 10_000), refusedBy(`$BACKUP.delete.${own.id}`));
      // The server's refusal also reached the connection as an error status; the connection stays up.
      const refusals = () =>
        statuses.flatMap((s) => (s.type === "error" && s.error instanceof PermissionViolationError ? [s.error.message] : []));
      await waitUntil("both refusals on the connection's status", () => refusals().length >= 2, 10_000);
      assert.match(refusals()[0]!, /Permissions Violation for Publish to "?\$RESTORE\.stream\.ORDERS/);
      assert.match(refusals()[1]!, /Permissions Violation for Publish to "?\$BACKUP\.delete\./);
      assert.ok((await listIds(ro)).includes(own.id), "a-ro still lists, after the refusals");

      assert.equal(await streamState(a, "ORDERS"), null, "no restore ran");
      assert.equal(eventsA.bodies((e) => e.operation === "restore").length, restoresBefore, "no restore job was started");
      assert.deepEqual(await endpointRequests(a), requestsBefore, "the service received neither request");
      assert.ok((await listIds(a)).includes(own.id), "the backup a-ro could not delete is still there");

      // The same restore from a user allowed to send it puts ORDERS back.
      const restored = await request<JobRecord>(a, "$RESTORE.stream.ORDERS", { backup: own.id, wait: true }, 60_000);
      assert.equal(restored.body.state, "completed", restored.raw);
      assert.deepEqual(contents(await readStream(a, "ORDERS")), ordersA);
    } finally {
      await ro.close();
    }
  });

  test("every event, job record and log line of a job says which tenant it is for", async () => {
    const jobsA = new Set(eventsA.bodies().map((e) => e.id));
    const jobsB = new Set(eventsB.bodies().map((e) => e.id));
    assert.ok(jobsA.size >= 4, `A's events name ${jobsA.size} jobs`); // 2 backups, 2 restores
    assert.ok(jobsB.size >= 1, `B's events name ${jobsB.size} jobs`);
    for (const [events, tenant] of [
      [eventsA, "A"],
      [eventsB, "B"],
    ] as const) {
      for (const event of events.bodies()) assert.equal(event.tenant, tenant, JSON.stringify(event));
    }
    for (const [nc, ids, tenant] of [
      [a, jobsA, "A"],
      [b, jobsB, "B"],
    ] as const) {
      for (const id of ids) {
        const record = await request<JobRecord>(nc, `$BACKUP.job.${id}`);
        assert.equal(record.errorCode, null, record.raw);
        assert.equal(record.body.tenant, tenant, record.raw);
      }
    }
    const jobLines = logged.lines.filter((l) => typeof l.job === "string" && (jobsA.has(l.job) || jobsB.has(l.job)));
    assert.ok(jobLines.length >= 10, `${jobLines.length} log lines name a job`);
    for (const line of jobLines) assert.equal(line.tenant, jobsA.has(line.job as string) ? "A" : "B", JSON.stringify(line));
  });

  test("B revoked by a server reload is reported retrying while A is served; the file's new password brings B back", async () => {
    await server.reload(accountsConfig("b-svc-new-secret"));

    const revoked = await waitUntil(
      "B reported as retrying with an authorization error",
      async () => {
        const b = stateOf(await tenantsReply(admin), "B");
        return b?.state === "retrying" && /authorization/i.test(b.error ?? "") ? b : undefined;
      },
      30_000,
      100,
    );
    assert.ok(revoked.attempts >= 1, JSON.stringify(revoked));
    assert.ok(revoked.next_attempt, JSON.stringify(revoked));
    assert.equal(revoked.instance, undefined, "no service instance while retrying");
    assert.ok(
      logged.lines.some((l) => l.tenant === "B" && l.msg === "tenant not served; trying again"),
      "the log says B is not served",
    );
    // B's endpoints have nobody behind them now; A is served as before.
    await assert.rejects(request(b, "$BACKUP.list", "", 5_000), /no responders/i);
    assert.equal(stateOf(await tenantsReply(admin), "A")?.state, "serving");
    const aAgain = await backup(a, "ORDERS");
    assert.equal(aAgain.tenant, "A");

    // The tenants file gets B's new password: the watcher reloads it and B is served again.
    writeTenantsFile(file, "b-svc-new-secret");
    const back = await waitUntil(
      "B serving again",
      async () => {
        const b = stateOf(await tenantsReply(admin), "B");
        return b?.state === "serving" ? b : undefined;
      },
      30_000,
      100,
    );
    assert.equal(back.error, undefined);
    assert.equal(back.attempts, 0);
    assert.deepEqual(await listIds(b), [bBackup], "B's backups are where they were");
    assert.deepEqual(contents(await readStream(b, "ORDERS")), ordersB);
    assert.equal((await backup(b, "ORDERS")).tenant, "B");
  });
});

describe("fair sharing: a limit of one job for the process", () => {
  let server: NatsServer;
  let dir: string;
  let served: ServedTenants;
  let a: NatsConnection;
  let b: NatsConnection;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "nats-backup-tenants-fair-"));
    const file = join(dir, "tenants.json");
    writeTenantsFile(file, "b-svc-secret");
    server = await NatsServer.start({ config: accountsConfig("b-svc-secret") });
    a = await server.connect({ user: "a", pass: Passwords.a });
    b = await server.connect({ user: "b", pass: Passwords.b });
    for (const stream of ["S1", "S2", "S3", "S4"]) await makeOrders(a, "A", 5, stream);
    await makeOrders(b, "B", 5, "S1");
    served = await serveTenants({
      file,
      servers: server.url,
      log: capturingLogger().log,
      maxJobsTotal: 1,
      defaults: { shutdownGraceMs: 1000, maxJobs: 8 },
    });
  });

  after(async () => {
    openAllGates();
    await served?.stop();
    for (const nc of [a, b]) await nc?.close();
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test("A's four backups and then B's one: B's runs right after A's second, not after all of A's", async () => {
    const serviceA = await servedService(served, "A");
    await servedService(served, "B");
    // A's first job holds the only slot until the test lets it go on.
    const gate = new Gate();
    gateOnce(serviceA.catalogue, "putConfig", gate);

    const start = async (nc: NatsConnection, stream: string) => {
      const reply = await request<{ id: string; state: string }>(nc, `$BACKUP.stream.${stream}`);
      assert.equal(reply.errorCode, null, reply.raw);
      return reply.body.id;
    };
    const a1 = await start(a, "S1");
    await gate.entered;
    const a2 = await start(a, "S2");
    const a3 = await start(a, "S3");
    const a4 = await start(a, "S4");
    const b1 = await start(b, "S1");
    const names = new Map([
      [a1, "A1"],
      [a2, "A2"],
      [a3, "A3"],
      [a4, "A4"],
      [b1, "B1"],
    ]);

    // All but A1 were answered at once and wait for the slot, saying so.
    for (const [nc, id] of [
      [a, a2],
      [a, a3],
      [a, a4],
      [b, b1],
    ] as const) {
      const record = (await request<JobRecord>(nc, `$BACKUP.job.${id}`)).body;
      assert.equal(record.state, "running", JSON.stringify(record));
      assert.match(record.waiting ?? "", /job slot/, `${names.get(id)}: ${JSON.stringify(record)}`);
    }
    assert.equal((await request<JobRecord>(a, `$BACKUP.job.${a1}`)).body.waiting, undefined, "A1 runs");

    gate.open();
    const ended = async (nc: NatsConnection, id: string) =>
      waitUntil(
        `${names.get(id)} ended`,
        async () => {
          const record = (await request<JobRecord>(nc, `$BACKUP.job.${id}`)).body;
          return record.state !== "running" ? record : undefined;
        },
        60_000,
      );
    const records = await Promise.all([ended(a, a1), ended(a, a2), ended(a, a3), ended(a, a4), ended(b, b1)]);
    for (const r of records) assert.equal(r.state, "completed", JSON.stringify(r));
    const order = [...records].sort((x, y) => Date.parse(x.ended!) - Date.parse(y.ended!)).map((r) => names.get(r.id));
    // Round robin: after A1, A's turn (A2), then B's (B1), then A's again. First come, first served would be A1 A2 A3 A4 B1.
    assert.deepEqual(order, ["A1", "A2", "B1", "A3", "A4"]);
    // One job at a time, so no two end together and the order above is well defined.
    assert.equal(new Set(records.map((r) => r.ended)).size, 5, "five distinct end times");
  });
});

describe("a tenant of an operator-mode server, with a .creds file", () => {
  let server: NatsServer;
  let dir: string;
  let served: ServedTenants;
  let client: NatsConnection;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "nats-backup-tenants-op-"));
    const setup = await operatorSetup(dir);
    server = await NatsServer.start({ config: setup.config });
    await setup.userCreds("backup-service");
    const clientCreds = await setup.userCreds("client");
    // The creds path relative to the tenants file, as an operator would write it beside it.
    const file = join(dir, "tenants.yaml");
    writeFileSync(file, "tenants:\n  - name: APP\n    creds: backup-service.creds\n");
    client = await server.connect({ authenticator: credsAuthenticator(readFileSync(clientCreds)) });
    await makeOrders(client, "APP", 12);
    served = await serveTenants({ file, servers: server.url, log: capturingLogger().log, maxJobsTotal: 2, defaults: { shutdownGraceMs: 1000 } });
  });

  after(async () => {
    await served?.stop();
    await client?.close();
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test("backs up, lists and restores like the others, each record naming the tenant", async () => {
    await servedService(served, "APP");
    const info = (await request<{ metadata: Record<string, string> }>(client, "$SRV.INFO.backup")).body;
    assert.equal(info.metadata.tenant, "APP");
    const before = contents(await readStream(client, "ORDERS"));

    const record = await backup(client, "ORDERS");
    assert.equal(record.tenant, "APP");
    assert.deepEqual(await listIds(client), [record.id]);

    await jetstreamManager(client).then((jsm) => jsm.streams.delete("ORDERS"));
    const restored = await request<JobRecord>(client, "$RESTORE.stream.ORDERS", { wait: true }, 60_000);
    assert.equal(restored.body.state, "completed", restored.raw);
    assert.equal(restored.body.tenant, "APP");
    assert.deepEqual(contents(await readStream(client, "ORDERS")), before);
    assert.deepEqual(
      served.host.status().map((t) => [t.name, t.state]),
      [["APP", "serving"]],
    );
  });
});
