/**
 * Watches a snapshot's deliver subject while a stream stores what arrives there. The server
 * starts a snapshot at once only if a subscription names its deliver subject exactly (otherwise
 * it waits 2 s), and it ends the snapshot early when that interest goes: a 2.9 server then sends
 * its normal empty end message, so the archive would be silently cut short. So the watch keeps
 * the interest for the whole snapshot and treats any break in it (a disconnect, for instance the
 * server dropping a connection that fell 64 MiB behind as a slow consumer) as fatal to the
 * attempt: `ended` rejects with `WatchLost`.
 *
 * Nothing throttles the server for the watcher (the stream's publish acks are the snapshot's
 * flow control), so each chunk is handled synchronously in the subscription's callback.
 */
import type { NatsConnection, QueuedIterator, Status } from "@nats-io/nats-core";
import { BackupError, ErrorCode } from "../protocol/errors.ts";
import { snapshotMessage } from "./snapshot.ts";

export class WatchLost extends BackupError {
  constructor(description: string) {
    super(ErrorCode.Unavailable, description);
  }
}

export interface SnapshotWatch {
  /** Messages seen on the subject, the end message included. */
  readonly messages: number;
  /** Resolves at the end message; rejects when the server ended with a failure or the watch broke. */
  readonly ended: Promise<void>;
  stop(): void;
}

export interface WatchOptions {
  stream: string;
  /** Fail when the server sends nothing for this long. */
  idleMs: number;
}

/** Subscribes to `subject` (before the snapshot is requested) and hands every chunk to `onChunk`. */
export async function watchSnapshot(
  nc: NatsConnection,
  subject: string,
  onChunk: (chunk: Uint8Array) => void,
  opts: WatchOptions,
): Promise<SnapshotWatch> {
  let messages = 0;
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
    idleTimer = setTimeout(
      () => settle(new WatchLost(`the server sent no snapshot data for stream ${opts.stream} for ${opts.idleMs / 1000}s`)),
      opts.idleMs,
    );
    idleTimer.unref();
  };

  const sub = nc.subscribe(subject, {
    callback: (err, msg) => {
      if (settled) return;
      if (err) return settle(new WatchLost(`watching the snapshot of ${opts.stream} failed: ${err.message}`));
      messages++;
      armIdle();
      try {
        if (snapshotMessage(opts.stream, msg) === "end") return settle();
        onChunk(msg.data);
      } catch (failure) {
        settle(failure as Error);
      }
    },
  });
  const statuses = nc.status() as QueuedIterator<Status>;
  void (async () => {
    for await (const status of statuses) {
      if (status.type === "disconnect" || status.type === "reconnect") {
        return settle(
          new WatchLost(`the connection watching the snapshot of ${opts.stream} dropped (${status.type}); the server may have cut the snapshot short`),
        );
      }
    }
  })();
  void sub.closed.then(() => settle(new WatchLost(`the subscription watching the snapshot of ${opts.stream} closed`)));

  function settle(failure?: Error): void {
    if (settled) return;
    settled = true;
    clearTimeout(idleTimer);
    statuses.stop();
    sub.unsubscribe();
    if (failure) rejectEnded(failure);
    else resolveEnded();
  }

  await nc.flush();
  armIdle();
  return {
    get messages() {
      return messages;
    },
    ended,
    stop: () => settle(new WatchLost("the watch was stopped")),
  };
}
