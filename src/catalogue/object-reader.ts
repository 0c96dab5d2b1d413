/**
 * Reads one object's chunks with bounded flow: an ordered consumer fetched in batches that
 * fit a byte budget, so a slow reader holds at most one batch (the library's reader pushes
 * the whole object without waiting). The digest and size are checked at the end.
 */
import type { JetStreamClient } from "@nats-io/jetstream";
import { BackupError, ErrorCode } from "../protocol/errors.ts";
import { ObjectDigest, chunkSubject, streamOf, type ObjectMetaRecord } from "./object-format.ts";

const MaxFetchFailures = 3;

export interface ObjectReadOptions {
  /** Bytes fetched ahead of the reader at most. */
  budgetBytes: number;
}

export async function* readObject(
  js: JetStreamClient,
  info: Pick<ObjectMetaRecord, "bucket" | "name" | "nuid" | "size" | "chunks" | "digest" | "options">,
  opts: ObjectReadOptions,
): AsyncGenerator<Uint8Array> {
  const consumer = await js.consumers.get(streamOf(info.bucket), {
    filter_subjects: chunkSubject(info.bucket, info.nuid),
  });
  const chunkSize = Math.max(1, info.options?.max_chunk_size ?? 128 * 1024);
  const batchSize = Math.max(1, Math.floor(opts.budgetBytes / chunkSize));
  const digest = new ObjectDigest();
  let chunks = 0;
  let size = 0;
  let failures = 0;
  while (chunks < info.chunks) {
    let received = 0;
    try {
      const batch = await consumer.fetch({ max_messages: Math.min(batchSize, info.chunks - chunks), expires: 5_000 });
      for await (const msg of batch) {
        received++;
        chunks++;
        if (msg.data.length === 0) continue; // a snapshot's end message, stored with the archive
        size += msg.data.length;
        digest.update(msg.data);
        yield msg.data;
      }
    } catch (err) {
      // The ordered consumer resumes after the last chunk it delivered; a server that stays away is a 503.
      if (++failures > MaxFetchFailures) {
        throw new BackupError(
          ErrorCode.Unavailable,
          `reading ${info.name} from bucket ${info.bucket} failed after ${chunks} of ${info.chunks} chunks: ${(err as Error).message}`,
          { cause: err },
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 250 * failures));
      continue;
    }
    if (received === 0) {
      throw corrupt(info, `only ${chunks} of its ${info.chunks} chunks are in the bucket`);
    }
  }
  if (size !== info.size) throw corrupt(info, `read ${size} bytes, its metadata says ${info.size}`);
  const computed = digest.digest();
  if (computed !== info.digest) throw corrupt(info, `digest ${computed} does not match the recorded ${info.digest}`);
}

function corrupt(info: { bucket: string; name: string }, why: string): BackupError {
  return new BackupError(ErrorCode.Internal, `object ${info.name} in bucket ${info.bucket} is damaged: ${why}`);
}
