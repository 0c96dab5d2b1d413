/**
 * kill -9 of the service in the middle of a backup. The service runs as a child process; each run
 * starts a ~95 MB backup with 16 KiB chunks and a narrow store window (a few seconds), kills the
 * only instance at a chosen point, starts a fresh one (which sweeps quickly), and checks that
 * nothing half-made survives: the job ends failed, no orphan chunk or object stays in the bucket,
 * the backup is listed only if it is complete (and then whole), and the stream can be backed up
 * again. Kill points come from the job's status events and, finer, from the bytes the bucket's
 * stream holds. The backups that survived are restored at the end.
 */
import assert from "node:assert/strict";
import { after, before, describe, test, type TestContext } from "node:test";
import type { NatsConnection } from "@nats-io/nats-core";
import { jetstreamManager } from "@nats-io/jetstream";
import type { StreamManifest, JobRecord } from "../src/mod.ts";
import { NatsServer } from "./harness/nats-server.ts";
import { consumerStates, makeStream, type ConsumerSnapshot } from "./harness/fixtures.ts";
import { request } from "./harness/service.ts";
import { waitUntil } from "./harness/inspect.ts";
import { ServiceProcess, stopAllServices, type ChildServiceOptions } from "./harness/proc-service.ts";
import {
  bucketView,
  fingerprint,
  listBackups,
  sleep,
  stateOf,
  streamInfo,
  waitForRecord,
  type StreamFingerprint,
} from "./harness/proc-checks.ts";

const Stream = "BIG";
const ChunkSize = 16 * 1024;
const Bucket = "backups";

/** Every instance of this file: same buckets' settings, a sweeper that acts within a second or two. */
const Options: ChildServiceOptions = {
  lockTtlMs: 3_000,
  // staleJobMs only matters for live instances (a dead one fails its pings); kept well above the 1 s refresh.
  sweep: { intervalMs: 500, orphanMinAgeMs: 1_000, staleJobMs: 10_000 },
    shutdownGraceMs: 2_000,
};

type KillPoint =
  | { kind: "first" }
  | { kind: "progress"; fraction: number }
  /** When the metadata of the backup's object `<id>/<name>` is published (the object became visible). */
  | { kind: "object"; name: "stream.tar.s2" | "manifest.json" };

interface RunOutcome {
  run: number;
  point: string;
  job: string;
  killedBy: string;
  /** Archive bytes the victim had moved (status event) or the bucket had gained (poller) at the kill. */
  bytesAtKill: number;
  percentAtKill: number;
  lastEvent: string;
  /** Right after the kill, before the fresh instance swept. */
  leftAtKill: { objects: string[]; orphanUploads: number; orphanChunks: number };
  record: string;
  listed: boolean;
  cleanAfterMs: number;
  relockRetries: string[];
}

describe("kill -9 of the service during a backup", { timeout: 900_000 }, () => {
  let server: NatsServer;
  let nc: NatsConnection;
  let svc: ServiceProcess;
  let original: StreamFingerprint;
  let originalConsumers: ConsumerSnapshot[];
  let streamBytes = 0;
  let run = 0;
  const outcomes: RunOutcome[] = [];
  /** Backups to restore at the end: those that completed although their instance was killed, and the newest re-backup. */
  const survivors = new Set<string>();
  let lastRebackup: string | null = null;

  before(async () => {
    server = await NatsServer.start();
    nc = await server.connect();
    await makeStream(nc, Stream, { messages: 7000, deleteEvery: 500 });
    const state = await stateOf(nc, Stream);
    assert.ok(state);
    streamBytes = state.bytes;
    original = await fingerprint(nc, Stream);
    originalConsumers = await consumerStates(nc, Stream);
    svc = await ServiceProcess.start(server.url, Options);
  });

  after(async () => {
    await stopAllServices();
    await nc?.close();
    await server?.stop();
    if (outcomes.length) {
      console.log(`crash.test: ${outcomes.length} kill runs, stream ${streamBytes} bytes`);
      for (const o of outcomes) console.log(JSON.stringify(o));
    }
  });

  async function killRun(t: TestContext, point: KillPoint): Promise<RunOutcome> {
    run++;
    const victim = svc;
    const label =
      point.kind === "first"
        ? "first event"
        : point.kind === "progress"
          ? `progress >= ${Math.round(point.fraction * 100)}%`
          : `${point.name} metadata published`;
    const bucketBase = (await streamInfo(nc, `OBJ_${Bucket}`)).state?.bytes ?? 0;
    let jobId: string | undefined;
    let killed: { by: string; bytes: number } | null = null;
    const events: JobRecord[] = [];
    let lastBeforeKill: JobRecord | undefined;
    const kill = (by: string, bytes: number) => {
      if (killed) return;
      victim.killNow();
      killed = { by, bytes };
      lastBeforeKill = events.at(-1);
    };
    const sub = nc.subscribe("$BACKUP.status.>", {
      callback: (err, msg) => {
        if (err) return;
        const rec = JSON.parse(msg.string()) as JobRecord;
        if (rec.stream !== Stream || rec.operation !== "backup" || rec.instance !== victim.id) return;
        jobId ??= rec.id;
        if (rec.id !== jobId) return;
        events.push(rec);
        if (point.kind === "first") kill("its first status event", rec.progress.bytes);
        else if (rec.state !== "running") kill(`its ${rec.state} event: the job ended before the kill point`, rec.progress.bytes);
        else if (point.kind === "progress" && rec.progress.bytes >= point.fraction * streamBytes) kill("a status event", rec.progress.bytes);
      },
    });
    // The object store's metadata messages, as published: `$O.<bucket>.M.<base64url(name)>`.
    const metaSub = nc.subscribe(`$O.${Bucket}.M.>`, {
      callback: (err, msg) => {
        if (err || point.kind !== "object" || !jobId) return;
        const name = Buffer.from(msg.subject.slice(`$O.${Bucket}.M.`.length), "base64url").toString();
        if (name === `${jobId}/${point.name}`) kill(`the metadata message of ${point.name}`, events.at(-1)?.progress.bytes ?? 0);
      },
    });
    await nc.flush();
    // wait:false; the reply may never come (the instance is killed), so it is not awaited.
    void request(nc, `$BACKUP.stream.${Stream}`, { chunk_size: ChunkSize }, 10_000).catch(() => {});

    const deadline = Date.now() + 120_000;
    while (!killed && Date.now() < deadline) {
      if (point.kind === "progress") {
        const stored = ((await streamInfo(nc, `OBJ_${Bucket}`)).state?.bytes ?? 0) - bucketBase;
        if (stored >= point.fraction * streamBytes) kill("the bucket's stream bytes", stored);
        else await sleep(5);
      } else {
        await sleep(20);
      }
    }
    assert.ok(killed, `run ${run}: the kill point (${label}) was not reached within 120 s`);
    await victim.kill9();
    sub.unsubscribe();
    metaSub.unsubscribe();
    assert.ok(jobId, `run ${run}: no status event of the victim's job`);
    const id = jobId;
    const k = killed as { by: string; bytes: number };
    // (For the report: the last event seen when it was killed.)
    const last = lastBeforeKill;

    const atKill = await bucketView(nc, Bucket);
    const leftAtKill = {
      objects: atKill.objects.filter((o) => o.name.startsWith(`${id}/`)).map((o) => o.name.slice(id.length + 1)),
      orphanUploads: atKill.unreferenced.length,
      orphanChunks: atKill.unreferenced.reduce((n, nuid) => n + (atKill.chunks.get(nuid) ?? 0), 0),
    };

    // A fresh instance: its sweeper finds the job of an instance that no longer answers.
    const sweptFrom = Date.now();
    svc = await ServiceProcess.start(server.url, Options);
    const record = await waitForRecord(nc, id, (r) => r.state !== "running", 60_000);
    const listed = (await listBackups(nc)).some((b) => b.id === id);
    // A committed backup is complete even if its instance died before saying so.
    assert.equal(record.state, listed ? "completed" : "failed", `run ${run}: listed=${listed}, record ${record.state}`);
    if (record.state === "completed") {
      assert.ok(listed, `run ${run}: job ${id} completed but its backup is not listed`);
    } else {
      assert.equal(record.state, "failed");
      assert.ok(record.error, `run ${run}: a failed record without an error`);
      assert.equal(record.error.code, 503, JSON.stringify(record.error));
      assert.match(
        record.error.description,
        new RegExp(`backup job ${id} was abandoned: its instance ${victim.id} (no longer answers \\$SRV\\.PING|stopped updating it)`),
      );
      assert.ok(record.ended, "a failed record has ended");
    }

    // The bucket: no chunk without a live object, no object of an incomplete backup.
    const clean = await waitUntil(
      `run ${run}: the bucket to hold no orphan chunks nor pieces of backup ${id}`,
      async () => {
        const v = await bucketView(nc, Bucket);
        const mine = v.objects.filter((o) => o.name.startsWith(`${id}/`));
        const ok = v.unreferenced.length === 0 && v.damaged.length === 0 && (listed ? mine.length === 3 : mine.length === 0);
        return ok && { view: v, mine };
      },
      60_000,
      200,
    );
    const cleanAfterMs = Date.now() - sweptFrom;

    if (listed) {
      const info = await request<StreamManifest>(nc, `$BACKUP.info.${id}`);
      assert.equal(info.errorCode, null, info.raw);
      const manifest = info.body;
      const archive = clean.mine.find((o) => o.name === `${id}/stream.tar.s2`);
      assert.ok(archive, "a listed backup has its archive");
      assert.ok(clean.mine.some((o) => o.name === `${id}/backup.json`), "a listed backup has backup.json");
      assert.equal(archive.size, manifest.size);
      assert.equal(archive.digest, manifest.sha256);
      assert.equal(archive.chunks, manifest.chunks);
      assert.equal(clean.view.chunks.get(archive.nuid), manifest.chunks, "every chunk of the archive is stored");
      assert.equal(manifest.messages, original.messages);
      assert.equal(manifest.last_seq, original.last_seq);
      survivors.add(id);
    } else {
      const info = await request(nc, `$BACKUP.info.${id}`);
      assert.equal(info.errorCode, 404, info.raw);
    }

    // The lock is free: the same stream backs up again, on the fresh instance.
    const relockRetries: string[] = [];
    const again = await waitUntil(
      `run ${run}: a new backup of ${Stream} to complete`,
      async () => {
        const r = await request<JobRecord>(nc, `$BACKUP.stream.${Stream}`, { chunk_size: ChunkSize, wait: true }, 180_000);
        if (r.errorCode === 409) {
          relockRetries.push(r.errorHeader ?? r.raw);
          return false;
        }
        assert.equal(r.errorCode, null, r.raw);
        return r.body;
      },
      60_000,
      500,
    );
    assert.equal(again.state, "completed");
    assert.equal(again.instance, svc.id);
    const manifest = again.result as StreamManifest;
    assert.equal(manifest.messages, original.messages);
    assert.equal(manifest.last_seq, original.last_seq);
    if (lastRebackup) {
      const del = await request(nc, `$BACKUP.delete.${lastRebackup}`);
      assert.equal(del.errorCode, null, del.raw);
    }
    lastRebackup = manifest.id;

    const outcome: RunOutcome = {
      run,
      point: label,
      job: id,
      killedBy: k.by,
      bytesAtKill: k.bytes,
      percentAtKill: Math.round((k.bytes / streamBytes) * 1000) / 10,
      lastEvent: last ? `${last.state} ${last.progress.bytes} bytes / ${last.progress.chunks} chunks` : "none",
      leftAtKill,
      record: record.state === "failed" ? `failed ${record.error?.code}: ${record.error?.description}` : record.state,
      listed,
      cleanAfterMs,
      relockRetries,
    };
    outcomes.push(outcome);
    t.diagnostic(JSON.stringify(outcome));
    return outcome;
  }

  test("killed right after the job's first status event (before the first chunk), 4 runs", async (t) => {
    for (let i = 0; i < 4; i++) {
      const o = await killRun(t, { kind: "first" });
      assert.equal(o.listed, false, "a backup killed before its first chunk is never listed");
    }
  });

  test("killed mid-stream (30% to 75% of the stream's bytes), 4 runs", async (t) => {
    for (const fraction of [0.3, 0.45, 0.6, 0.75]) {
      const o = await killRun(t, { kind: "progress", fraction });
      assert.equal(o.listed, false, "a backup killed mid-stream is never listed");
    }
  });

  test("killed late (90% of the stream's bytes up to right before completion), 4 runs", async (t) => {
    for (const fraction of [0.9, 0.95, 0.99, 1.0]) await killRun(t, { kind: "progress", fraction });
  });

  test("killed once the archive is stored (before the manifest), and once the manifest is written (before the job's record), 2 runs", async (t) => {
    // Usually the kill lands before the manifest is written (the backup is then removed); should the
    // victim get the manifest out first, the backup is complete and killRun has checked it whole.
    await killRun(t, { kind: "object", name: "stream.tar.s2" });
    const manifest = await killRun(t, { kind: "object", name: "manifest.json" });
    assert.equal(manifest.listed, true, "a backup whose manifest was written is complete");
  });

  test("every backup that survived restores to an equal stream", async () => {
    assert.ok(lastRebackup, "the runs left a re-backup");
    const jsm = await jetstreamManager(nc);
    for (const id of [...survivors, lastRebackup]) {
      await jsm.streams.delete(Stream);
      const r = await request<JobRecord>(nc, `$RESTORE.stream.${Stream}`, { backup: id, wait: true }, 300_000);
      assert.equal(r.errorCode, null, r.raw);
      assert.equal(r.body.state, "completed");
      assert.deepEqual(await fingerprint(nc, Stream), original, `restore of ${id}`);
      assert.deepEqual(await consumerStates(nc, Stream), originalConsumers, `consumers restored from ${id}`);
    }
    // The bucket holds exactly the kept backups, whole.
    const v = await bucketView(nc, Bucket);
    assert.deepEqual(v.unreferenced, []);
    assert.deepEqual(v.damaged, []);
    assert.deepEqual(
      (await listBackups(nc)).map((b) => b.id).sort(),
      [...survivors, lastRebackup].sort(),
    );
  });
});
