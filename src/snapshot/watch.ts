/**
 * Watching a subject the server sends bulk data on (a snapshot's chunks on their way into the
 * bucket) with a plain subscription that hashes them as they go by. Nothing slows the server for the watcher, and a server drops a connection
 * that falls 64 MiB (`max_pending`) behind as a slow consumer; so any break (a disconnect, a
 * closed subscription, silence) voids the watch: `ended` rejects with `WatchLost`, and the caller
 * must not trust what it saw.
 *
 * For a snapshot the watch is also the interest the server looks for: it starts at once only if a
 * subscription names its deliver subject exactly (otherwise it waits 2 s), and it ends early when
 * that interest goes, a 2.9 server with its normal empty end message, so a cut-short archive would
 * look whole.
 */
import type { Msg, NatsConnection, QueuedIterator, Status } from "@nats-io/nats-core";
import { BackupError, ErrorCode } from "../protocol/errors.ts";
import { snapshotMessage } from "./snapshot.ts";

export class WatchLost extends BackupError {
  constructor(description: string) {
    super(ErrorCode.Unavailable, description);
  }
}

export interface Watch {
  /** Messages seen on the subject. */
  readonly messages: number;
  /** Resolves when `onMessage` said `done`; rejects when it threw or the watch broke. */
  readonly ended: Promise<void>;
  stop(): void;
}

export interface WatchOptions {
  /** What is watched, for errors: "the snapshot of ORDERS". */
  what: string;
  /** Fail when nothing arrives for this long. */
  idleMs: number;
}

/** Subscribes to `subject` and hands every message to `onMessage` (synchronously, in order). */
export async function watchSubject(
  nc: NatsConnection,
  subject: string,
  onMessage: (msg: Msg) => "more" | "done",
  opts: WatchOptions,
): Promise<Watch> {
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
    idleTimer = setTimeout(() => settle(new WatchLost(`nothing arrived for ${opts.idleMs / 1000}s watching ${opts.what}`)), opts.idleMs);
    idleTimer.unref();
  };

  const sub = nc.subscribe(subject, {
    callback: (err, msg) => {
      if (settled) return;
      if (err) return settle(new WatchLost(`watching ${opts.what} failed: ${err.message}`));
      messages++;
      armIdle();
      try {
        if (onMessage(msg) === "done") settle();
      } catch (failure) {
        settle(failure as Error);
      }
    },
  });
  const statuses = nc.status() as QueuedIterator<Status>;
  void (async () => {
    for await (const status of statuses) {
      if (status.type === "disconnect" || status.type === "reconnect") {
        return settle(new WatchLost(`the connection watching ${opts.what} dropped (${status.type}), so what it saw cannot be trusted`));
      }
    }
  })();
  void sub.closed.then(() => settle(new WatchLost(`the subscription watching ${opts.what} closed`)));

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
    stop: () => settle(new WatchLost(`the watch on ${opts.what} was stopped`)),
  };
}

/** Watches a snapshot's deliver subject (before the snapshot is requested); `ended` resolves at its end message. */
export function watchSnapshot(
  nc: NatsConnection,
  subject: string,
  onChunk: (chunk: Uint8Array) => void,
  opts: { stream: string; idleMs: number },
): Promise<Watch> {
  return watchSubject(
    nc,
    subject,
    (msg) => {
      if (snapshotMessage(opts.stream, msg) === "end") return "done";
      onChunk(msg.data);
      return "more";
    },
    { what: `the snapshot of ${opts.stream}`, idleMs: opts.idleMs },
  );
}
