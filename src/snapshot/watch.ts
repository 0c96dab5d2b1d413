/**
 * Watching a snapshot's chunks on their way into the bucket, with a plain subscription on a bulk
 * connection that hashes them as they go by. Nothing slows the server for the watcher, and a
 * server drops a connection that falls 64 MiB (`max_pending`) behind as a slow consumer; so any
 * break (the connection lost, silence) voids the watch: `ended` rejects with `WatchLost`, and the
 * caller must not trust what it saw.
 *
 * The watch is also the interest the server looks for: it starts at once only if a subscription
 * names its deliver subject exactly (otherwise it waits 2 s), and it ends early when that
 * interest goes, a 2.9 server with its normal empty end message, so a cut-short archive would
 * look whole.
 */
import type { BulkConnection } from "../bulk/bulk-connection.ts";
import type { ChunkSink } from "../catalogue/object-format.ts";
import { BackupError, ErrorCode } from "../protocol/errors.ts";
import { snapshotMessage } from "./snapshot.ts";

export class WatchLost extends BackupError {
  constructor(description: string) {
    super(ErrorCode.Unavailable, description);
  }
}

export interface Watch {
  /** Messages seen, the end message included. */
  readonly messages: number;
  /** Resolves at the snapshot's end message; rejects when the snapshot failed or the watch broke. */
  readonly ended: Promise<void>;
  stop(): void;
}

export interface WatchOptions {
  stream: string;
  /** Fail when nothing arrives for this long. */
  idleMs: number;
  /** After each chunk. */
  onChunk?: () => void;
}

/** Subscribes to a snapshot's deliver subject (before the snapshot is requested) and hands its chunks to `sink`. */
export async function watchSnapshot(bulk: BulkConnection, subject: string, sink: ChunkSink, opts: WatchOptions): Promise<Watch> {
  const what = `the snapshot of ${opts.stream}`;
  let messages = 0;
  let isEnd = false;
  let settled = false;
  let resolveEnded!: () => void;
  let rejectEnded!: (err: Error) => void;
  const ended = new Promise<void>((resolve, reject) => {
    resolveEnded = resolve;
    rejectEnded = reject;
  });
  ended.catch(() => {});
  let idleTimer: NodeJS.Timeout | undefined;
  const armIdle = () => {
    clearTimeout(idleTimer);
    idleTimer = setTimeout(() => settle(new WatchLost(`nothing arrived for ${opts.idleMs / 1000}s watching ${what}`)), opts.idleMs);
    idleTimer.unref();
  };

  const sub = bulk.subscribe(subject, {
    begin: (msg) => {
      messages++;
      armIdle();
      isEnd = snapshotMessage(opts.stream, msg) === "end";
    },
    part: (bytes) => sink.part(bytes),
    end: () => {
      if (isEnd) return settle();
      sink.endChunk();
      opts.onChunk?.();
    },
    lost: (err) =>
      settle(
        err instanceof BackupError
          ? err
          : new WatchLost(`the connection watching ${what} broke (${err.message}), so what it saw cannot be trusted`),
      ),
  });

  function settle(failure?: Error): void {
    if (settled) return;
    settled = true;
    clearTimeout(idleTimer);
    sub.unsubscribe();
    if (failure) rejectEnded(failure);
    else resolveEnded();
  }

  await bulk.flush();
  armIdle();
  return {
    get messages() {
      return messages;
    },
    ended,
    stop: () => settle(new WatchLost(`the watch on ${what} was stopped`)),
  };
}
