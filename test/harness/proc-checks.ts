/**
 * Checks for tests that kill or restart things: what the backups bucket holds (objects, chunk
 * uploads, orphans), job records read while the server may be away, stream fingerprints.
 * Every wait is bounded.
 */
import { createHash } from "node:crypto";
import type { NatsConnection } from "@nats-io/nats-core";
import { jetstream } from "@nats-io/jetstream";
import { Objm, type ObjectInfo } from "@nats-io/obj";
import type { StreamManifest, JobRecord } from "../../src/mod.ts";
import { readStream } from "./fixtures.ts";
import { jsApi, streamState, subjectCounts, type StreamStateLite } from "./inspect.ts";
import { request, type Reply } from "./service.ts";

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export interface BucketView {
  /** Live (not deleted) objects, by the object store's own listing of `$O.<bucket>.M.>`. */
  objects: ObjectInfo[];
  /** Chunk messages per upload nuid, from STREAM.INFO with subjects_filter `$O.<bucket>.C.>`. */
  chunks: Map<string, number>;
  /** Upload nuids with chunks that no live object's metadata names. */
  unreferenced: string[];
  /** Live objects whose stored chunk count differs from their metadata's. */
  damaged: { name: string; chunks: number; stored: number }[];
}

export async function bucketView(nc: NatsConnection, bucket = "backups"): Promise<BucketView> {
  const prefix = `$O.${bucket}.C.`;
  const counts = await subjectCounts(nc, `OBJ_${bucket}`, `${prefix}>`);
  const chunks = new Map(Object.entries(counts).map(([subject, n]) => [subject.slice(prefix.length), n]));
  const store = await new Objm(jetstream(nc)).open(bucket);
  const objects = (await store.list()).filter((o) => !o.deleted);
  const referenced = new Set(objects.map((o) => o.nuid));
  return {
    objects,
    chunks,
    unreferenced: [...chunks.keys()].filter((nuid) => !referenced.has(nuid)),
    damaged: objects
      .filter((o) => (chunks.get(o.nuid) ?? 0) !== o.chunks)
      .map((o) => ({ name: o.name, chunks: o.chunks, stored: chunks.get(o.nuid) ?? 0 })),
  };
}

/** A request that may meet a server that is away or restarting: retried until `timeoutMs`. */
export async function requestPatiently<T = unknown>(
  nc: NatsConnection,
  subject: string,
  body: unknown = "",
  timeoutMs = 60_000,
  perTryMs = 5_000,
): Promise<Reply<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await request<T>(nc, subject, body, perTryMs);
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`no answer on ${subject} within ${timeoutMs} ms: ${(err as Error).message}`);
      await sleep(250);
    }
  }
}

/** Polls `$BACKUP.job.<id>` until `done(record)` holds; tolerates errors and a server that is away. */
export async function waitForRecord(
  nc: NatsConnection,
  id: string,
  done: (record: JobRecord) => boolean = (r) => r.state !== "running",
  timeoutMs = 60_000,
): Promise<JobRecord> {
  const deadline = Date.now() + timeoutMs;
  let last = "no answer yet";
  for (;;) {
    try {
      const reply = await request<JobRecord>(nc, `$BACKUP.job.${id}`, "", 5_000);
      last = reply.raw;
      if (reply.errorCode === null && done(reply.body)) return reply.body;
    } catch (err) {
      last = (err as Error).message;
    }
    if (Date.now() > deadline) throw new Error(`job ${id}: condition not met within ${timeoutMs} ms; last answer: ${last}`);
    await sleep(200);
  }
}

/** The completed backups `$BACKUP.list` shows (of one stream when given). */
export async function listBackups(nc: NatsConnection, stream?: string): Promise<StreamManifest[]> {
  const reply = await requestPatiently<{ backups: StreamManifest[] }>(nc, "$BACKUP.list", stream ? { stream } : "");
  if (reply.errorCode !== null) throw new Error(`$BACKUP.list: ${reply.raw}`);
  return reply.body.backups;
}

/** A stream's content in a few numbers: every message (seq, subject, headers, data, time) hashed. */
export interface StreamFingerprint {
  messages: number;
  first_seq: number;
  last_seq: number;
  digest: string;
}

export async function fingerprint(nc: NatsConnection, stream: string): Promise<StreamFingerprint> {
  const msgs = await readStream(nc, stream);
  const hash = createHash("sha256");
  for (const m of msgs) hash.update(JSON.stringify(m)).update("\n");
  return {
    messages: msgs.length,
    first_seq: msgs[0]?.seq ?? 0,
    last_seq: msgs.at(-1)?.seq ?? 0,
    digest: hash.digest("base64"),
  };
}

/** The stream's state, or null when STREAM.INFO says it does not exist. */
export function stateOf(nc: NatsConnection, stream: string): Promise<StreamStateLite | null> {
  return streamState(nc, stream);
}

/** JetStream API reply for STREAM.INFO, raw (to assert not-found precisely). */
export function streamInfo(nc: NatsConnection, stream: string) {
  return jsApi<{ state?: StreamStateLite }>(nc, `STREAM.INFO.${stream}`);
}
