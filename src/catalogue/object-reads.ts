/**
 * Small objects (backup.json, a configuration, account.json) read whole by direct gets, one per
 * chunk, and checked against their metadata. No consumer: the object store library reads through
 * an ordered consumer that the server keeps for minutes after the read, and an account restore
 * reading a few objects per stream of hundreds filled the bucket stream's consumer limit.
 */
import type { NatsConnection } from "@nats-io/nats-core";
import { apiPrefix } from "../jetstream/jsapi.ts";
import { BackupError, ErrorCode } from "../protocol/errors.ts";
import { ObjectCheck } from "./object-check.ts";
import { chunkSubject, streamOf } from "./object-format.ts";
import { readMeta } from "./object-writes.ts";

/** The most bytes a small object may have: what is read whole into memory. */
export const SmallObjectMaxBytes = 16 * 1024 * 1024;

/** Object `name`'s bytes, checked whole; null when there is no such (live) object. */
export async function readSmallObject(nc: NatsConnection, bucket: string, name: string): Promise<Uint8Array | null> {
  const stored = await readMeta(nc, bucket, name);
  if (!stored || stored.meta.deleted) return null;
  const { meta } = stored;
  if (meta.size > SmallObjectMaxBytes) {
    throw new BackupError(ErrorCode.Internal, `${name} in bucket ${bucket} holds ${meta.size} bytes, more than a small object may (${SmallObjectMaxBytes})`);
  }
  const check = new ObjectCheck(meta);
  const parts: Uint8Array[] = [];
  const subject = chunkSubject(bucket, meta.nuid);
  let seq = 0;
  for (let i = 0; i < meta.chunks; i++) {
    let reply;
    try {
      reply = await nc.request(`${apiPrefix(nc)}.DIRECT.GET.${streamOf(bucket)}`, JSON.stringify({ next_by_subj: subject, seq: seq + 1 }), { timeout: 5000 });
    } catch (err) {
      throw new BackupError(ErrorCode.Unavailable, `could not read ${name} from bucket ${bucket}: ${(err as Error).message}`, { cause: err });
    }
    const status = reply.headers?.code ?? 0;
    if (status === 404) break; // fewer chunks than recorded: the check below names it damaged
    if (status >= 300) throw new BackupError(ErrorCode.Unavailable, `could not read ${name} from bucket ${bucket}: ${status} ${reply.headers?.description ?? ""}`.trim());
    seq = Number(reply.headers?.get("Nats-Sequence"));
    parts.push(reply.data);
    check.part(reply.data);
    check.endChunk(meta.chunks - i - 1);
  }
  if (!check.complete || meta.chunks === 0) check.verify();
  return Buffer.concat(parts);
}
