/**
 * Account backups as one unit: listed by scope, kept or removed whole by retention (the service's
 * default policy, one group beside the streams' own), deleted whole, and never a stream backup's
 * retention: a stream's backups and an account backup of it are counted apart.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { NatsConnection } from "@nats-io/nats-core";
import type { JobRecord } from "../src/mod.ts";
import type { AccountManifest, PruneReply } from "../src/protocol/schemas.ts";
import { makeStream } from "./harness/fixtures.ts";
import { bucketView } from "./harness/proc-checks.ts";
import { request, startRig, type ServiceRig } from "./harness/service.ts";

describe("account backups are one unit", () => {
  let rig: ServiceRig;
  let nc: NatsConnection;
  const accountBackups: string[] = [];
  const streamBackups: string[] = [];

  before(async () => {
    rig = await startRig({ retention: { keep_last: 1 }, sweep: { intervalMs: 3_600_000 } });
    nc = rig.nc;
    await makeStream(nc, "ORDERS", { messages: 30 });
    await makeStream(nc, "EVENTS", { messages: 40 });
    for (let i = 0; i < 2; i++) {
      const account = await request<JobRecord>(nc, "$BACKUP.account", { data: true, wait: true }, 60_000);
      assert.equal(account.errorCode, null, account.raw);
      assert.equal(account.body.state, "completed");
      accountBackups.push(account.body.id);
      const stream = await request<JobRecord>(nc, "$BACKUP.stream.ORDERS", { wait: true }, 60_000);
      assert.equal(stream.errorCode, null, stream.raw);
      streamBackups.push(stream.body.id);
    }
  });
  after(async () => {
    await rig?.stop();
  });

  test("$BACKUP.list filters by scope, and a stream filter shows only that stream's stream backups", async () => {
    const byScope = async (body: Record<string, unknown>) =>
      (await request<{ backups: { id: string; scope: string }[] }>(nc, "$BACKUP.list", body)).body.backups.map((b) => `${b.scope} ${b.id}`);
    assert.deepEqual(await byScope({ scope: "account" }), [...accountBackups].reverse().map((id) => `account ${id}`));
    assert.deepEqual(await byScope({ scope: "stream" }), [...streamBackups].reverse().map((id) => `stream ${id}`));
    assert.deepEqual(await byScope({ stream: "ORDERS" }), [...streamBackups].reverse().map((id) => `stream ${id}`));
    assert.equal((await byScope({})).length, 4);
    const info = await request<AccountManifest>(nc, `$BACKUP.info.${accountBackups[0]}`);
    assert.deepEqual(info.body.streams, ["EVENTS", "ORDERS"]);
    assert.equal(info.body.streams_with_data, 2);
  });

  test("retention keeps the newest account backup and removes the older one whole; stream backups are their own group", async () => {
    const dry = await request<PruneReply>(nc, "$BACKUP.prune", { dry_run: true });
    const groups = dry.body.streams.map((g) => `${g.scope} ${g.stream ?? ""} ${g.removed.map((r) => r.id).join(",")}`).sort();
    assert.deepEqual(groups, [`account  ${accountBackups[0]}`, `stream ORDERS ${streamBackups[0]}`]);

    const older = accountBackups[0]!;
    const before = (await bucketView(nc)).objects.filter((o) => o.name.startsWith(`${older}/`)).length;
    assert.ok(before >= 7, `the older account backup's objects: ${before}`);
    const report = await rig.svc.sweeper.sweep();
    assert.ok(report.retention, "the retention pass ran");
    const view = await bucketView(nc);
    assert.deepEqual(view.objects.filter((o) => o.name.startsWith(`${older}/`)).map((o) => o.name), [], "nothing of the older account backup is left");
    assert.deepEqual(view.unreferenced, [], "no chunks left behind");
    assert.ok(view.objects.some((o) => o.name === `${accountBackups[1]}/account.json`), "the newest account backup stays");
    const listed = await request<{ backups: { id: string }[] }>(nc, "$BACKUP.list", {});
    assert.deepEqual(listed.body.backups.map((b) => b.id).sort(), [accountBackups[1], streamBackups[1]].sort());
  });

  test("$BACKUP.delete removes an account backup whole", async () => {
    const id = accountBackups[1]!;
    const count = (await bucketView(nc)).objects.filter((o) => o.name.startsWith(`${id}/`)).length;
    const deleted = await request<{ objects: number }>(nc, `$BACKUP.delete.${id}`);
    assert.equal(deleted.errorCode, null, deleted.raw);
    assert.equal(deleted.body.objects, count);
    const view = await bucketView(nc);
    assert.deepEqual(view.objects.filter((o) => o.name.startsWith(`${id}/`)), []);
    assert.deepEqual(view.unreferenced, []);
    assert.equal((await request(nc, `$BACKUP.info.${id}`)).errorCode, 404);
  });
});
