/**
 * Object writes without rollups. On nats-server 2.9 a purge of a subject, and a rollup is one,
 * moves every consumer whose filter matches that subject past the messages it has not delivered
 * yet (stream.go `purge`; 2.10 fixed it for consumers with a wider filter). The manifest index
 * follows the metadata subjects with such a consumer, and concurrent backups lost manifests that
 * way: one backup's rollup skipped another's new manifest. So metadata is published plainly,
 * guarded by the subject's expected last sequence, and the record it replaces is deleted by
 * sequence, which moves no consumer. Readers (this service, the nats CLI, the object store
 * libraries) read the last message of a metadata subject either way.
 */
import { createHash } from "node:crypto";
import { nuid, type NatsConnection } from "@nats-io/nats-core";
import type { JetStreamClient } from "@nats-io/jetstream";
import { BackupError, ErrorCode } from "../protocol/errors.ts";
import { apiPrefix, JetStreamApiError, JsErrCode, jsApiRequest } from "../jetstream/jsapi.ts";
import { BucketWriteTimeoutMs, deleteMessage, purgeChunks } from "./bucket-stream.ts";
import { base64UrlPadded, chunkSubject, DigestPrefix, metaSubject, streamOf, type ObjectMetaRecord } from "./object-format.ts";

/** An object's last metadata record and its sequence in the bucket's stream. */
export interface StoredMeta {
  seq: number;
  meta: ObjectMetaRecord;
}

/** The chunk size of small objects written here, as @nats-io/obj's default. */
const SmallObjectChunk = 128 * 1024;

/** The JetStream publish error for a subject whose last sequence was not the expected one. */
const WrongLastSequence = 10071;

/** Thrown when the metadata subject held something other than what the write expected. */
export class MetaChanged extends BackupError {
  constructor(readonly objectName: string) {
    super(ErrorCode.Conflict, `object ${objectName} was written by someone else meanwhile`);
  }
}

/**
 * The last metadata record of object `name`, live or deleted, as the stream's leader has it:
 * what a manifest's commit checks, since a direct get may be answered by a replica that has not
 * stored the newest record yet (seen in 3-node 2.9.10 and 2.10.27 clusters: an archive just
 * written read as missing). Null when there is none.
 */
export async function readMetaFromLeader(nc: NatsConnection, bucket: string, name: string): Promise<StoredMeta | null> {
  let text: string;
  try {
    text = await jsApiRequest(nc, `STREAM.MSG.GET.${streamOf(bucket)}`, JSON.stringify({ last_by_subj: metaSubject(bucket, name) }));
  } catch (err) {
    if (err instanceof JetStreamApiError && err.errCode === JsErrCode.NoMessageFound) return null;
    throw err;
  }
  const { seq, data } = (JSON.parse(text) as { message: { seq: number; data?: string } }).message;
  return { seq, meta: JSON.parse(Buffer.from(data ?? "", "base64").toString("utf8")) as ObjectMetaRecord };
}

/** The last metadata record of object `name`, live or deleted; null when there is none. */
export async function readMeta(nc: NatsConnection, bucket: string, name: string): Promise<StoredMeta | null> {
  const subject = metaSubject(bucket, name);
  let reply;
  try {
    reply = await nc.request(`${apiPrefix(nc)}.DIRECT.GET.${streamOf(bucket)}`, JSON.stringify({ last_by_subj: subject }), { timeout: 5000 });
  } catch (err) {
    throw new BackupError(ErrorCode.Unavailable, `could not read ${name} from bucket ${bucket}: ${(err as Error).message}`, { cause: err });
  }
  const status = reply.headers?.code ?? 0;
  if (status === 404) return null;
  if (status >= 300) {
    throw new BackupError(ErrorCode.Unavailable, `could not read ${name} from bucket ${bucket}: ${status} ${reply.headers?.description ?? ""}`.trim());
  }
  return { seq: Number(reply.headers?.get("Nats-Sequence")), meta: JSON.parse(reply.string()) as ObjectMetaRecord };
}

/**
 * Publishes an object's metadata; `expectLastSeq` is the sequence of the record it replaces (0:
 * none, the name is new). Throws MetaChanged when that is not so. Returns the record's sequence.
 */
export async function publishMeta(js: JetStreamClient, meta: ObjectMetaRecord, expectLastSeq: number): Promise<number> {
  try {
    const ack = await js.publish(metaSubject(meta.bucket, meta.name), JSON.stringify(meta), {
      expect: { lastSubjectSequence: expectLastSeq },
      timeout: BucketWriteTimeoutMs,
    });
    return ack.seq;
  } catch (err) {
    if (isWrongLastSequence(err)) throw new MetaChanged(meta.name);
    throw err;
  }
}

/**
 * Stores a small object held in memory (backup.json, a manifest): its chunks, then its metadata,
 * which must be new or replace the record at `replaces` (MetaChanged otherwise). For anything
 * large, see archive-upload.ts.
 */
export async function putSmallObject(
  js: JetStreamClient,
  bucket: string,
  name: string,
  bytes: Uint8Array,
  opts: { metadata?: Record<string, string>; replaces?: number } = {},
): Promise<StoredMeta> {
  const id = nuid.next();
  const hash = createHash("sha256");
  let chunks = 0;
  for (let at = 0; at < bytes.length; at += SmallObjectChunk) {
    const chunk = bytes.subarray(at, at + SmallObjectChunk);
    hash.update(chunk);
    await js.publish(chunkSubject(bucket, id), chunk, { timeout: BucketWriteTimeoutMs });
    chunks++;
  }
  const meta: ObjectMetaRecord = {
    name,
    description: "",
    options: { max_chunk_size: SmallObjectChunk },
    ...(opts.metadata ? { metadata: opts.metadata } : {}),
    bucket,
    nuid: id,
    size: bytes.length,
    chunks,
    mtime: new Date().toISOString(),
    digest: DigestPrefix + base64UrlPadded(hash.digest()),
    deleted: false,
  };
  return { seq: await publishMeta(js, meta, opts.replaces ?? 0), meta };
}

/**
 * The record that marks object `name` deleted, replacing the one at `replacesSeq` (0: the name was
 * never written, and now never can be without replacing this record).
 */
export async function publishDeleted(js: JetStreamClient, bucket: string, name: string, replacesSeq: number): Promise<number> {
  const tombstone: ObjectMetaRecord = {
    name,
    description: "",
    options: { max_chunk_size: SmallObjectChunk },
    bucket,
    nuid: nuid.next(),
    size: 0,
    chunks: 0,
    mtime: new Date().toISOString(),
    digest: "",
    deleted: true,
  };
  return publishMeta(js, tombstone, replacesSeq);
}

/**
 * Deletes object `name` if it is live: its metadata is replaced by a deleted record (guarded, so
 * a concurrent writer is not overwritten), then its chunks and the replaced record are removed.
 * False when there was nothing live to delete.
 */
export async function deleteObject(nc: NatsConnection, js: JetStreamClient, bucket: string, name: string): Promise<boolean> {
  const current = await readMeta(nc, bucket, name);
  if (!current || current.meta.deleted) return false;
  await publishDeleted(js, bucket, name, current.seq);
  await purgeChunks(nc, bucket, current.meta.nuid);
  await deleteMessage(nc, bucket, current.seq).catch((err: unknown) => {
    // Only tidiness: a record nobody reads any more (someone else may have removed it first).
    if (!(err instanceof JetStreamApiError)) throw err;
  });
  return true;
}

function isWrongLastSequence(err: unknown): boolean {
  return err instanceof Error && err.name === "JetStreamApiError" && (err as Error & { code?: number }).code === WrongLastSequence;
}
