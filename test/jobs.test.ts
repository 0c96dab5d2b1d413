import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { NatsConnection } from "@nats-io/nats-core";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Objm } from "@nats-io/obj";
import type { StreamManifest, JobRecord, JobStarted, RestoreResult } from "../src/mod.ts";
import { makeStream } from "./harness/fixtures.ts";
import { request, startRig, type ServiceRig } from "./harness/service.ts";
import { Collector, jsApi, streamState, subjectCounts, waitUntil } from "./harness/inspect.ts";

const Terminal = new Set(["completed", "failed"]);

describe("jobs", () => {
  let rig: ServiceRig;
  let nc: NatsConnection;

  before(async () => {
    rig = await startRig();
    nc = rig.nc;
    await makeStream(nc, "BIG", { messages: 2300, consumers: false });
  });
  after(async () => {
    await rig?.stop();
  });

  async function job(id: string): Promise<JobRecord> {
    const reply = await request<JobRecord>(nc, `$BACKUP.job.${id}`);
    assert.equal(reply.errorCode, null, reply.raw);
    return reply.body;
  }

  function waitForEnd(id: string, timeoutMs = 180_000): Promise<JobRecord> {
    return waitUntil(`job ${id} to end`, async () => {
      const record = await job(id);
      return record.state !== "running" && record;
    }, timeoutMs);
  }

  async function backupWait(stream: string, body: Record<string, unknown> = {}): Promise<StreamManifest> {
    const reply = await request<JobRecord>(nc, `$BACKUP.stream.${stream}`, { ...body, wait: true }, 180_000);
    assert.equal(reply.errorCode, null, reply.raw);
    assert.equal(reply.body.state, "completed");
    return reply.body.result as StreamManifest;
  }

  test("status events: running first, progress that never goes back, one terminal event that is the job record", async () => {
    const status = await Collector.start(nc, "$BACKUP.status.>");
    try {
      const started = await request<JobStarted>(nc, "$BACKUP.stream.BIG", { chunk_size: 4096, consumers: false });
      assert.equal(started.errorCode, null, started.raw);
      const id = started.body.id;
      assert.deepEqual(started.body, {
        id,
        operation: "backup",
        scope: "stream",
        stream: "BIG",
        state: "running",
        status_subject: `$BACKUP.status.${id}`,
      });
      const terminal = await status.waitFor(`the end of job ${id}`, (e) => e.id === id && Terminal.has(e.state), 180_000);
      // A request to the service and a flush: anything it published before answering has arrived.
      const record = await job(id);
      await nc.flush();

      const events = status.messages.filter((m) => m.body.id === id);
      assert.ok(events.length >= 2, `at least a start and an end: ${events.length}`);
      for (const { subject, body } of events) {
        assert.equal(subject, `$BACKUP.status.${id}`);
        assert.equal(body.id, id);
        assert.equal(body.type, "io.nats.backup.v1.job");
        assert.equal(body.operation, "backup");
        assert.equal(body.stream, "BIG");
        assert.ok(["running", "completed", "failed"].includes(body.state), body.state);
      }
      const bodies = events.map((e) => e.body);
      assert.equal(bodies[0]!.state, "running");
      assert.equal(bodies.filter((e) => Terminal.has(e.state)).length, 1, "exactly one terminal event");
      assert.equal(bodies.at(-1), terminal, "the terminal event is the last");
      assert.equal(terminal.state, "completed", JSON.stringify(terminal.error));
      for (let i = 1; i < bodies.length; i++) {
        const [prev, cur] = [bodies[i - 1]!, bodies[i]!];
        assert.ok(cur.progress.bytes >= prev.progress.bytes, `bytes went from ${prev.progress.bytes} to ${cur.progress.bytes}`);
        assert.ok(cur.progress.chunks >= prev.progress.chunks, "chunks never go back");
        assert.ok(cur.updated >= prev.updated, "updated never goes back");
      }
      const manifest = terminal.result as StreamManifest;
      assert.equal(manifest.id, id);
      assert.equal(terminal.progress.bytes, manifest.size);
      assert.equal(terminal.progress.chunks, manifest.chunks);
      assert.ok(manifest.chunks >= Math.floor(manifest.size / 4096), "4 KiB chunks");
      assert.ok(terminal.ended, "a terminal record says when it ended");
      assert.deepEqual(
        { state: record.state, result: record.result, error: record.error },
        { state: terminal.state, result: terminal.result, error: terminal.error },
      );
      assert.deepEqual(record, terminal, "the job record is the terminal event");
    } finally {
      status.stop();
    }
  });

  test("a backup request without a reply subject still runs", async () => {
    await makeStream(nc, "NOREPLY", { messages: 30, consumers: false });
    const status = await Collector.start(nc, "$BACKUP.status.>");
    try {
      nc.publish("$BACKUP.stream.NOREPLY", "");
      const done = await status.waitFor(
        "a completed backup of NOREPLY",
        (e) => e.stream === "NOREPLY" && e.state === "completed",
        180_000,
      );
      assert.equal(done.operation, "backup");
      const list = await request<{ backups: StreamManifest[] }>(nc, "$BACKUP.list", { stream: "NOREPLY" });
      assert.equal(list.errorCode, null, list.raw);
      assert.deepEqual(list.body.backups.map((b) => b.id), [done.id]);
      assert.deepEqual(list.body.backups[0], done.result);
      assert.equal(list.body.backups[0]!.messages, 30);
    } finally {
      status.stop();
    }
  });

  test("wait:true replies with the final job record", async () => {
    await makeStream(nc, "WAITED", { messages: 50, consumers: true });
    const reply = await request<JobRecord>(nc, "$BACKUP.stream.WAITED", { wait: true, tag: "nightly" }, 180_000);
    assert.equal(reply.errorCode, null, reply.raw);
    const record = reply.body;
    assert.equal(record.type, "io.nats.backup.v1.job");
    assert.equal(record.state, "completed");
    assert.equal(record.operation, "backup");
    assert.equal(record.stream, "WAITED");
    assert.equal(record.error, undefined);
    const manifest = record.result as StreamManifest;
    assert.equal(manifest.type, "io.nats.backup.v1.manifest");
    assert.equal(manifest.id, record.id);
    assert.equal(manifest.stream, "WAITED");
    assert.equal(manifest.messages, 50);
    assert.equal(manifest.tag, "nightly");
    assert.deepEqual(manifest.consumers, ["AUDIT", "PROCESSOR"]);
    assert.deepEqual(manifest.objects, {
      config: `${record.id}/backup.json`,
      archive: `${record.id}/stream.tar.s2`,
      manifest: `${record.id}/manifest.json`,
    });
    assert.deepEqual(await job(record.id), record, "$BACKUP.job agrees with the wait:true reply");
  });

  test("list is newest first and filters by stream; info returns the manifest; delete removes every object", async () => {
    await makeStream(nc, "LISTA", { messages: 10, consumers: false });
    await makeStream(nc, "LISTB", { messages: 12, consumers: false });
    const a1 = await backupWait("LISTA");
    const b1 = await backupWait("LISTB");
    const a2 = await backupWait("LISTA");

    const all = await request<{ backups: StreamManifest[] }>(nc, "$BACKUP.list");
    assert.equal(all.errorCode, null, all.raw);
    const ids = all.body.backups.map((b) => b.id);
    assert.deepEqual(ids, [...ids].sort().reverse(), "newest first");
    assert.ok(ids.indexOf(a2.id) < ids.indexOf(b1.id) && ids.indexOf(b1.id) < ids.indexOf(a1.id));
    const onlyA = await request<{ backups: StreamManifest[] }>(nc, "$BACKUP.list", { stream: "LISTA" });
    assert.deepEqual(onlyA.body.backups, [a2, a1]);
    const onlyB = await request<{ backups: StreamManifest[] }>(nc, "$BACKUP.list", { stream: "LISTB" });
    assert.deepEqual(onlyB.body.backups, [b1]);
    const none = await request<{ backups: StreamManifest[] }>(nc, "$BACKUP.list", { stream: "NOSUCH" });
    assert.deepEqual(none.body, { backups: [] });

    const info = await request<StreamManifest>(nc, `$BACKUP.info.${a1.id}`);
    assert.equal(info.errorCode, null, info.raw);
    assert.deepEqual(info.body, a1);

    // The objects of a1 as the object store knows them, before the delete.
    const os = await new Objm(jetstream(nc)).open(rig.svc.bucket);
    const names: string[] = [a1.objects.config, a1.objects.archive, a1.objects.manifest];
    const nuids: string[] = [];
    for (const name of names) {
      const oi = await os.info(name);
      assert.ok(oi && !oi.deleted, `${name} is stored`);
      nuids.push(oi.nuid);
    }
    const bucketStream = `OBJ_${rig.svc.bucket}`;
    const chunkSubjects = nuids.map((n) => `$O.${rig.svc.bucket}.C.${n}`);
    for (const s of chunkSubjects) assert.ok((await subjectCounts(nc, bucketStream, s))[s]! > 0);

    const deleted = await request(nc, `$BACKUP.delete.${a1.id}`);
    assert.equal(deleted.errorCode, null, deleted.raw);
    assert.deepEqual(deleted.body, { id: a1.id, deleted: true, objects: 3 });

    const listed = await request<{ backups: StreamManifest[] }>(nc, "$BACKUP.list", { stream: "LISTA" });
    assert.deepEqual(listed.body.backups, [a2]);
    assert.equal((await request(nc, `$BACKUP.info.${a1.id}`)).errorCode, 404);
    assert.equal((await request(nc, `$BACKUP.delete.${a1.id}`)).errorCode, 404);

    for (const s of chunkSubjects) assert.deepEqual(await subjectCounts(nc, bucketStream, s), {}, `no chunk left on ${s}`);
    for (const name of names) {
      const meta = `$O.${rig.svc.bucket}.M.${Buffer.from(name).toString("base64").replace(/\+/g, "-").replace(/\//g, "_")}`;
      const counts = await subjectCounts(nc, bucketStream, meta);
      assert.ok((counts[meta] ?? 0) <= 1, `at most a tombstone on ${meta}: ${JSON.stringify(counts)}`);
      if (counts[meta]) {
        const last = await jsApi<{ message: { data: string } }>(nc, `STREAM.MSG.GET.${bucketStream}`, { last_by_subj: meta });
        const tomb = JSON.parse(Buffer.from(last.message.data, "base64").toString()) as { deleted?: boolean; name: string };
        assert.equal(tomb.name, name);
        assert.equal(tomb.deleted, true, `the only message on ${meta} is a tombstone`);
      }
    }
    // The other backups are untouched.
    assert.deepEqual((await request(nc, `$BACKUP.info.${a2.id}`)).body, a2);
    assert.deepEqual((await request(nc, `$BACKUP.info.${b1.id}`)).body, b1);
  });

  test("a second job on a stream while one runs is a 409 naming the running job", async () => {
    const status = await Collector.start(nc, "$BACKUP.status.>");
    try {
      const first = await request<JobStarted>(nc, "$BACKUP.stream.BIG", { chunk_size: 4096, consumers: false });
      assert.equal(first.errorCode, null, first.raw);
      const id = first.body.id;
      assert.equal((await job(id)).state, "running", "the first job is slow enough to still run");

      const second = await request(nc, "$BACKUP.stream.BIG", { wait: true });
      assert.equal(second.errorCode, 409, second.raw);
      assert.deepEqual(second.body, { error: { code: 409, description: second.errorHeader } });
      assert.match(second.errorHeader ?? "", new RegExp(`stream BIG is busy: backup job ${id} is running`));
      const restore = await request(nc, "$RESTORE.stream.BIG", { wait: true });
      assert.equal(restore.errorCode, 409, restore.raw);
      assert.match(restore.errorHeader ?? "", new RegExp(`backup job ${id} is running`));
      // Another stream is not held up.
      await backupWait("NOREPLY");

      const ended = await waitForEnd(id);
      assert.equal(ended.state, "completed", JSON.stringify(ended.error));
      // The refused jobs never ran: the only BIG backup event stream that completed is the first.
      const completedBig = status.bodies((e) => e.stream === "BIG" && e.state === "completed").map((e) => e.id);
      assert.deepEqual(completedBig, [id]);
      // The lock went with the first job.
      const third = await backupWait("BIG", { consumers: false });
      assert.notEqual(third.id, id);
    } finally {
      status.stop();
    }
  });

  test("a restore of a named backup restores that one, not the newest", async () => {
    await makeStream(nc, "NAMED", { messages: 10, consumers: false });
    const older = await backupWait("NAMED");
    const js = jetstream(nc);
    for (let i = 0; i < 5; i++) await js.publish("NAMED.extra", `more ${i}`);
    const newer = await backupWait("NAMED");
    assert.equal(older.messages, 10);
    assert.equal(newer.messages, 15);
    const jsm = await jetstreamManager(nc);

    await jsm.streams.delete("NAMED");
    const named = await request<JobRecord>(nc, "$RESTORE.stream.NAMED", { backup: older.id, wait: true }, 180_000);
    assert.equal(named.errorCode, null, named.raw);
    assert.equal(named.body.state, "completed");
    assert.equal(named.body.operation, "restore");
    assert.equal(named.body.backup, older.id);
    const result = named.body.result as RestoreResult;
    assert.equal(result.backup, older.id);
    assert.equal(result.messages, 10);
    assert.equal((await streamState(nc, "NAMED"))?.messages, 10);

    await jsm.streams.delete("NAMED");
    const newest = await request<JobRecord>(nc, "$RESTORE.stream.NAMED", { wait: true }, 180_000);
    assert.equal(newest.errorCode, null, newest.raw);
    assert.equal(newest.body.backup, newer.id);
    assert.equal((newest.body.result as RestoreResult).messages, 15);
    assert.equal((await streamState(nc, "NAMED"))?.messages, 15);
  });
});
