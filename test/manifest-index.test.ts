import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { NatsConnection } from "@nats-io/nats-core";
import { Catalogue } from "../src/catalogue/catalogue.ts";
import { newId } from "../src/jobs/ids.ts";
import type { BackupManifest, JobRecord } from "../src/mod.ts";
import { makeStream } from "./harness/fixtures.ts";
import { waitUntil } from "./harness/inspect.ts";
import { request, startRig, type ServiceRig } from "./harness/service.ts";

const listed = async (nc: NatsConnection, timeoutMs = 10_000): Promise<string[]> => {
  const reply = await request<{ backups: BackupManifest[] }>(nc, "$BACKUP.list", {}, timeoutMs);
  assert.equal(reply.errorCode, null, reply.raw);
  return reply.body.backups.map((b) => b.id);
};

/**
 * `$BACKUP.list` answers from manifests kept in memory. The instance's own writes are listed when
 * its reply comes; another writer's a moment later; and the index catches up after a restart.
 */
describe("listing from the manifest index", () => {
  let rig: ServiceRig;
  let otherNc: NatsConnection;
  let other: Catalogue;
  let first: BackupManifest;

  before(async () => {
    rig = await startRig();
    await makeStream(rig.nc, "LISTED", { messages: 50, consumers: false });
    const reply = await request<JobRecord>(rig.nc, "$BACKUP.stream.LISTED", { wait: true }, 60_000);
    assert.equal(reply.errorCode, null, reply.raw);
    first = reply.body.result as BackupManifest;
    otherNc = await rig.server.connect({ maxReconnectAttempts: -1, reconnectTimeWait: 100 });
    other = await Catalogue.open(otherNc, { bucket: "backups", index: true });
  });
  after(async () => {
    other?.close();
    await otherNc?.close();
    await rig?.stop();
  });

  test("a backup is listed as soon as its job replies", async () => {
    assert.deepEqual(await listed(rig.nc), [first.id]);
    assert.deepEqual((await other.list()).map((m) => m.id), [first.id]);
  });

  test("once caught up, a list asks the server nothing", async () => {
    // Every JetStream API request in the account passes this subscription.
    const api = otherNc.subscribe("$JS.API.>");
    await otherNc.flush();
    await waitUntil(
      "lists that make no JetStream API request",
      async () => {
        const before = api.getReceived();
        for (let i = 0; i < 5; i++) assert.deepEqual(await listed(rig.nc), [first.id]);
        await otherNc.flush();
        return api.getReceived() === before;
      },
      5_000,
      50,
    );
    api.unsubscribe();
  });

  test("another writer's manifest and its deletion show a moment later; the writer sees its own at once", async () => {
    const copy: BackupManifest = { ...first, id: newId() };
    await other.commit(copy);
    assert.deepEqual((await other.list()).map((m) => m.id), [copy.id, first.id], "the writer lists its own manifest at once");
    assert.equal((await other.latest("LISTED")).id, copy.id, "latest reads the bucket");
    await waitUntil("the service to list the copy", async () => (await listed(rig.nc)).includes(copy.id), 5_000, 20);

    await other.delete(copy.id);
    assert.deepEqual((await other.list()).map((m) => m.id), [first.id], "the writer stops listing a deleted backup at once");
    await waitUntil("the service to drop the copy", async () => !(await listed(rig.nc)).includes(copy.id), 5_000, 20);
  });

  test("catches up with what was written while the server was away", async () => {
    await rig.server.restart();
    await waitUntil("the service to answer again", async () => (await listed(rig.nc, 1_000).catch(() => null)) !== null, 30_000, 200);
    const later: BackupManifest = { ...first, id: newId() };
    await waitUntil("a commit after the restart", async () => other.commit(later).then(() => true, () => false), 30_000, 200);
    const ids = await waitUntil(
      "the service to list the manifest written after the restart",
      async () => {
        const ids = await listed(rig.nc);
        return ids.includes(later.id) ? ids : false;
      },
      10_000,
      50,
    );
    assert.deepEqual(ids, [later.id, first.id]);
  });
});
