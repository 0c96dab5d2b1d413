/**
 * Reads one object's chunks with bounded flow (see subject-feed.ts; the library's reader pushes
 * the whole object without waiting for its reader). Size, chunk count and digest are checked.
 */
import type { NatsConnection } from "@nats-io/nats-core";
import { BackupError, ErrorCode } from "../protocol/errors.ts";
import { chunkSubject, streamOf, type ObjectMetaRecord } from "./object-format.ts";
import { ObjectCheck, damaged } from "./object-check.ts";
import { SubjectFeed } from "./subject-feed.ts";

export interface ObjectReadOptions {
  /** Bytes delivered ahead of the reader at most. */
  budgetBytes: number;
  /** Fail when the bucket delivers nothing for this long. */
  idleMs: number;
}

export async function* readObject(
  nc: NatsConnection,
  via: NatsConnection,
  info: Pick<ObjectMetaRecord, "bucket" | "name" | "nuid" | "size" | "chunks" | "digest" | "options">,
  opts: ObjectReadOptions,
): AsyncGenerator<Uint8Array> {
  const check = new ObjectCheck(info);
  if (info.chunks > 0) {
    const chunkSize = Math.max(1, info.options?.max_chunk_size ?? 128 * 1024);
    const feed = await SubjectFeed.open(nc, via, streamOf(info.bucket), chunkSubject(info.bucket, info.nuid), {
      window: Math.max(1, Math.floor(opts.budgetBytes / chunkSize)),
      idleMs: opts.idleMs,
      description: `nats-backup: read of ${info.name}`,
      idleError: (ms) =>
        new BackupError(
          ErrorCode.Unavailable,
          `reading ${info.name} from bucket ${info.bucket} stalled after ${check.chunks} of ${info.chunks} chunks (nothing for ${ms / 1000}s): server restarted or connection lost?`,
        ),
    });
    try {
      for await (const msg of feed) {
        // Counted as read: after a restart a 2.9 server can misreport the subject's message count
        // in STREAM.INFO, while the consumer's pending count stays right.
        check.add(msg.data);
        if (msg.pending === 0 && !check.complete) throw damaged(info, `only ${check.chunks} of its ${info.chunks} chunks are in the bucket`);
        if (check.complete && msg.pending > 0) throw damaged(info, `the bucket holds more than the ${info.chunks} chunks its metadata says`);
        yield msg.data;
        if (check.complete) break;
      }
    } finally {
      await feed.close();
    }
  }
  check.verify();
}
