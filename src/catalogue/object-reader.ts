/**
 * Reads one object's chunks with bounded flow (see subject-feed.ts; the library's reader pushes
 * the whole object without waiting for its reader) and checks their count, size and digest.
 */
import type { NatsConnection } from "@nats-io/nats-core";
import { BulkConnectionError, type BulkConnection } from "../bulk/bulk-connection.ts";
import { BackupError, ErrorCode } from "../protocol/errors.ts";
import { chunkSubject, streamOf, type ObjectMetaRecord } from "./object-format.ts";
import { ObjectCheck } from "./object-check.ts";
import { SubjectFeed } from "./subject-feed.ts";

type CheckedObjectInfo = Pick<ObjectMetaRecord, "bucket" | "name" | "nuid" | "size" | "chunks" | "digest" | "options">;

export interface ObjectReadOptions {
  /** Bytes delivered ahead of the reader at most. */
  budgetBytes: number;
  /** Fail when the bucket delivers nothing for this long. */
  idleMs: number;
  signal?: AbortSignal;
}

/** Resolves once the whole object was read and found to be the recorded one (see ObjectCheck.endChunk); rejects (500, damaged) otherwise. */
export async function checkObject(nc: NatsConnection, bulk: BulkConnection, info: CheckedObjectInfo, opts: ObjectReadOptions): Promise<void> {
  const check = new ObjectCheck(info);
  if (info.chunks > 0) {
    const chunkSize = Math.max(1, info.options?.max_chunk_size ?? 128 * 1024);
    let pending = 0;
    const feed = await SubjectFeed.open(
      nc,
      bulk,
      streamOf(info.bucket),
      chunkSubject(info.bucket, info.nuid),
      {
        begin: (msg) => (pending = msg.pending),
        part: (bytes) => check.part(bytes),
        end: () => check.endChunk(pending),
      },
      {
        window: Math.max(1, Math.floor(opts.budgetBytes / chunkSize)),
        idleMs: opts.idleMs,
        description: `nats-backup: read of ${info.name}`,
        idleError: (ms) =>
          new BackupError(
            ErrorCode.Unavailable,
            `reading ${info.name} from bucket ${info.bucket} stalled after ${check.chunks} of ${info.chunks} chunks (nothing for ${ms / 1000}s): server restarted or connection lost?`,
          ),
      },
    );
    const onAbort = () => feed.fail(BackupError.from(opts.signal?.reason));
    opts.signal?.addEventListener("abort", onAbort, { once: true });
    try {
      await feed.done.catch((err: unknown) => {
        if (!(err instanceof BulkConnectionError)) throw err;
        throw new BackupError(
          ErrorCode.Unavailable,
          `reading ${info.name} from bucket ${info.bucket} stopped after ${check.chunks} of ${info.chunks} chunks (${err.message}): server restarted or connection lost?`,
        );
      });
    } finally {
      opts.signal?.removeEventListener("abort", onAbort);
      await feed.close();
    }
  } else {
    check.verify();
  }
}
