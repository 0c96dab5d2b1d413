/**
 * nats-server killed (SIGKILL) right after a backup completed. A backup deletes the snapshot's
 * empty end message from its archive; fed to a restore, that message would end the upload early.
 * Whether a crash brings it back depends on the server version, and the test makes it certain
 * either way:
 *
 * - 2.9 records a delete only in the block's index file (msgs/<n>.idx), which it rewrites on a
 *   delete at most every 500 ms, on a write at most every 2 s (server/filestore.go at v2.9.10:
 *   winfThresh, wiThresh), when it starts a new block, and every 60 s (syncBlocks). At a restart,
 *   a block whose last record is not the one its index names is rebuilt from its records, and a
 *   deleted message whose bytes were not erased is back. So the end message comes back when the
 *   bucket's last write has not reached the index. The test checks the conditions that make that
 *   so before it kills the server: the bucket's stream fits in one block (8 MiB), its last write
 *   came less than 1.5 s after the archive's last chunk (so the index was last written less than
 *   2 s before it, and that write did not rewrite it), and the stream is younger than 55 s (no
 *   periodic sync yet).
 * - 2.10 and later write a tombstone into the block for each delete, flushed at once: the end
 *   message stays deleted, and the test checks that it did.
 *
 * The repair itself (the restore deletes an empty last message of the archive again) is also
 * tested on every version with such a message put there by hand, at the end of this file.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { NatsConnection } from "@nats-io/nats-core";
import { jetstream } from "@nats-io/jetstream";
import type { StreamManifest, JobRecord } from "../src/mod.ts";
import { chunkSubject, metaSubject } from "../src/catalogue/object-format.ts";
import { makeStream } from "./harness/fixtures.ts";
import { jsApi, readSubject, waitUntil, type StoredRawMessage } from "./harness/inspect.ts";
import { serverAtLeast, serverVersion } from "./harness/nats-server.ts";
import { fingerprint } from "./harness/proc-checks.ts";
import { request, startRig, warningsLogger, type ServiceRig } from "./harness/service.ts";

const Version = serverVersion().text;
/** 2.9 keeps deletes in memory until it writes the block's index; 2.10+ write a tombstone at once. */
const CrashRevivesDeletes = !serverAtLeast("2.10.0");
const Bucket = "backups";
const Repaired = /removed the snapshot's end message, back in the archive after a server crash/;
/** 2.9's block size for a stream without max_bytes (defaultLargeBlockSize). */
const BlockBytes = 8 * 1024 * 1024;

/** The archive's messages on its chunk subject, as stored now. */
async function archiveMessages(nc: NatsConnection, id: string): Promise<StoredRawMessage[]> {
  // The metadata names the chunk subject; read by direct get (the object store client hides deleted objects' nuids).
  const meta = (await jsApi<{ message?: { data: string } }>(nc, `STREAM.MSG.GET.OBJ_${Bucket}`, {
    last_by_subj: metaSubject(Bucket, `${id}/stream.tar.s2`),
  })).message;
  assert.ok(meta, `the archive of ${id} has its metadata`);
  const { nuid } = JSON.parse(Buffer.from(meta.data, "base64").toString()) as { nuid: string };
  return readSubject(nc, `OBJ_${Bucket}`, chunkSubject(Bucket, nuid));
}

function describeArchive(messages: StoredRawMessage[]): string {
  const empty = messages.filter((m) => m.data.length === 0).map((m) => m.seq);
  return `${messages.length} messages, empty ones at seq [${empty.join(", ")}], last seq ${messages.at(-1)?.seq}`;
}

describe(`nats-server ${Version} killed right after a backup`, () => {
  let rig: ServiceRig;
  const { logger, warnings } = warningsLogger();
  let stored: Awaited<ReturnType<typeof fingerprint>>;
  let manifest: StreamManifest | undefined;

  before(async () => {
    // No sweeper timer during the test: nothing but the backup writes to the bucket.
    rig = await startRig({ logger, sweep: { intervalMs: 3_600_000 } });
    // About 3 MiB: the whole bucket stays in one 2.9 block.
    await makeStream(rig.nc, "CRASHED", { messages: 240, consumers: false });
    stored = await fingerprint(rig.nc, "CRASHED");
  });
  after(async () => {
    await rig?.stop();
  });

  test("a backup completed just before the kill is listed after the restart", async (t) => {
    const { nc, server } = rig;
    const reply = await request<JobRecord>(nc, "$BACKUP.stream.CRASHED", { wait: true, chunk_size: 16_384 }, 60_000);
    assert.equal(reply.errorCode, null, reply.raw);
    manifest = reply.body.result as StreamManifest;
    const archive = await archiveMessages(nc, manifest.id);
    assert.equal(archive.length, manifest.chunks, `before the kill the archive is its chunks: ${describeArchive(archive)}`);

    if (CrashRevivesDeletes) {
      // The conditions under which 2.9's restart certainly brings the end message back (see the file's comment).
      const bucket = await jsApi<{ created: string; state: { bytes: number; last_ts: string } }>(nc, `STREAM.INFO.OBJ_${Bucket}`);
      const lastChunk = await jsApi<{ message: { time: string } }>(nc, `STREAM.MSG.GET.OBJ_${Bucket}`, { seq: archive.at(-1)!.seq });
      const afterLastChunkMs = Date.parse(bucket.state.last_ts) - Date.parse(lastChunk.message.time);
      const streamAgeMs = Date.now() - Date.parse(bucket.created);
      t.diagnostic(`bucket: ${bucket.state.bytes} bytes, last write ${afterLastChunkMs} ms after the last chunk, stream ${streamAgeMs} ms old`);
      assert.ok(bucket.state.bytes < BlockBytes - 64 * 1024, `the bucket's stream fits in one block: ${bucket.state.bytes} bytes`);
      assert.ok(afterLastChunkMs < 1_500, `the bucket's last write came ${afterLastChunkMs} ms after the archive's last chunk`);
      assert.ok(streamAgeMs < 55_000, `the bucket's stream is ${streamAgeMs} ms old: 2.9 may have written its indexes since`);
    }

    await server.halt("SIGKILL");
    await server.restart();
    const listed = await waitUntil(
      "the service to list backups again",
      async () => (await request<{ backups: StreamManifest[] }>(nc, "$BACKUP.list", {}, 1_000).catch(() => null))?.body.backups,
      30_000,
      200,
    );
    assert.ok(listed.some((b) => b.id === manifest!.id), "the backup is still listed");
  });

  test("after the restart the archive holds its chunks, and on 2.9 the snapshot's end message the crash brought back", async () => {
    assert.ok(manifest, "the previous test made a backup");
    const archive = await archiveMessages(rig.nc, manifest.id);
    if (CrashRevivesDeletes) {
      assert.equal(archive.length, manifest.chunks + 1, `the chunks and the end message: ${describeArchive(archive)}`);
      assert.equal(archive.at(-1)!.data.length, 0, "the last message is the empty end message");
      assert.ok(archive.slice(0, -1).every((m) => m.data.length > 0), describeArchive(archive));
    } else {
      // From 2.10 a delete writes a tombstone into the block at once (and a relayed snapshot never stored its end).
      assert.equal(archive.length, manifest.chunks, `nats-server ${Version}: the chunks only: ${describeArchive(archive)}`);
      assert.ok(archive.every((m) => m.data.length > 0), describeArchive(archive));
    }
  });

  test("the restore removes the end message a crash brought back, and restores the stream exactly", async () => {
    assert.ok(manifest, "the first test made a backup");
    const { nc } = rig;
    // (On 2.9 the previous test checked that the end message is back.)
    const atRestart = await archiveMessages(nc, manifest.id);
    if (!CrashRevivesDeletes) assert.equal(atRestart.length, manifest.chunks, `nats-server ${Version} kept the delete: ${describeArchive(atRestart)}`);
    warnings.length = 0;

    await jsApi(nc, "STREAM.DELETE.CRASHED");
    const restored = await request<JobRecord>(nc, "$RESTORE.stream.CRASHED", { wait: true, backup: manifest.id }, 60_000);
    assert.equal(restored.errorCode, null, restored.raw);
    assert.deepEqual(await fingerprint(nc, "CRASHED"), stored);

    const left = await archiveMessages(nc, manifest.id);
    assert.equal(left.length, manifest.chunks, `only the chunks are left: ${describeArchive(left)}`);
    assert.ok(left.every((m) => m.data.length > 0), describeArchive(left));
    assert.equal(warnings.filter((w) => Repaired.test(w)).length, CrashRevivesDeletes ? 1 : 0, JSON.stringify(warnings));
  });
});

describe(`an empty message at the end of a committed archive, as a 2.9 crash leaves it (nats-server ${Version})`, () => {
  let rig: ServiceRig;
  const { logger, warnings } = warningsLogger();

  before(async () => {
    rig = await startRig({ logger, sweep: { intervalMs: 3_600_000 } });
    await makeStream(rig.nc, "PLANTED", { messages: 120, consumers: false });
  });
  after(async () => {
    await rig?.stop();
  });

  test("is removed by the restore, which restores the stream exactly", async () => {
    const { nc } = rig;
    const stored = await fingerprint(nc, "PLANTED");
    const reply = await request<JobRecord>(nc, "$BACKUP.stream.PLANTED", { wait: true, chunk_size: 16_384 }, 60_000);
    assert.equal(reply.errorCode, null, reply.raw);
    const manifest = reply.body.result as StreamManifest;
    const archive = await archiveMessages(nc, manifest.id);
    assert.equal(archive.length, manifest.chunks, describeArchive(archive));
    await jetstream(nc).publish(archive[0]!.subject, new Uint8Array(0), { expect: { streamName: `OBJ_${Bucket}` } });
    const planted = await archiveMessages(nc, manifest.id);
    assert.equal(planted.length, manifest.chunks + 1, describeArchive(planted));
    assert.equal(planted.at(-1)!.data.length, 0);

    await jsApi(nc, "STREAM.DELETE.PLANTED");
    const restored = await request<JobRecord>(nc, "$RESTORE.stream.PLANTED", { wait: true, backup: manifest.id }, 60_000);
    assert.equal(restored.errorCode, null, restored.raw);
    assert.deepEqual(await fingerprint(nc, "PLANTED"), stored);
    const left = await archiveMessages(nc, manifest.id);
    assert.equal(left.length, manifest.chunks, `only the chunks are left: ${describeArchive(left)}`);
    assert.ok(left.every((m) => m.data.length > 0), describeArchive(left));
    assert.equal(warnings.filter((w) => Repaired.test(w)).length, 1, JSON.stringify(warnings));
  });
});
