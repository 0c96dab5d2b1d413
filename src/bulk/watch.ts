/**
 * Watching a subject on a bulk connection as messages go by, to someone else (a snapshot's
 * chunks on their way into the bucket, an archive's chunks on their way to a restore). Nothing
 * slows the sender for the watcher, and a server drops a connection that falls 64 MiB
 * (`max_pending`) behind as a slow consumer; so any break (the connection lost, silence) voids
 * the watch: `ended` rejects with `WatchLost`, and the caller must not trust what it saw.
 */
import { BackupError, ErrorCode } from "../protocol/errors.ts";
import { BulkConnectionError, BulkPermissionError, type BulkConnection, type BulkMessage } from "./bulk-connection.ts";

export class WatchLost extends BackupError {
  constructor(description: string, options?: { cause?: unknown }) {
    super(ErrorCode.Unavailable, description, options);
  }
}

/** Called synchronously, in order; a call that throws ends the watch with what it threw. */
export interface WatchHandler {
  begin(msg: BulkMessage): void;
  part(bytes: Uint8Array): void;
  /** `done` ends the watch (it resolves). */
  end(): "more" | "done";
}

export interface Watch {
  /** Messages seen. */
  readonly messages: number;
  /** Resolves when the handler said `done`; rejects when it threw or the watch broke. */
  readonly ended: Promise<void>;
  stop(): void;
}

export interface WatchOptions {
  /** What is watched, for errors: "the snapshot of ORDERS". */
  what: string;
  /** Fail when nothing arrives for this long. */
  idleMs: number;
}

/**
 * Subscribes to `subject` (the server knows of it when this resolves) and hands every message to
 * `handler`. A subscription the server refuses (no permission) is a WatchLost too, naming the
 * permission: the caller has another way to see the data.
 */
export async function watchSubject(bulk: BulkConnection, subject: string, handler: WatchHandler, opts: WatchOptions): Promise<Watch> {
  let messages = 0;
  let settled = false;
  let failed: Error | undefined;
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

  const sub = bulk.subscribe(subject, {
    begin: (msg) => {
      if (settled) return;
      messages++;
      armIdle();
      handler.begin(msg);
    },
    part: (bytes) => {
      if (!settled) handler.part(bytes);
    },
    end: () => {
      if (!settled && handler.end() === "done") settle();
    },
    // What the handler threw stands; anything else (the connection broke) voids the watch.
    lost: (err) =>
      settle(
        err instanceof BackupError && !(err instanceof BulkConnectionError)
          ? err
          : new WatchLost(`the connection watching ${opts.what} broke (${err.message}), so what it saw cannot be trusted`),
      ),
  });

  function settle(failure?: Error): void {
    if (settled) return;
    settled = true;
    failed = failure;
    clearTimeout(idleTimer);
    sub.unsubscribe();
    if (failure) rejectEnded(failure);
    else resolveEnded();
  }

  try {
    await bulk.flush();
  } catch (err) {
    settle(err as Error);
    throw new WatchLost(`could not start watching ${opts.what}: ${(err as Error).message}`);
  }
  // The server answers a SUB it refuses before the flush's PONG.
  if (failed instanceof BulkPermissionError) {
    throw new WatchLost(`may not watch ${opts.what}: ${failed.description}`, { cause: failed });
  }
  armIdle();
  return {
    get messages() {
      return messages;
    },
    ended,
    stop: () => settle(new WatchLost(`the watch on ${opts.what} was stopped`)),
  };
}
