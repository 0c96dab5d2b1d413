import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { nuid, type NatsConnection } from "@nats-io/nats-core";
import { jetstream } from "@nats-io/jetstream";
import { Catalogue, manifestOf } from "../src/catalogue/catalogue.ts";
import { ManifestIndex, type ManifestOf } from "../src/catalogue/manifest-index.ts";
import { purgeChunks } from "../src/catalogue/bucket-stream.ts";
import { chunkSubject } from "../src/catalogue/object-format.ts";
import { newId } from "../src/jobs/ids.ts";
import type { StreamManifest, JobRecord } from "../src/mod.ts";
import { makeStream } from "./harness/fixtures.ts";
import { waitUntil } from "./harness/inspect.ts";
import { request, startRig, warningsLogger, type ServiceRig } from "./harness/service.ts";
import { writeManifest } from "./harness/manifests.ts";
import { MetaChanged } from "../src/catalogue/object-writes.ts";

const listed = async (nc: NatsConnection, timeoutMs = 10_000): Promise<string[]> => {
  const reply = await request<{ backups: StreamManifest[] }>(nc, "$BACKUP.list", {}, timeoutMs);
  assert.equal(reply.errorCode, null, reply.raw);
  return reply.body.backups.map((b) => b.id);
};

/**
 * `$BACKUP.list` answers from manifests kept in memory, after one request that tells how far they
 * must be: whoever wrote a manifest, it is listed once stored; and the index follows through a restart.
 */
describe("listing from the manifest index", () => {
  let rig: ServiceRig;
  let otherNc: NatsConnection;
  let other: Catalogue;
  let first: StreamManifest;

  before(async () => {
    // The sweeper's requests would pass the request counts below: it sweeps once, at start, only.
    rig = await startRig({ sweep: { intervalMs: 3_600_000 } });
    await rig.svc.sweeper.sweep();
    await makeStream(rig.nc, "LISTED", { messages: 50, consumers: false });
    const reply = await request<JobRecord>(rig.nc, "$BACKUP.stream.LISTED", { wait: true }, 60_000);
    assert.equal(reply.errorCode, null, reply.raw);
    first = reply.body.result as StreamManifest;
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

  test("a list asks the server one thing, however many backups: the bucket's last metadata message", async () => {
    // Every JetStream API request in the account passes this subscription.
    const seen: string[] = [];
    const api = otherNc.subscribe("$JS.API.>", { callback: (_, m) => void seen.push(m.subject) });
    await otherNc.flush();
    for (let i = 0; i < 5; i++) assert.deepEqual(await listed(rig.nc), [first.id]);
    await otherNc.flush();
    api.unsubscribe();
    // (Pull requests of the consumers that follow the metadata may pass too.)
    const requests = seen.filter((s) => !s.startsWith("$JS.API.CONSUMER.MSG.NEXT."));
    assert.equal(requests.length, 5, JSON.stringify(requests));
    for (const subject of requests) assert.equal(subject, "$JS.API.DIRECT.GET.OBJ_backups");
  });

  test("a list still asks one thing when the bucket's last messages are chunks, not metadata", async () => {
    // An upload under way: chunks stored after the last manifest. A 2.9 consumer filtered on the
    // metadata moves its delivered stream sequence past them, though it delivers none of them.
    const js = jetstream(otherNc);
    const uploadNuid = nuid.next();
    for (let i = 0; i < 200; i++) await js.publish(chunkSubject("backups", uploadNuid), new Uint8Array(1024));
    const fresh = await Catalogue.open(otherNc, { bucket: "backups", index: true });
    try {
      const seen: string[] = [];
      const api = otherNc.subscribe("$JS.API.>", { callback: (_, m) => void seen.push(m.subject) });
      await otherNc.flush();
      for (let i = 0; i < 3; i++) assert.deepEqual((await fresh.list()).map((m) => m.id), [first.id]);
      await otherNc.flush();
      api.unsubscribe();
      // (The service's own requests on its job records pass too.)
      const onBucket = seen.filter((s) => s.includes(".OBJ_backups") && !s.startsWith("$JS.API.CONSUMER.MSG.NEXT."));
      assert.equal(onBucket.length, 3, `each list is answered from the index, not read from the bucket: ${JSON.stringify(onBucket)}`);
      for (const subject of onBucket) assert.equal(subject, "$JS.API.DIRECT.GET.OBJ_backups");
    } finally {
      fresh.close();
      await purgeChunks(otherNc, "backups", uploadNuid);
    }
  });

  test("another writer's manifest and its deletion are listed as soon as they are stored", async () => {
    for (let round = 0; round < 5; round++) {
      const copy: StreamManifest = { ...first, id: newId() };
      await writeManifest(otherNc, copy);
      assert.deepEqual(await listed(rig.nc), [copy.id, first.id], `round ${round}: the service lists the other writer's manifest at once`);
      assert.deepEqual((await other.list()).map((m) => m.id), [copy.id, first.id]);
      assert.equal((await other.latest("LISTED")).id, copy.id);
      await other.delete(copy.id);
      assert.deepEqual(await listed(rig.nc), [first.id], `round ${round}: the service drops the deleted backup at once`);
    }
  });

  test("after a server restart, lists every manifest stored", async () => {
    await rig.server.restart();
    await waitUntil("the service to answer again", async () => (await listed(rig.nc, 1_000).catch(() => null)) !== null, 30_000, 200);
    const later: StreamManifest = { ...first, id: newId() };
    await waitUntil("a manifest written after the restart", async () => writeManifest(otherNc, later).then(() => true, (err: unknown) => err instanceof MetaChanged), 30_000, 200);
    assert.deepEqual(await listed(rig.nc), [later.id, first.id]);
    // And the index serves lists again (one request each, see above) once its consumer is back.
    await waitUntil(
      "lists answered from the index again",
      async () => {
        const seen: string[] = [];
        const api = otherNc.subscribe("$JS.API.>", { callback: (_, m) => void seen.push(m.subject) });
        await otherNc.flush();
        assert.deepEqual(await listed(rig.nc), [later.id, first.id]);
        await otherNc.flush();
        api.unsubscribe();
        return seen.filter((s) => !s.startsWith("$JS.API.CONSUMER.MSG.NEXT.")).every((s) => s === "$JS.API.DIRECT.GET.OBJ_backups");
      },
      20_000,
      200,
    );
  });
});

describe("an index whose consumer loop fails", () => {
  let rig: ServiceRig;
  let sample: StreamManifest;

  before(async () => {
    rig = await startRig({ sweep: { intervalMs: 3_600_000 } });
    await makeStream(rig.nc, "FAILS", { messages: 5, consumers: false });
    const reply = await request<JobRecord>(rig.nc, "$BACKUP.stream.FAILS", { wait: true }, 60_000);
    assert.equal(reply.errorCode, null, reply.raw);
    sample = reply.body.result as StreamManifest;
  });
  after(async () => {
    await rig?.stop();
  });

  test("logs the failure, answers null while it is rebuilt (callers read the bucket), and is rebuilt whole", async () => {
    const { logger, warnings } = warningsLogger();
    // A hook the test arms: reading the next manifest throws inside the index's consumer loop.
    let armed = false;
    const failingOnce: ManifestOf = (meta) => {
      if (armed && meta.name.endsWith("/manifest.json")) {
        armed = false;
        throw new Error("injected failure while indexing");
      }
      return manifestOf(meta);
    };
    const index = await ManifestIndex.start(rig.nc, "backups", failingOnce, logger);
    try {
      const base = sample;
      assert.deepEqual((await index.manifests())?.map((m) => m.id), [base.id]);

      armed = true;
      const later: StreamManifest = { ...base, id: newId() };
      await writeManifest(rig.nc, later);
      await waitUntil("the failure to be logged", () => warnings.includes("the manifest index failed; lists read the bucket until it is rebuilt"), 10_000, 20);
      await waitUntil("the rebuilt index to answer", async () => (await index.manifests()) !== null, 10_000, 50);
      assert.deepEqual((await index.manifests())?.map((m) => m.id).sort(), [base.id, later.id].sort());
    } finally {
      index.stop();
    }
  });
});
