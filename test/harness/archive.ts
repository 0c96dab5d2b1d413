/** A backup's archive object in the bucket, and damage done to it on purpose (its metadata kept). */
import assert from "node:assert/strict";
import type { NatsConnection } from "@nats-io/nats-core";
import { jetstream } from "@nats-io/jetstream";
import { Objm, type ObjectInfo } from "@nats-io/obj";
import { jsApi, readSubject, subjectCounts } from "./inspect.ts";

export async function archiveObject(nc: NatsConnection, bucket: string, id: string): Promise<ObjectInfo> {
  const os = await new Objm(jetstream(nc)).open(bucket);
  const info = await os.info(`${id}/stream.tar.s2`);
  assert.ok(info && !info.deleted, `the archive of ${id} is in the bucket`);
  return info;
}

/** Replaces the archive's chunks with `rewrite(chunks)`, in order, on the same subject; its metadata stays. */
export async function rewriteChunks(nc: NatsConnection, bucket: string, id: string, rewrite: (chunks: Buffer[]) => Buffer[]): Promise<void> {
  const info = await archiveObject(nc, bucket, id);
  const subject = `$O.${bucket}.C.${info.nuid}`;
  const stored = await readSubject(nc, `OBJ_${bucket}`, subject);
  assert.equal(stored.length, info.chunks);
  const chunks = rewrite(stored.map((m) => m.data));
  const purged = await jsApi<{ success: boolean; purged: number }>(nc, `STREAM.PURGE.OBJ_${bucket}`, { filter: subject });
  assert.equal(purged.success, true, JSON.stringify(purged));
  assert.equal(purged.purged, info.chunks);
  const js = jetstream(nc);
  for (const chunk of chunks) await js.publish(subject, chunk, { expect: { streamName: `OBJ_${bucket}` } });
  assert.deepEqual(await subjectCounts(nc, `OBJ_${bucket}`, subject), chunks.length ? { [subject]: chunks.length } : {});
  // The object's metadata still describes the original bytes.
  const after = await archiveObject(nc, bucket, id);
  assert.equal(after.digest, info.digest);
  assert.equal(after.chunks, info.chunks);
}

/** The chunks with one bit flipped in the middle of the middle chunk. */
export function flipOneBit(chunks: Buffer[]): Buffer[] {
  const copy = chunks.map((c) => Buffer.from(c));
  const victim = copy[Math.floor(copy.length / 2)]!;
  const at = Math.floor(victim.length / 2);
  victim[at] = victim[at]! ^ 0x01;
  return copy;
}
