/**
 * Faults and races around a backup's commit, the sweeper and the locks, each made to happen at
 * the moment that matters by a gate the test holds (a method of the service's catalogue wrapped
 * to wait, or to lose a write's answer), never by a sleep.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { NatsConnection } from "@nats-io/nats-core";
import { jetstream, jetstreamManager, type JetStreamClient } from "@nats-io/jetstream";
import { objectNames } from "../src/catalogue/catalogue.ts";
import { nameOfMetaSubject } from "../src/catalogue/object-format.ts";
import { deleteObject, readMeta } from "../src/catalogue/object-writes.ts";
import type { StreamManifest, BackupService, JobRecord, JobStarted } from "../src/mod.ts";
import type { SweepReport } from "../src/jobs/sweeper.ts";
import { makeStream } from "./harness/fixtures.ts";
import { Collector } from "./harness/inspect.ts";
import { NatsServer } from "./harness/nats-server.ts";
import { bucketView, fingerprint } from "./harness/proc-checks.ts";
import { request, startService } from "./harness/service.ts";
import { Gate, gateOnce, openAllGates } from "./harness/gate.ts";

/** Makes the next publish of a manifest's metadata fail as if its answer was lost, before or after it is stored. */
function loseManifestWriteOnce(js: JetStreamClient, bucket: string, stored: boolean): void {
  const original = js.publish.bind(js);
  let used = false;
  js.publish = async (subject, payload, opts) => {
    const isManifest = subject.startsWith(`$O.${bucket}.M.`) && nameOfMetaSubject(bucket, subject).endsWith("/manifest.json");
    if (used || !isManifest) return original(subject, payload, opts);
    used = true;
    if (stored) await original(subject, payload, opts);
    throw Object.assign(new Error("timeout"), { name: "TimeoutError" });
  };
}

const terminal = (r: JobRecord) => r.state !== "running";

describe("commits, sweeps and locks under faults", () => {
  let server: NatsServer;
  let nc: NatsConnection;
  const serviceNcs: NatsConnection[] = [];
  const services: BackupService[] = [];

  /** A service instance, and the report of the sweep it ran at its start (none runs unasked after it). */
  async function addInstance(sweep: Record<string, number>): Promise<{ svc: BackupService; firstSweep: SweepReport }> {
    const snc = await server.connect();
    serviceNcs.push(snc);
    const svc = await startService(snc, { sweep: { intervalMs: 3_600_000, ...sweep } });
    const firstSweep = await svc.sweeper.sweep(); // (shares the sweep it started with)
    services.push(svc);
    return { svc, firstSweep };
  }

  let svc: BackupService;

  before(async () => {
    server = await NatsServer.start();
    nc = await server.connect();
    await makeStream(nc, "ORDERS", { messages: 300 });
    // Every running job counts as stale to it, so that what keeps it off a job is the rule under test.
    ({ svc } = await addInstance({ staleJobMs: 0, silentJobMs: 0 }));
  });
  after(async () => {
    openAllGates();
    for (const s of services) await s.stop();
    for (const snc of serviceNcs) await snc.close();
    await nc?.close();
    await server?.stop();
  });

  async function backup(): Promise<StreamManifest> {
    const reply = await request<JobRecord>(nc, "$BACKUP.stream.ORDERS", { wait: true }, 60_000);
    assert.equal(reply.errorCode, null, reply.raw);
    return reply.body.result as StreamManifest;
  }

  async function listedIds(): Promise<string[]> {
    const reply = await request<{ backups: StreamManifest[] }>(nc, "$BACKUP.list");
    assert.equal(reply.errorCode, null, reply.raw);
    return reply.body.backups.map((b) => b.id);
  }

  test("a commit whose answer was lost after the manifest was stored completes: listed and restorable", async () => {
    const original = await fingerprint(nc, "ORDERS");
    loseManifestWriteOnce(svc.catalogue.js, svc.bucket, true);
    const manifest = await backup();
    assert.ok((await listedIds()).includes(manifest.id));
    await jetstreamManager(nc).then((jsm) => jsm.streams.delete("ORDERS"));
    const restored = await request<JobRecord>(nc, "$RESTORE.stream.ORDERS", { backup: manifest.id, wait: true }, 60_000);
    assert.equal(restored.errorCode, null, restored.raw);
    assert.deepEqual(await fingerprint(nc, "ORDERS"), original);
  });

  test("a commit whose manifest was never stored fails, leaves no part behind, and no manifest can land later", async () => {
    loseManifestWriteOnce(svc.catalogue.js, svc.bucket, false);
    const reply = await request<JobRecord>(nc, "$BACKUP.stream.ORDERS", { wait: true }, 60_000);
    assert.equal(reply.errorCode, 503, reply.raw);
    const id = reply.job!;
    assert.ok(!(await listedIds()).includes(id));
    const view = await bucketView(nc);
    assert.deepEqual(view.objects.filter((o) => o.name.startsWith(id)).map((o) => o.name), []);
    // The lost manifest's own chunk alone is left, for the sweeper (it may not be purged: had it landed, it would be the manifest's).
    assert.deepEqual(view.unreferenced.map((nuid) => view.chunks.get(nuid)), [1]);
    const settled = await readMeta(nc, svc.bucket, objectNames(id).manifest);
    assert.equal(settled?.meta.deleted, true, "a deleted record holds the manifest's name");
  });

  test("a backup whose backup.json went missing before its manifest is refused, not listed", async () => {
    const gate = new Gate();
    gateOnce(svc.catalogue, "commit", gate);
    const started = await request<JobStarted>(nc, "$BACKUP.stream.ORDERS", {});
    assert.equal(started.errorCode, null, started.raw);
    const id = started.body.id;
    await gate.entered;
    try {
      await deleteObject(nc, svc.catalogue.js, svc.bucket, objectNames(id).config);
    } finally {
      gate.open();
    }
    const ended = await svc.runner.running(id)!.done;
    assert.equal(ended.state, "failed");
    assert.equal(ended.error?.description, `backup ${id} is not whole: ${id}/backup.json is missing (bucket ${svc.bucket})`);
    assert.ok(!(await listedIds()).includes(id));
    const view = await bucketView(nc);
    assert.deepEqual(view.objects.filter((o) => o.name.startsWith(id)).map((o) => o.name), []);
  });

  test("the sweeper never takes over a job its own runner holds, however stale its record", async () => {
    const gate = new Gate();
    gateOnce(svc.catalogue, "commit", gate);
    const started = await request<JobStarted>(nc, "$BACKUP.stream.ORDERS", {});
    assert.equal(started.errorCode, null, started.raw);
    const events = await Collector.start(nc, started.body.status_subject);
    await gate.entered;
    const report = await svc.sweeper.sweep();
    assert.deepEqual(report.abandonedJobs, []);
    gate.open();
    const done = await svc.runner.running(started.body.id)!.done;
    assert.equal(done.state, "completed", JSON.stringify(done.error));
    await events.waitFor("the terminal event", terminal, 10_000);
    await nc.flush();
    assert.equal(events.bodies(terminal).length, 1);
    events.stop();
    assert.ok((await listedIds()).includes(started.body.id));
  });

  test("a job another instance's sweeper took over stops: one terminal event, nothing committed, nothing left", async () => {
    const gate = new Gate();
    gateOnce(svc.catalogue, "commit", gate);
    const started = await request<JobStarted>(nc, "$BACKUP.stream.ORDERS", {});
    assert.equal(started.errorCode, null, started.raw);
    const id = started.body.id;
    const events = await Collector.start(nc, started.body.status_subject);
    const job = svc.runner.running(id);
    assert.ok(job, "the job runs on the first instance, the only one yet");
    await gate.entered;
    // Another instance only now, so that the request above could not go to it; its first sweep takes the job over.
    const { svc: other, firstSweep: report } = await addInstance({ staleJobMs: 0, silentJobMs: 0 });
    assert.deepEqual(report.abandonedJobs, [id]);
    gate.open();
    const ended = await job.done;
    assert.equal(ended.state, "failed");
    assert.match(ended.error?.description ?? "", /was abandoned/);
    await events.waitFor("the terminal event", terminal, 10_000);
    await nc.flush();
    const ends = events.bodies(terminal);
    assert.equal(ends.length, 1, JSON.stringify(ends));
    assert.match(ends[0]?.error?.description ?? "", /was abandoned/, "the sweeper's event");
    events.stop();
    assert.ok(!(await listedIds()).includes(id));
    const record = await request<JobRecord>(nc, `$BACKUP.job.${id}`);
    assert.equal(record.body.state, "failed");
    const view = await bucketView(nc);
    assert.deepEqual(view.objects.filter((o) => o.name.startsWith(id)).map((o) => o.name), []);
    await other.stop();
  });

  test("deleting a backup that a restore reads is refused with 409 naming the restore", async () => {
    const manifest = await backup();
    await jetstreamManager(nc).then((jsm) => jsm.streams.delete("ORDERS"));
    const gate = new Gate();
    gateOnce(svc.catalogue, "deliverArchive", gate);
    const restore = await request<JobStarted>(nc, "$RESTORE.stream.ORDERS", { backup: manifest.id });
    assert.equal(restore.errorCode, null, restore.raw);
    await gate.entered;
    const refused = await request(nc, `$BACKUP.delete.${manifest.id}`);
    assert.equal(refused.errorCode, 409, refused.raw);
    assert.equal(refused.errorHeader, `backup ${manifest.id} is in use: restore job ${restore.body.id} is running (instance ${svc.id})`);
    gate.open();
    const done = await svc.runner.running(restore.body.id)!.done;
    assert.equal(done.state, "completed", JSON.stringify(done.error));
    const deleted = await request(nc, `$BACKUP.delete.${manifest.id}`);
    assert.equal(deleted.errorCode, null, deleted.raw);
  });

  test("a failed restore leaves alone a stream of the same name that someone else created meanwhile", async () => {
    const manifest = await backup();
    const jsm = await jetstreamManager(nc);
    await jsm.streams.delete("ORDERS");
    const gate = new Gate();
    gateOnce(svc.catalogue, "deliverArchive", gate);
    const restore = await request<JobStarted>(nc, "$RESTORE.stream.ORDERS", { backup: manifest.id });
    assert.equal(restore.errorCode, null, restore.raw);
    await gate.entered;
    await jsm.streams.add({ name: "ORDERS", subjects: ["someone.else.>"] });
    await jetstream(nc).publish("someone.else.1", "mine");
    gate.open();
    const done = await svc.runner.running(restore.body.id)!.done;
    assert.equal(done.state, "failed");
    const info = await jsm.streams.info("ORDERS");
    assert.deepEqual(info.config.subjects, ["someone.else.>"]);
    assert.equal(info.state.messages, 1);
  });

  test("the service's own buckets are refused with 400, and nothing is written", async () => {
    for (const [subject, own] of [
      ["$BACKUP.stream.OBJ_backups", "backup bucket backups"],
      ["$BACKUP.stream.KV_backups-jobs", "job record bucket backups-jobs"],
      ["$RESTORE.stream.KV_backups-locks", "lock bucket backups-locks"],
    ] as const) {
      const reply = await request(nc, subject, {});
      assert.equal(reply.errorCode, 400, reply.raw);
      assert.match(reply.errorHeader ?? "", new RegExp(`is this service's own ${own}`));
      assert.equal(reply.job, null, "no job was made");
    }
  });

  test("a lock bucket that refuses writes is a 503 naming the cause, not a 409", async () => {
    const jsm = await jetstreamManager(nc);
    const locks = "KV_backups-locks";
    const config = (await jsm.streams.info(locks)).config;
    await jsm.streams.purge(locks);
    await jsm.streams.update(locks, { ...config, max_msgs: 1 });
    await jetstream(nc).publish("$KV.backups-locks.stream.T0hFUg", JSON.stringify({ job: "X", operation: "backup", instance: "I" }));
    try {
      const reply = await request(nc, "$BACKUP.stream.ORDERS", { wait: true }, 30_000);
      assert.equal(reply.errorCode, 503, reply.raw);
      assert.match(reply.errorHeader ?? "", /could not take the lock of stream ORDERS: .*maximum messages/);
    } finally {
      await jsm.streams.purge(locks);
      await jsm.streams.update(locks, { ...config });
    }
  });
});
