/**
 * nats-server restarted (same port, same store) while the service backs up or restores. The
 * service runs as a child process and is never restarted: its connection reconnects. The job
 * must end failed with a reason, the source stream stay as it was, a failed restore leave no
 * stream behind, and the same instance must then serve a backup and a restore that complete.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { NatsConnection } from "@nats-io/nats-core";
import { jetstreamManager } from "@nats-io/jetstream";
import type { StreamManifest, JobRecord, JobStarted } from "../src/mod.ts";
import { NatsServer } from "./harness/nats-server.ts";
import { makeStream } from "./harness/fixtures.ts";
import { request } from "./harness/service.ts";
import { waitUntil, type StreamStateLite } from "./harness/inspect.ts";
import { ServiceProcess, stopAllServices, type ChildServiceOptions } from "./harness/proc-service.ts";
import {
  bucketView,
  fingerprint,
  listBackups,
  requestPatiently,
  stateOf,
  streamInfo,
  waitForRecord,
  type StreamFingerprint,
} from "./harness/proc-checks.ts";

const Stream = "DATA";

const Options: ChildServiceOptions = {
  // Small windows slow a 60 MB backup or restore (when it reads back); a snapshot that stops
  // sending fails after 3 s instead of 15.
  tuning: { restoreWindow: 1, readBudgetBytes: 16 * 1024, snapshotIdleMs: 3_000 },
  // The sweeper removes what a failed job could not (its connection was down) within seconds;
  // staleJobMs stays far above the 1 s refresh so that a live job is never taken for abandoned.
  sweep: { intervalMs: 1_000, orphanMinAgeMs: 2_000, staleJobMs: 30_000 },
  lockTtlMs: 5_000,
  reconnectTimeWaitMs: 250,
  shutdownGraceMs: 2_000,
};

interface Interrupted {
  id: string;
  /** The record after the restart, once it ended. */
  record: JobRecord;
  /** Progress the job had reported when the server was stopped. */
  bytesAtRestart: number;
  attempts: number;
}

describe("nats-server restarted during a job", { timeout: 600_000 }, () => {
  let server: NatsServer;
  let nc: NatsConnection;
  let svc: ServiceProcess;
  let initial: StreamStateLite;
  let original: StreamFingerprint;
  let backupId: string;
  const report: string[] = [];

  before(async () => {
    server = await NatsServer.start();
    nc = await server.connect({ maxReconnectAttempts: -1, reconnectTimeWait: 250 });
    await makeStream(nc, Stream, { messages: 4500, deleteEvery: 300 });
    const state = await stateOf(nc, Stream);
    assert.ok(state);
    initial = state;
    original = await fingerprint(nc, Stream);
    // Its warnings on stderr: a failure below says what the service saw.
    svc = await ServiceProcess.start(server.url, Options, { env: { TEST_LOG_LEVEL: "warn" } });
  });

  after(async () => {
    await stopAllServices();
    await nc?.close();
    await server?.stop();
    for (const line of report) console.log(`server-restart.test: ${line}`);
  });

  /**
   * Sends `subject` (wait:false) and restarts the server as soon as the job is accepted.
   * When the job ends before that, `retry` undoes it and another attempt starts (at most 3).
   */
  async function restartDuring(
    operation: "backup" | "restore",
    subject: string,
    body: Record<string, unknown>,
    retry: (id: string) => Promise<void>,
  ): Promise<Interrupted> {
    for (let attempt = 1; attempt <= 3; attempt++) {
      let id: string | undefined;
      let moving: JobRecord | undefined;
      let ended: JobRecord | undefined;
      const sub = nc.subscribe("$BACKUP.status.>", {
        callback: (err, msg) => {
          if (err) return;
          const rec = JSON.parse(msg.string()) as JobRecord;
          if (rec.stream !== Stream || rec.operation !== operation || rec.instance !== svc.id) return;
          id ??= rec.id;
          if (rec.id !== id) return;
          if (rec.state !== "running") ended ??= rec;
          else if (rec.progress.bytes > 0) moving ??= rec;
        },
      });
      await nc.flush();
      const started = await request<JobStarted>(nc, subject, body, 30_000);
      assert.equal(started.errorCode, null, started.raw);
      // Both stream faster than status ticks: restart as soon as the server accepted the snapshot
      // or the restore (the job's first reply comes right after).
      moving = { ...started.body, progress: { bytes: 0, chunks: 0, rate: 0 } } as unknown as JobRecord;
      await waitUntil(`the ${operation} job to move bytes`, () => moving ?? ended, 60_000, 10);
      sub.unsubscribe();
      if (ended || !moving) {
        report.push(`${operation} attempt ${attempt}: job ${started.body.id} ended before the restart (${ended?.state}); again`);
        await retry(started.body.id);
        continue;
      }
      await server.restart();
      const record = await waitForRecord(nc, started.body.id, (r) => r.state !== "running", 120_000).catch((err: Error) => {
        throw new Error(`${err.message}; the service ${svc.alive ? "runs" : "exited"}; its log ends:\n${svc.log.slice(-4000)}`);
      });
      return { id: started.body.id, record, bytesAtRestart: moving.progress.bytes, attempts: attempt };
    }
    throw new Error(`every ${operation} ended before the server could be restarted`);
  }

  test("restart during a backup: the job either fails with a reason or takes the snapshot again; the stream is intact, nothing half-made is left", async () => {
    const r = await restartDuring("backup", `$BACKUP.stream.${Stream}`, { chunk_size: 16_384 }, async (id) => {
      const del = await requestPatiently(nc, `$BACKUP.delete.${id}`);
      assert.equal(del.errorCode, null, del.raw);
    });
    report.push(
      `backup ${r.id}: restarted at ${r.bytesAtRestart} of ~${initial.bytes} bytes (attempt ${r.attempts}); ` +
        `record ${r.record.state} ${JSON.stringify(r.record.error)}`,
    );
    assert.ok(r.record.ended);
    assert.equal(r.record.instance, svc.id);
    if (r.record.state === "completed") {
      // The restart broke the watch on the snapshot; the job took it again once the server was back.
      const manifest = r.record.result as StreamManifest;
      assert.equal(manifest.messages, initial.messages);
      assert.equal(manifest.last_seq, initial.last_seq);
      assert.ok((await listBackups(nc)).some((b) => b.id === r.id), "the completed backup is listed");
    } else {
      assert.equal(r.record.state, "failed", JSON.stringify(r.record));
      assert.ok(r.record.error, "a failed record carries its error");
      assert.equal(r.record.error.code, 503, r.record.error.description);
      assert.match(r.record.error.description, /snapshot|connection|server|storing a chunk|JetStream/i);
      assert.ok(!(await listBackups(nc)).some((b) => b.id === r.id), "the failed backup is not listed");
      const info = await requestPatiently(nc, `$BACKUP.info.${r.id}`);
      assert.equal(info.errorCode, 404, info.raw);
    }

    const after = await stateOf(nc, Stream);
    assert.ok(after, "the source stream exists after the restart");
    assert.deepEqual(
      { messages: after.messages, first_seq: after.first_seq, last_seq: after.last_seq, bytes: after.bytes },
      { messages: initial.messages, first_seq: initial.first_seq, last_seq: initial.last_seq, bytes: initial.bytes },
    );
    const completed = r.record.state === "completed";
    await waitUntil(
      `no orphan chunk of backup ${r.id}, and its objects only if it completed`,
      async () => {
        const v = await bucketView(nc);
        const mine = v.objects.filter((o) => o.name.startsWith(`${r.id}/`)).length;
        return v.unreferenced.length === 0 && v.damaged.length === 0 && mine === (completed ? 3 : 0);
      },
      60_000,
      250,
    );
  });

  test("after the restart the same instance backs up again", async () => {
    assert.ok(svc.alive, "the service process was not restarted");
    const r = await request<JobRecord>(nc, `$BACKUP.stream.${Stream}`, { chunk_size: 4096, wait: true }, 300_000);
    assert.equal(r.errorCode, null, r.raw);
    assert.equal(r.body.state, "completed");
    assert.equal(r.body.instance, svc.id);
    const manifest = r.body.result as StreamManifest;
    assert.equal(manifest.messages, initial.messages);
    assert.equal(manifest.last_seq, initial.last_seq);
    backupId = manifest.id;
  });

  test("restart during a restore: the job fails with a reason and leaves no stream behind", async () => {
    assert.ok(backupId, "the previous test made a backup");
    const jsm = await jetstreamManager(nc);
    await jsm.streams.delete(Stream);
    const r = await restartDuring("restore", `$RESTORE.stream.${Stream}`, { backup: backupId }, async () => {
      await jsm.streams.delete(Stream);
    });
    report.push(
      `restore ${r.id}: restarted at ${r.bytesAtRestart} bytes (attempt ${r.attempts}); record ${r.record.state} ${JSON.stringify(r.record.error)}`,
    );
    assert.equal(r.record.state, "failed", JSON.stringify(r.record));
    assert.equal(r.record.backup, backupId);

    // No partial stream, now and a little later (the server may still have been building it).
    for (const delay of [0, 2_000]) {
      await new Promise((res) => setTimeout(res, delay));
      const info = await streamInfo(nc, Stream);
      assert.equal(info.error?.err_code, 10059, `STREAM.INFO ${Stream} after the failed restore: ${JSON.stringify(info)}`);
    }
    // The backup itself is untouched.
    assert.ok((await listBackups(nc)).some((b) => b.id === backupId));

    // The reason. Losing the server mid-restore is "JetStream did not answer" (a chunk's request
    // timed out, or the bucket's reader lost its consumer): 503 in protocol/README.md's error table,
    // as the backup side reports a chunk it could not store; and the description names what failed.
    assert.ok(r.record.error, "a failed record carries its error");
    assert.equal(r.record.error.code, 503, JSON.stringify(r.record.error));
    assert.match(r.record.error.description, new RegExp(`restore of stream ${Stream}|${backupId}/stream\\.tar\\.s2`));
  });

  test("after the restart the same instance restores, and backs up, to completion", async () => {
    assert.ok(svc.alive, "the service process was not restarted");
    const restored = await request<JobRecord>(nc, `$RESTORE.stream.${Stream}`, { backup: backupId, wait: true }, 300_000);
    assert.equal(restored.errorCode, null, restored.raw);
    assert.equal(restored.body.state, "completed");
    assert.equal(restored.body.instance, svc.id);
    assert.deepEqual(await fingerprint(nc, Stream), original);

    const backup = await request<JobRecord>(nc, `$BACKUP.stream.${Stream}`, { wait: true }, 300_000);
    assert.equal(backup.errorCode, null, backup.raw);
    assert.equal(backup.body.state, "completed");
    assert.equal(backup.body.instance, svc.id);
    assert.equal((backup.body.result as StreamManifest).messages, initial.messages);
    const v = await bucketView(nc);
    assert.deepEqual(v.unreferenced, []);
    assert.deepEqual(v.damaged, []);
  });
});
