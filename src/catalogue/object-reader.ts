/**
 * Reads one object's chunks with bounded flow: an ordered consumer fetched in batches that
 * fit a byte budget, so a slow reader holds at most one batch (the library's reader pushes
 * the whole object without waiting). The digest and size are checked at the end.
 */
import type { JetStreamClient } from "@nats-io/jetstream";
import { BackupError, ErrorCode } from "../protocol/errors.ts";
import { ObjectDigest, chunkSubject, streamOf, type ObjectMetaRecord } from "./object-format.ts";

const MaxFetchFailures = 3;
/** A fetch that yields nothing for this long has lost its server (its own expiry is 5 s). */
const FetchStallMs = 15_000;

export interface ObjectReadOptions {
  /** Bytes fetched ahead of the reader at most. */
  budgetBytes: number;
  /** Check size and digest at the end (default); off to read chunks whose digest is not known yet. */
  verify?: boolean;
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
      const batch = await withDeadline(
        consumer.fetch({ max_messages: Math.min(batchSize, info.chunks - chunks), expires: 5_000 }),
        FetchStallMs,
      );
      for await (const msg of watched(batch, FetchStallMs, () => batch.stop())) {
        received++;
        chunks++;
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
  if (opts.verify === false) return;
  if (size !== info.size) throw corrupt(info, `read ${size} bytes, its metadata says ${info.size}`);
  const computed = digest.digest();
  if (computed !== info.digest) throw corrupt(info, `digest ${computed} does not match the recorded ${info.digest}`);
}

function corrupt(info: { bucket: string; name: string }, why: string): BackupError {
  return new BackupError(ErrorCode.Internal, `object ${info.name} in bucket ${info.bucket} is damaged: ${why}`);
}

/** Yields what `source` yields; throws (after `stop`) when it yields nothing for `stallMs`. */
export async function* watched<T>(source: AsyncIterable<T>, stallMs: number, stop: () => void): AsyncGenerator<T> {
  const it = source[Symbol.asyncIterator]();
  while (true) {
    let timer: NodeJS.Timeout | undefined;
    const stalled = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        stop();
        reject(new Error(`no chunk for ${stallMs / 1000}s`));
      }, stallMs);
    });
    try {
      const next = await Promise.race([it.next(), stalled]);
      if (next.done) return;
      yield next.value;
    } finally {
      clearTimeout(timer);
    }
  }
}

/** `promise`, or a rejection after `ms` (an ordered consumer's reset can wait for a server that is gone). */
async function withDeadline<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer for ${ms / 1000}s`)), ms);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}
