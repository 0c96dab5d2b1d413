/**
 * The permissions README.md ("Many accounts", **Permissions.**) gives a tenant's service user and
 * a read-only operator, on a real server: account A holds the service user with exactly those
 * permissions (with allow_responses, and once more without it), an admin user with all
 * permissions, and the operator. The service (its bulk data connections too) runs as the service
 * user; everything the admin asks of it must complete with no permission violation of the service
 * user in the server's log. The operator may look and back up; the server itself refuses its
 * restores, deletes and prunes, which never reach the service. And the README names exactly the
 * subjects granted here.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { errors, type NatsConnection } from "@nats-io/nats-core";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { NodeConnectionOptions } from "@nats-io/transport-node";
import type { AccountManifest, BackupService, JobRecord, StreamManifest } from "../src/mod.ts";
import type { AccountRestoreResult, DeleteReply, ListReply, PruneReply } from "../src/protocol/schemas.ts";
import { makeStream, readStream } from "./harness/fixtures.ts";
import { Collector, streamState, waitUntil } from "./harness/inspect.ts";
import { NatsServer } from "./harness/nats-server.ts";
import { readme } from "./harness/readme.ts";
import { request, startService, warningsLogger } from "./harness/service.ts";

const Bucket = "backups";

/** A user's permissions, as the server's configuration writes them. */
interface Permissions {
  publish: { allow: string[]; deny?: string[] };
  subscribe: { allow: string[] };
  allow_responses?: boolean;
}

/** README.md's service user, for the bucket `backups`: what it publishes and subscribes to, and it answers (allow_responses). */
const ServicePermissions: Permissions = {
  publish: {
    allow: [
      "$JS.API.>",
      "$JS.SNAPSHOT.RESTORE.>",
      `$O.${Bucket}.>`,
      `$KV.${Bucket}-jobs.>`,
      `$KV.${Bucket}-locks.>`,
      "$BACKUP.status.>",
      "$SRV.>",
    ],
  },
  subscribe: { allow: ["$BACKUP.>", "$RESTORE.>", "$SRV.>", `$O.${Bucket}.C.>`, "_INBOX.>"] },
  allow_responses: true,
};

/**
 * README.md's service user without allow_responses: its replies, and the acks and flow control
 * answers allow_responses also covers, need publish permissions of their own. (`$JS.FC.>` is used
 * only once the job records number tens of thousands, which this file does not make.)
 */
const ServicePermissionsWithoutResponses: Permissions = {
  publish: { allow: [...ServicePermissions.publish.allow, "_INBOX.>", "$JS.ACK.>", "$JS.SNAPSHOT.ACK.>", "$JS.FC.>"] },
  subscribe: ServicePermissions.subscribe,
};

/** README.md's read-only operator. */
const OperatorPermissions: Permissions = {
  publish: {
    allow: ["$BACKUP.list", "$BACKUP.info.>", "$BACKUP.job.>", "$BACKUP.stream.>", "$BACKUP.account"],
    deny: ["$RESTORE.>", "$BACKUP.delete.>", "$BACKUP.prune"],
  },
  subscribe: { allow: ["_INBOX.>", "$BACKUP.status.>"] },
};

const Users = {
  service: { user: "a-svc", pass: "a-svc-secret" },
  admin: { user: "a-admin", pass: "a-admin-secret" },
  operator: { user: "a-ro", pass: "a-ro-secret" },
};

function accountsConfig(servicePermissions: Permissions): string {
  const user = (u: { user: string; pass: string }, permissions?: Permissions) =>
    JSON.stringify({ user: u.user, password: u.pass, ...(permissions ? { permissions } : {}) });
  return `
accounts {
  A: {
    jetstream: enabled
    users: [
      ${user(Users.service, servicePermissions)}
      ${user(Users.admin)}
      ${user(Users.operator, OperatorPermissions)}
    ]
  }
}
`;
}

/**
 * The server's permission violations, as it logs them: `- Publish Violation - User "a-svc", Subject
 * "…"` (2.9), `- "A/user:a-svc" - Subscription Violation - Subject "…"` (2.10 on). The harness
 * keeps the last 20 kB of the log, so it is read every 20 ms and every violation line kept.
 */
class ViolationWatch {
  readonly #lines = new Set<string>();
  readonly #timer: NodeJS.Timeout;

  constructor(private readonly server: NatsServer) {
    this.#timer = setInterval(() => this.#scan(), 20);
  }

  #scan(): void {
    for (const line of this.server.log.split("\n")) if (/Violation/i.test(line)) this.#lines.add(line.trim());
  }

  /** Every violation line that names `user`, up to now. */
  of(user: string): string[] {
    this.#scan();
    return [...this.#lines].filter((line) => line.includes(`User "${user}"`) || line.includes(`/user:${user}"`));
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}

/** The permission errors nats.js reports on a connection's status. */
function permissionErrors(nc: NatsConnection): InstanceType<typeof errors.PermissionViolationError>[] {
  const seen: InstanceType<typeof errors.PermissionViolationError>[] = [];
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === "error" && s.error instanceof errors.PermissionViolationError) seen.push(s.error);
    }
  })();
  return seen;
}

/** How many requests the service got on each endpoint subject ("$RESTORE.stream.*"). */
async function requestsBySubject(svc: BackupService): Promise<Record<string, number>> {
  const stats = await svc.service.stats();
  return Object.fromEntries((stats.endpoints ?? []).map((e) => [e.subject, e.num_requests]));
}

/** 20 MiB of incompressible messages: the snapshot and the restore run in many chunks. */
async function makeBigStream(nc: NatsConnection, name: string): Promise<void> {
  await (await jetstreamManager(nc)).streams.add({ name, subjects: [`${name}.>`] });
  const js = jetstream(nc);
  for (let batch = 0; batch < 10; batch++) {
    await Promise.all(Array.from({ length: 16 }, (_, i) => js.publish(`${name}.${batch}.${i}`, randomBytes(128 * 1024))));
  }
}

const Variants = [
  { name: "with allow_responses", permissions: ServicePermissions },
  { name: "without allow_responses", permissions: ServicePermissionsWithoutResponses },
];

test("README.md's Permissions paragraph names exactly the subjects this file grants", () => {
  const paragraph = /^\*\*Permissions\.\*\*[\s\S]*?(?=\n\n)/m.exec(readme())?.[0];
  assert.ok(paragraph, "README.md has no **Permissions.** paragraph");
  const named = new Set([...paragraph.matchAll(/`([$_][^`\s]*)`/g)].map((m) => m[1]!.replaceAll("<bucket>", Bucket)));
  const granted = new Set(
    [...Variants.map((v) => v.permissions), OperatorPermissions].flatMap((p) => [
      ...p.publish.allow,
      ...(p.publish.deny ?? []),
      ...p.subscribe.allow,
    ]),
  );
  assert.deepEqual([...named].sort(), [...granted].sort());
});

for (const variant of Variants) {
  describe(`a tenant's service user ${variant.name} and a read-only operator, with README.md's permissions`, () => {
    let server: NatsServer;
    let watch: ViolationWatch;
    let serviceNc: NatsConnection;
    let admin: NatsConnection;
    let operator: NatsConnection;
    let svc: BackupService;
    let serviceErrors: ReturnType<typeof permissionErrors>;
    let operatorErrors: ReturnType<typeof permissionErrors>;
    const { logger, warnings } = warningsLogger();

    before(async () => {
      server = await NatsServer.start({ config: accountsConfig(variant.permissions) });
      watch = new ViolationWatch(server);
      const serviceOptions: NodeConnectionOptions = { servers: server.url, name: "a-svc", ...Users.service };
      serviceNc = await server.connect(serviceOptions);
      serviceErrors = permissionErrors(serviceNc);
      admin = await server.connect(Users.admin);
      operator = await server.connect(Users.operator);
      operatorErrors = permissionErrors(operator);
      // The data connections connect as the service user too.
      svc = await startService(serviceNc, { logger, connectionOptions: serviceOptions, sweep: { intervalMs: 3_600_000 } });
    });
    after(async () => {
      watch?.stop();
      await svc?.stop();
      await Promise.all([serviceNc, admin, operator].map((nc) => nc?.close()));
      await server?.stop();
    });

    /** Fails, printing them, when the server logged violations of the service user or nats.js reported some on its connection. */
    function assertServiceUserRefusedNothing(): void {
      const lines = watch.of(Users.service.user);
      assert.deepEqual(lines, [], `the server refused the service user:\n${lines.join("\n")}\nservice warnings:\n${warnings.join("\n")}`);
      assert.deepEqual(serviceErrors.map((e) => e.message), [], "nats.js reported permission errors on the service's connection");
    }

    test("as the admin: stream and account backups and restores, a 20 MiB stream, list, delete, prune and a sweep all complete", { timeout: 300_000 }, async () => {
      await makeStream(admin, "ORDERS", { messages: 600, deleteEvery: 50 });
      await makeBigStream(admin, "BIG");
      const ordersBefore = await readStream(admin, "ORDERS");
      const bigBefore = (await streamState(admin, "BIG"))!;
      assert.ok(bigBefore.bytes > 20 * 1024 * 1024, `BIG holds ${bigBefore.bytes} bytes`);

      const orders = await request<JobRecord>(admin, "$BACKUP.stream.ORDERS", { wait: true }, 120_000);
      assert.equal(orders.body.state, "completed", orders.raw);
      const ordersManifest = orders.body.result as StreamManifest;
      assert.equal(ordersManifest.messages, ordersBefore.length);

      const big = await request<JobRecord>(admin, "$BACKUP.stream.BIG", { wait: true }, 120_000);
      assert.equal(big.body.state, "completed", big.raw);
      const bigManifest = big.body.result as StreamManifest;
      assert.ok(bigManifest.chunks > 10, `the 20 MiB snapshot came in ${bigManifest.chunks} chunks`);
      assertServiceUserRefusedNothing();

      const jsm = await jetstreamManager(admin);
      await jsm.streams.delete("ORDERS");
      await jsm.streams.delete("BIG");
      const restoredOrders = await request<JobRecord>(admin, "$RESTORE.stream.ORDERS", { wait: true }, 120_000);
      assert.equal(restoredOrders.body.state, "completed", restoredOrders.raw);
      assert.deepEqual(await readStream(admin, "ORDERS"), ordersBefore);
      const restoredBig = await request<JobRecord>(admin, "$RESTORE.stream.BIG", { wait: true }, 120_000);
      assert.equal(restoredBig.body.state, "completed", restoredBig.raw);
      assert.deepEqual(await streamState(admin, "BIG"), bigBefore);
      assertServiceUserRefusedNothing();

      const account = await request<JobRecord>(admin, "$BACKUP.account", { data: true, wait: true }, 180_000);
      assert.equal(account.body.state, "completed", account.raw);
      const accountManifest = account.body.result as AccountManifest;
      assert.deepEqual([...accountManifest.streams].sort(), ["BIG", "ORDERS"]);
      assert.equal(accountManifest.streams_with_data, 2);
      await jsm.streams.delete("ORDERS");
      await jsm.streams.delete("BIG");
      const restoredAccount = await request<JobRecord>(admin, "$RESTORE.account", { wait: true }, 180_000);
      assert.equal(restoredAccount.body.state, "completed", restoredAccount.raw);
      const accountResult = restoredAccount.body.result as AccountRestoreResult;
      assert.deepEqual(accountResult.streams.map((s) => [s.stream, s.action]).sort(), [["BIG", "restored"], ["ORDERS", "restored"]]);
      assert.deepEqual(await readStream(admin, "ORDERS"), ordersBefore);
      assert.deepEqual(await streamState(admin, "BIG"), bigBefore);
      assertServiceUserRefusedNothing();

      const list = await request<ListReply>(admin, "$BACKUP.list");
      assert.equal(list.errorCode, null, list.raw);
      assert.deepEqual(list.body.backups.map((b) => b.id).sort(), [ordersManifest.id, bigManifest.id, accountManifest.id].sort());
      const deleted = await request<DeleteReply>(admin, `$BACKUP.delete.${bigManifest.id}`);
      assert.equal(deleted.errorCode, null, deleted.raw);
      assert.equal(deleted.body.deleted, true);

      // A second backup of ORDERS, so that keep_last 1 has one to remove.
      const again = await request<JobRecord>(admin, "$BACKUP.stream.ORDERS", { wait: true }, 120_000);
      assert.equal(again.body.state, "completed", again.raw);
      const pruned = await request<PruneReply>(admin, "$BACKUP.prune", { stream: "ORDERS", keep_last: 1 });
      assert.equal(pruned.errorCode, null, pruned.raw);
      assert.deepEqual(pruned.body.streams.flatMap((s) => s.removed.map((r) => r.id)), [ordersManifest.id]);
      const listed = await request<ListReply>(admin, "$BACKUP.list");
      assert.deepEqual(listed.body.backups.map((b) => b.id).sort(), [again.body.id, accountManifest.id].sort());

      // The sweeper: job records' keys, the instances' $SRV.PING, the bucket's uploads.
      await svc.sweeper.sweep();
      assertServiceUserRefusedNothing();
    });

    test("as the read-only operator: list, info, job and backups work; the server refuses restore, delete and prune", { timeout: 300_000 }, async () => {
      const events = await Collector.start(operator, "$BACKUP.status.>");
      const list = await request<ListReply>(operator, "$BACKUP.list");
      assert.equal(list.errorCode, null, list.raw);
      const newest = list.body.backups[0]!;
      const info = await request<StreamManifest>(operator, `$BACKUP.info.${newest.id}`);
      assert.equal(info.errorCode, null, info.raw);
      assert.equal(info.body.id, newest.id);

      const backup = await request<JobRecord>(operator, "$BACKUP.stream.ORDERS", { wait: true }, 120_000);
      assert.equal(backup.body.state, "completed", backup.raw);
      const job = await request<JobRecord>(operator, `$BACKUP.job.${backup.body.id}`);
      assert.equal(job.errorCode, null, job.raw);
      assert.equal(job.body.state, "completed");
      // Its status events reach the operator: it may subscribe to them.
      await events.waitFor("the operator's backup's last status event", (r) => r.id === backup.body.id && r.state === "completed", 30_000);
      events.stop();
      const account = await request<JobRecord>(operator, "$BACKUP.account", { wait: true }, 120_000);
      assert.equal(account.body.state, "completed", account.raw);

      // What a restore, a delete or a prune would change: ORDERS is gone, and ORDERS has two backups (keep_last 1 would remove one).
      await (await jetstreamManager(admin)).streams.delete("ORDERS");
      const backupsBefore = (await request<ListReply>(admin, "$BACKUP.list")).body.backups.map((b) => b.id);
      assert.equal((await request<ListReply>(admin, "$BACKUP.list", { stream: "ORDERS" })).body.backups.length, 2);
      const requestsBefore = await requestsBySubject(svc);

      const refused: [string, unknown][] = [
        ["$RESTORE.stream.ORDERS", { wait: true }],
        ["$RESTORE.account", { wait: true }],
        [`$BACKUP.delete.${backup.body.id}`, ""],
        ["$BACKUP.prune", { stream: "ORDERS", keep_last: 1 }],
      ];
      for (const [subject, body] of refused) {
        // nats.js fails the request at once with the server's -ERR for its publish (no timeout).
        await assert.rejects(request(operator, subject, body, 30_000), (err: unknown) => {
          assert.ok(err instanceof errors.RequestError, `${subject}: ${String(err)}`);
          const cause = err.cause;
          assert.ok(cause instanceof errors.PermissionViolationError, `${subject}: ${String(cause)}`);
          assert.equal(cause.operation, "publish");
          assert.equal(cause.subject, subject);
          return true;
        });
      }
      const subjects = refused.map(([subject]) => subject);
      // The same errors on the connection's status, and the server's own word in its log.
      await waitUntil("nats.js to report the refusals on the operator's connection", () => operatorErrors.length >= subjects.length, 10_000);
      assert.deepEqual(operatorErrors.map((e) => e.subject), subjects);
      const logged = await waitUntil(
        "the server to log the operator's violations",
        () => {
          const lines = watch.of(Users.operator.user);
          return lines.length >= subjects.length && lines;
        },
        10_000,
      );
      assert.deepEqual(
        logged.map((line) => /Publish Violation.*Subject "([^"]+)"/.exec(line)?.[1]),
        subjects,
        logged.join("\n"),
      );

      // None reached the service, and nothing was restored or removed.
      assert.deepEqual(await requestsBySubject(svc), requestsBefore);
      assert.equal(await streamState(admin, "ORDERS"), null);
      assert.deepEqual((await request<ListReply>(admin, "$BACKUP.list")).body.backups.map((b) => b.id), backupsBefore);
      assertServiceUserRefusedNothing();
    });
  });
}
