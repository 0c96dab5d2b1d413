import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { NatsConnection } from "@nats-io/nats-core";
import { jetstreamManager } from "@nats-io/jetstream";
import type { StreamManifest, BackupService, JobRecord } from "../src/mod.ts";
import { makeStream } from "./harness/fixtures.ts";
import { request, startRig, type ServiceRig } from "./harness/service.ts";
import { Collector, jsApi, streamState } from "./harness/inspect.ts";
import { flipOneBit, rewriteChunks } from "./harness/archive.ts";

const Stream = "INTEG";

describe("damaged backups are refused", () => {
  let rig: ServiceRig;
  let nc: NatsConnection;
  let svc: BackupService;
  let status: Collector;
  /** Three backups of the same content: one to corrupt, one to truncate, one left alone. */
  const backups: StreamManifest[] = [];
  let messages = 0;

  before(async () => {
    rig = await startRig();
    ({ nc, svc } = rig);
    await makeStream(nc, Stream, { messages: 600, deleteEvery: 50, consumers: true });
    messages = (await streamState(nc, Stream))!.messages;
    for (let i = 0; i < 3; i++) {
      // 64 KiB chunks: the archive spans several chunk messages.
      const done = await request<JobRecord>(nc, `$BACKUP.stream.${Stream}`, { wait: true, chunk_size: 65536 }, 120_000);
      assert.equal(done.errorCode, null, done.raw);
      backups.push(done.body.result as StreamManifest);
    }
    for (const b of backups) assert.ok(b.chunks >= 4, `archive of ${b.chunks} chunks`);
    await (await jetstreamManager(nc)).streams.delete(Stream);
    status = await Collector.start(nc, "$BACKUP.status.>");
  });
  after(async () => {
    status?.stop();
    await rig?.stop();
  });

  /** Restores `backup` with wait:true and checks it was refused, the job failed, and no stream was left. */
  async function assertRefused(backup: StreamManifest, why: RegExp): Promise<void> {
    const reply = await request<{ error: { code: number; description: string } }>(
      nc,
      `$RESTORE.stream.${Stream}`,
      { backup: backup.id, wait: true },
      180_000,
    );
    assert.ok(reply.errorCode !== null && reply.errorCode >= 500, `refused with a 5xx: ${reply.raw}`);
    assert.deepEqual(reply.body, { error: { code: reply.errorCode, description: reply.errorHeader } });
    assert.match(reply.errorHeader ?? "", why);
    // A check that fails before the server's restore started replies as is; later ones as "restore job <id> failed: …".
    const jobId = reply.job;
    assert.ok(jobId, `the reply names the job in Nats-Backup-Job: ${reply.raw}`);
    const named = /restore job ([0-9A-Z]{26}) failed/.exec(reply.errorHeader ?? "")?.[1];
    if (named) assert.equal(named, jobId);

    const job = await request<JobRecord>(nc, `$BACKUP.job.${jobId}`);
    assert.equal(job.errorCode, null, job.raw);
    assert.equal(job.body.state, "failed");
    assert.equal(job.body.operation, "restore");
    assert.equal(job.body.backup, backup.id);
    assert.equal(job.body.result, undefined);
    assert.equal(job.body.error?.code, reply.errorCode);
    assert.match(job.body.error?.description ?? "", why);
    const events = status.bodies((e) => e.id === jobId);
    assert.equal(events.at(-1)?.state, "failed", "the last status event is the failure");
    assert.equal(events.filter((e) => e.state !== "running").length, 1);

    const info = await jsApi(nc, `STREAM.INFO.${Stream}`);
    assert.equal(info.error?.err_code, 10059, `stream ${Stream} does not exist: ${JSON.stringify(info)}`);
  }

  test("an archive with one flipped byte is refused and leaves no stream", async () => {
    const [damaged] = backups as [StreamManifest];
    await rewriteChunks(nc, svc.bucket, damaged.id, flipOneBit);
    await assertRefused(damaged, /damaged: digest .* does not match/);
  });

  test("an archive missing one chunk is refused and leaves no stream", async () => {
    const damaged = backups[1]!;
    await rewriteChunks(nc, svc.bucket, damaged.id, (chunks) => chunks.filter((_, i) => i !== 1));
    await assertRefused(damaged, /damaged: only \d+ of its \d+ chunks are in the bucket/);
  });

  test("the refused restores left nothing in the way: an intact backup still restores", async () => {
    const intact = backups[2]!;
    const reply = await request<JobRecord>(nc, `$RESTORE.stream.${Stream}`, { backup: intact.id, wait: true }, 180_000);
    assert.equal(reply.errorCode, null, reply.raw);
    assert.equal(reply.body.state, "completed");
    assert.equal((await streamState(nc, Stream))?.messages, messages);
    // The damaged backups are still listed: a failed restore deletes nothing.
    const list = await request<{ backups: StreamManifest[] }>(nc, "$BACKUP.list", { stream: Stream });
    assert.deepEqual(list.body.backups.map((b) => b.id), backups.map((b) => b.id).reverse());
  });
});
