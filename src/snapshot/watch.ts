/**
 * Watching a snapshot's chunks on their way into the bucket (see bulk/watch.ts), hashing them as
 * they go by. The watch is also the interest the server looks for: it starts at once only if a
 * subscription names its deliver subject exactly (otherwise it waits 2 s), and it ends early when
 * that interest goes, a 2.9 server with its normal empty end message, so a cut-short archive
 * would look whole: hence a lost watch voids the snapshot.
 */
import type { BulkConnection } from "../bulk/bulk-connection.ts";
import { watchSubject, type Watch } from "../bulk/watch.ts";
import { snapshotMessage } from "./snapshot.ts";

/** Where an object's chunks go as they are read: each in pieces, then its end. */
export interface ChunkSink {
  part(bytes: Uint8Array): void;
  endChunk(): void;
}

export interface SnapshotWatchOptions {
  stream: string;
  /** Fail when nothing arrives for this long. */
  idleMs: number;
  /** After each chunk. */
  onChunk?: () => void;
  /**
   * Ack each chunk to the server once seen, for servers whose bucket stream will not (2.14.10+,
   * 2.15.3+: no ack to a JetStream reply subject): the watcher then paces the server, and the
   * bucket's count of what it stored is checked at the end.
   */
  ackChunks?: boolean;
}

/**
 * Subscribes to a snapshot's deliver subject (before the snapshot is requested) and hands its
 * chunks to `sink`; `ended` resolves at the end message (`messages` counts it).
 */
export function watchSnapshot(bulk: BulkConnection, subject: string, sink: ChunkSink, opts: SnapshotWatchOptions): Promise<Watch> {
  let isEnd = false;
  let reply: string | undefined;
  return watchSubject(
    bulk,
    subject,
    {
      begin: (msg) => {
        isEnd = snapshotMessage(opts.stream, msg) === "end";
        reply = msg.reply;
      },
      part: (bytes) => sink.part(bytes),
      end: () => {
        if (isEnd) return "done";
        sink.endChunk();
        if (opts.ackChunks && reply) bulk.publish(reply);
        opts.onChunk?.();
        return "more";
      },
    },
    { what: `the snapshot of ${opts.stream}`, idleMs: opts.idleMs },
  );
}
