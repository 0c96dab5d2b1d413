/**
 * The archive of a backup, in the bucket. Two ways in (backup-job.ts picks one by server):
 * - the server writes it itself: the snapshot's deliver subject is the object's chunk subject, so
 *   the bucket's stream stores every chunk as the server sends it, and its publish acks are the
 *   acks the snapshot's flow control waits for. The service hashes and counts the chunks (`tally`)
 *   as they go by (a watch, then `finishWatched` checks that the bucket stored as many) or read
 *   back as stored (`stored`, then `finish`), then deletes the snapshot's end message;
 * - relayed (`relay`, then `finishRelayed`): the server sends its chunks to this process, which
 *   publishes each into the bucket and acks it to the server once stored: the careful way, after
 *   a lost watch on servers that wait for acks.
 * Then it writes the metadata that makes the object visible (without a rollup: see object-writes.ts).
 */
import { createInbox, nuid, type NatsConnection } from "@nats-io/nats-core";
import { BulkPermissionError, type BulkConnection, type OutgoingPayload } from "../bulk/bulk-connection.ts";
import { watchSubject, WatchLost, type Watch } from "../bulk/watch.ts";
import { snapshotMessage } from "../snapshot/snapshot.ts";
import type { JetStreamClient } from "@nats-io/jetstream";
import { BackupError, ErrorCode } from "../protocol/errors.ts";
import { deleteMessage, purgeChunks, storedMessage, subjectCounts, type StoredMessageSummary } from "./bucket-stream.ts";
import { ChunkTally, chunkSubject, streamOf, tallyMeta, type ObjectMetaRecord } from "./object-format.ts";
import { publishMeta, readMeta } from "./object-writes.ts";
import { SubjectFeed, type FeedOptions, type StoredMessage, type StoredMessageHandler } from "./subject-feed.ts";

export class ArchiveUpload {
  readonly nuid = nuid.next();
  readonly subject: string;
  /** What was hashed: the caller hands it the chunks (seen going by, or read back). */
  readonly tally: ChunkTally;
  #feed: SubjectFeed | null = null;
  /** Chunks published by a relay. */
  #relayed: (() => number) | null = null;

  constructor(
    private readonly nc: NatsConnection,
    private readonly js: JetStreamClient,
    readonly bucket: string,
    readonly name: string,
    private readonly maxChunkSize: number,
    observe?: (bytes: Uint8Array) => void,
  ) {
    this.subject = chunkSubject(bucket, this.nuid);
    this.tally = new ChunkTally(observe);
  }

  /**
   * What the bucket stores on the upload's subject, in order, as it is stored. Opened before
   * anything is sent there; the caller decides which message is the last.
   */
  async stored(bulk: BulkConnection, handler: StoredMessageHandler, opts: FeedOptions): Promise<SubjectFeed> {
    this.#feed = await SubjectFeed.open(this.nc, bulk, streamOf(this.bucket), this.subject, handler, {
      description: `nats-backup: upload of ${this.name}`,
      ...opts,
    });
    return this.#feed;
  }

  /**
   * Relays a snapshot into the bucket: returns the subject to have the server send it to (an
   * inbox of `bulk`, subscribed), and `ended`, which resolves once the server's end message came
   * and the bucket stored every chunk. Each chunk is acked to the server only once stored, so a
   * server that waits for acks (2.10.12+) never runs ahead of the bucket.
   */
  async relay(bulk: BulkConnection, opts: { stream: string; idleMs: number; onChunk?: () => void }): Promise<RelayedSnapshot> {
    const deliver = createInbox();
    const acks = createInbox();
    /** The server's ack subject of each chunk published and not yet stored (none for a last short chunk). */
    const unstored = new Map<number, string | undefined>();
    let published = 0;
    let endSeen = false;
    let failed: ((err: Error) => void) | null = null;
    let allStored: () => void = () => {};
    const stored = new Promise<void>((resolve, reject) => {
      allStored = resolve;
      failed = reject;
    });
    stored.catch(() => {});
    /** Called once the bucket answered every chunk published so far, stored or refused (or can answer no more). */
    const whenAnswered: (() => void)[] = [];
    let acksLost = false;
    const allAnswered = () => new Promise<void>((resolve) => (unstored.size === 0 || acksLost ? resolve() : whenAnswered.push(resolve)));
    // The bucket's publish acks, each naming its chunk.
    const acksSub = bulk.subscribeReplies(acks, {
      reply: (token, answer) => {
        const k = Number(token);
        const serverAck = unstored.get(k);
        const known = unstored.delete(k);
        if (unstored.size === 0) for (const answered of whenAnswered.splice(0)) answered();
        const error = storeError(answer);
        if (error) return failed?.(new BackupError(ErrorCode.Internal, `bucket ${this.bucket} did not store chunk ${k} of ${this.name}: ${error}`));
        if (!known) return;
        if (serverAck) bulk.publish(serverAck);
        if (endSeen && unstored.size === 0) allStored();
      },
      lost: (err) => {
        acksLost = true;
        for (const answered of whenAnswered.splice(0)) answered();
        failed?.(err);
      },
    });
    let out: OutgoingPayload | null = null;
    const watch: Watch = await watchSubject(
      bulk,
      deliver,
      {
        begin: (msg) => {
          if (snapshotMessage(opts.stream, msg) === "end") return void (out = null);
          const k = ++published;
          unstored.set(k, msg.reply);
          out = bulk.publishPayload(this.subject, `${acks}.${k}`, msg.size);
        },
        part: (bytes) => {
          this.tally.part(bytes);
          out?.write(bytes);
        },
        end: () => {
          if (!out) {
            endSeen = true;
            if (unstored.size === 0) allStored();
            return "done";
          }
          out.end();
          this.tally.endChunk();
          opts.onChunk?.();
          return "more";
        },
      },
      { what: `the snapshot of ${opts.stream}`, idleMs: opts.idleMs },
    ).catch((err: unknown) => {
      acksSub.unsubscribe();
      // Nothing else can carry a relayed snapshot: a refused subscription is the job's failure, in the server's words.
      throw err instanceof WatchLost && err.cause instanceof BulkPermissionError ? err.cause : err;
    });
    this.#relayed = () => published;
    const ended = (async () => {
      try {
        // A chunk the bucket refused ends the relay at once, in the bucket's words.
        await Promise.race([watch.ended, stored]);
        await withTimeout(stored, opts.idleMs, () => new BackupError(ErrorCode.Unavailable, `bucket ${this.bucket} did not store the last chunks of ${this.name} within ${opts.idleMs / 1000}s`));
      } catch (err) {
        // The bucket stores what it was sent a little later: a purge now would miss chunks still
        // on their way in (seen on 2.10 with 8 MiB in flight), so wait for its answers, bounded.
        watch.stop();
        await withTimeout(allAnswered(), opts.idleMs, () => new Error("unanswered")).catch(() => {});
        throw err;
      } finally {
        watch.stop();
        acksSub.unsubscribe();
      }
    })();
    ended.catch(() => {});
    return {
      subject: deliver,
      ended,
      // `ended` then rejects, once the bucket answered what was published.
      stop: () => watch.stop(),
    };
  }

  /** After a relay ended: checks that the bucket holds every chunk relayed, then makes the object visible. */
  async finishRelayed(): Promise<ObjectMetaRecord> {
    const relayed = this.#relayed?.() ?? 0;
    const stored = (await subjectCounts(this.nc, this.bucket, this.subject))[this.subject] ?? 0;
    if (stored !== relayed) {
      throw new BackupError(ErrorCode.Internal, `bucket ${this.bucket} holds ${stored} of the ${relayed} chunks relayed for ${this.name}`);
    }
    return this.#commit();
  }

  /** After the last chunk was read back, given the end message the sender stored. */
  async finish(end: StoredMessage): Promise<ObjectMetaRecord> {
    await this.#feed?.close();
    if (end.pending !== 0) {
      throw new BackupError(ErrorCode.Internal, `bucket ${this.bucket} holds ${end.pending} unexpected messages after the end of ${this.name}`);
    }
    return this.#commit(end.seq);
  }

  /**
   * After the sender's end message was seen on its way in: checks that the bucket stored every
   * message seen (`messagesSeen`, the end included), in which case what was hashed is what it holds.
   */
  async finishWatched(messagesSeen: number): Promise<ObjectMetaRecord> {
    const stored = await this.#storedAtLeast(messagesSeen);
    if (stored !== messagesSeen) {
      throw new BackupError(
        ErrorCode.Internal,
        `bucket ${this.bucket} holds ${stored} of the ${messagesSeen} messages the server sent for ${this.name} (is the bucket full?)`,
      );
    }
    const last = await this.#lastStored();
    if (!last?.empty) throw new BackupError(ErrorCode.Internal, `the last message of ${this.name} in bucket ${this.bucket} is not the snapshot's end`);
    return this.#commit(last.seq);
  }

  /** Removes the sender's empty end message, if it stored one (a restore would take it for its own end), then publishes the metadata. */
  async #commit(endSeq?: number): Promise<ObjectMetaRecord> {
    if (endSeq !== undefined) await deleteMessage(this.nc, this.bucket, endSeq);
    const meta = tallyMeta(this, this.maxChunkSize, this.tally);
    // No rollup (see object-writes.ts); a retried backup replaces the deleted record of its first try.
    const replaced = await readMeta(this.nc, this.bucket, this.name);
    await publishMeta(this.js, meta, replaced?.seq ?? 0);
    return meta;
  }

  /** The stream stores what it is sent a little after the sender sent it: wait, within bounds, for the count. */
  async #storedAtLeast(expected: number, quietMs = 10_000): Promise<number> {
    // Until the count reaches it, or stops growing for `quietMs` (a replicated bucket may trail a
    // watcher that acked what it saw by more than any fixed time on a large archive).
    let last = -1;
    let lastChange = Date.now();
    while (true) {
      const stored = (await subjectCounts(this.nc, this.bucket, this.subject))[this.subject] ?? 0;
      if (stored !== last) {
        last = stored;
        lastChange = Date.now();
      }
      if (stored >= expected || Date.now() - lastChange > quietMs) return stored;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  /**
   * Removes what the bucket stored for this upload; the object never became visible. A sender
   * that is still sending (`untilQuietMs` > 0) is waited for, until its empty end message is
   * stored or nothing new is stored for that long, so that no chunk lands after the purge.
   */
  async abort(untilQuietMs = 0): Promise<void> {
    await this.#feed?.close();
    if (untilQuietMs > 0) await this.#untilSenderDone(untilQuietMs);
    await purgeChunks(this.nc, this.bucket, this.nuid);
  }

  async #untilSenderDone(quietMs: number): Promise<void> {
    let lastSeq = -1;
    let lastChange = Date.now();
    while (Date.now() - lastChange < quietMs) {
      const last = await this.#lastStored();
      if (last && last.empty) return;
      const seq = last?.seq ?? 0;
      if (seq !== lastSeq) {
        lastSeq = seq;
        lastChange = Date.now();
      }
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }

  async #lastStored(): Promise<StoredMessageSummary | null> {
    return storedMessage(this.nc, this.bucket, { last_by_subj: this.subject }).catch(() => null);
  }
}

/**
 * Deletes a committed archive's snapshot end message again when a server crash brought it back:
 * 2.9 keeps a delete in memory until it next writes the block's index (up to minutes later), so a
 * server killed soon after a backup restarts with the empty end message back after the archive's
 * chunks, where a restore fed the chunks would take it for its own end. True when it was there.
 */
export async function dropRevivedEnd(nc: NatsConnection, bucket: string, nuid: string): Promise<boolean> {
  // (No last message at all is the usual case: 2.9's answer once a subject's last message was deleted.)
  const last = await storedMessage(nc, bucket, { last_by_subj: chunkSubject(bucket, nuid) });
  if (!last?.empty) return false;
  await deleteMessage(nc, bucket, last.seq);
  return true;
}

/** A snapshot relayed into the bucket (see `ArchiveUpload.relay`). */
export interface RelayedSnapshot {
  /** Where the server must send the snapshot. */
  subject: string;
  /**
   * Resolves once the end came and every chunk is stored; rejects with the server's or the
   * bucket's words, once the bucket answered every chunk published (or after the idle time).
   */
  ended: Promise<void>;
  stop(): void;
}

/** The error a JetStream publish ack carries, if any. */
function storeError(answer: string): string | null {
  try {
    const ack = JSON.parse(answer) as { error?: { description?: string; code?: number } };
    return ack.error ? `${ack.error.code ?? ""} ${ack.error.description ?? "error"}`.trim() : null;
  } catch {
    return `unexpected answer ${JSON.stringify(answer.slice(0, 200))}`;
  }
}

/** `promise`, or a rejection with `error()` once it has not settled within `ms`. */
function withTimeout<T>(promise: Promise<T>, ms: number, error: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(error()), ms);
    timer.unref();
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}
