/**
 * Requests on the bucket's stream itself, below the object store's view: subject counts, single
 * messages, deletes and purges of chunk subjects.
 */
import type { NatsConnection } from "@nats-io/nats-core";
import { JetStreamApiError, JsErrCode, jsApiRequest } from "../jetstream/jsapi.ts";
import { chunkSubject, streamOf } from "./object-format.ts";

/**
 * A write to the bucket waits this long for its ack: under load (in the crash test, right after a
 * kill, while the sweeper purged thousands of chunks) the clients' 5 s default ran out.
 */
export const BucketWriteTimeoutMs = 30_000;

/** Messages stored per subject matching `filter` (STREAM.INFO; 2.9.10 can miscount after a restart). */
export async function subjectCounts(nc: NatsConnection, bucket: string, filter: string): Promise<Record<string, number>> {
  const text = await jsApiRequest(nc, `STREAM.INFO.${streamOf(bucket)}`, JSON.stringify({ subjects_filter: filter }));
  return (JSON.parse(text) as { state?: { subjects?: Record<string, number> } }).state?.subjects ?? {};
}

export interface StoredMessageSummary {
  seq: number;
  time: string;
  empty: boolean;
}

/**
 * One stored message: the last on a subject, or the first on it from `seq` on. Null when there is
 * none (2.9 also says so for `last_by_subj` once the subject's last message was deleted).
 */
export async function storedMessage(
  nc: NatsConnection,
  bucket: string,
  query: { last_by_subj: string } | { next_by_subj: string; seq: number },
): Promise<StoredMessageSummary | null> {
  try {
    const text = await jsApiRequest(nc, `STREAM.MSG.GET.${streamOf(bucket)}`, JSON.stringify(query));
    const { seq, time, data } = (JSON.parse(text) as { message: { seq: number; time: string; data?: string } }).message;
    return { seq, time, empty: !data };
  } catch (err) {
    if (err instanceof JetStreamApiError && err.errCode === JsErrCode.NoMessageFound) return null;
    throw err;
  }
}

/** Deletes one message; `no_erase`: its bytes need not be overwritten. */
export async function deleteMessage(nc: NatsConnection, bucket: string, seq: number): Promise<void> {
  await jsApiRequest(nc, `STREAM.MSG.DELETE.${streamOf(bucket)}`, JSON.stringify({ seq, no_erase: true }), BucketWriteTimeoutMs);
}

export async function purgeChunks(nc: NatsConnection, bucket: string, nuid: string): Promise<void> {
  await jsApiRequest(nc, `STREAM.PURGE.${streamOf(bucket)}`, JSON.stringify({ filter: chunkSubject(bucket, nuid) }));
}
