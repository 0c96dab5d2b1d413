/**
 * Sends a backup's archive from the bucket to a server's restore, through this process: the
 * bucket delivers the chunks to a bulk connection (a flow-controlled feed, see subject-feed.ts),
 * each is forwarded to the restore's subject as a request and checked as it passes (count, size,
 * digest: ObjectCheck verifies the whole object at its last chunk). A chunk is acked to the bucket
 * only once the restore answered it, so at most `window` chunks are in flight, and what was
 * checked is exactly what the restore was given.
 *
 * Why through this process, and not a consumer delivering straight to the restore: 2.14.10 and
 * 2.15.3 refuse a consumer that delivers to a JetStream subject, and the restore's answers, with
 * its errors (`-ERR` text before 2.12.6, JSON from 2.12.6), come back to whoever sent the chunk.
 */
import { createInbox, type NatsConnection } from "@nats-io/nats-core";
import type { BulkConnection, OutgoingPayload } from "../bulk/bulk-connection.ts";
import { BackupError } from "../protocol/errors.ts";
import { chunkSubject, streamOf, type ObjectMetaRecord } from "./object-format.ts";
import { ObjectCheck } from "./object-check.ts";
import { SubjectFeed, type StoredMessage } from "./subject-feed.ts";

export interface DeliveryOptions {
  /** Chunks sent to the restore and not yet answered, at most. */
  window: number;
  /** Fail when the bucket delivers nothing (the restore answers nothing) for this long. */
  idleMs: number;
  signal: AbortSignal;
  /** The error a restore's answer to a chunk carries (null: the chunk was taken). */
  answerError(text: string): Error | null;
  /** Chunks answered so far. */
  onProgress?(chunks: number): void;
}

type Archive = Pick<ObjectMetaRecord, "bucket" | "name" | "nuid" | "size" | "chunks" | "digest">;

/** Resolves once the restore took every chunk and the archive was found to be the recorded one. */
export async function deliverArchive(
  nc: NatsConnection,
  bulk: BulkConnection,
  archive: Archive,
  restoreSubject: string,
  opts: DeliveryOptions,
): Promise<void> {
  if (opts.signal.aborted) throw BackupError.from(opts.signal.reason);
  const check = new ObjectCheck(archive);
  if (archive.chunks === 0) return check.verify();

  const answers = createInbox();
  /** The bucket's ack of each chunk sent and not yet answered. */
  const unanswered = new Map<number, () => void>();
  let sent = 0;
  let answered = 0;
  let settle!: (err?: Error) => void;
  const delivered = new Promise<void>((resolve, reject) => {
    settle = (err) => (err ? reject(err) : resolve());
  });
  delivered.catch(() => {}); // awaited below; it may fail (the connection broke) before that

  const answerSub = bulk.subscribeReplies(answers, {
    reply: (token, text) => {
      const failure = opts.answerError(text);
      if (failure) return refuse(failure);
      const ack = unanswered.get(Number(token));
      if (!ack) return;
      unanswered.delete(Number(token));
      ack();
      opts.onProgress?.(++answered);
      if (answered === archive.chunks) settle();
    },
    lost: (err) => settle(err),
  });

  /**
   * The restore refused a chunk (2.12.6+ answer a failing chunk at once; it was likely damaged):
   * the rest of the archive is still read and checked, without being sent, so that a damaged
   * archive is named as such, and the server's words are the error only when the archive is whole.
   */
  let refused: Error | null = null;
  const refuse = (failure: Error) => {
    if (refused) return;
    refused = failure;
    for (const ack of unanswered.values()) ack();
    unanswered.clear();
    if (check.complete) settle(failure);
  };

  let current: StoredMessage | null = null;
  let out: OutgoingPayload | null = null;
  const feed = await SubjectFeed.open(
    nc,
    bulk,
    streamOf(archive.bucket),
    chunkSubject(archive.bucket, archive.nuid),
    {
      begin: (msg) => {
        current = msg;
        out = null;
        if (refused) return;
        const k = ++sent;
        unanswered.set(k, msg.ack);
        out = bulk.publishPayload(restoreSubject, `${answers}.${k}`, msg.size);
      },
      part: (bytes) => {
        check.part(bytes);
        out?.write(bytes);
      },
      end: () => {
        // Counted and, at the last chunk, verified whole (or thrown as damaged) before the restore is given it.
        const whole = check.endChunk(current!.pending) === "done";
        if (!out) {
          if (whole && refused) settle(refused);
          return "more";
        }
        out.end();
        return "held";
      },
    },
    { window: opts.window, idleMs: opts.idleMs, description: `nats-backup: restore of ${archive.name}` },
  ).catch((err: unknown) => {
    answerSub.unsubscribe();
    const { code, description } = BackupError.from(err);
    throw new BackupError(code, `could not start delivering ${archive.name} from bucket ${archive.bucket}: ${description}`, { cause: err });
  });

  const onAbort = () => settle(BackupError.from(opts.signal.reason));
  opts.signal.addEventListener("abort", onAbort, { once: true });
  feed.done.catch((err: Error) => settle(err));
  try {
    await delivered;
  } finally {
    opts.signal.removeEventListener("abort", onAbort);
    answerSub.unsubscribe();
    await feed.close();
  }
}
