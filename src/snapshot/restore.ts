/**
 * The server's side of a restore: `$JS.API.STREAM.RESTORE.<stream>` names a subject that takes
 * the archive as requests (each answered once written), then an empty request that makes the
 * server build the stream. Who sends the chunks is the caller's choice (see
 * catalogue/archive-delivery.ts); this side starts, finishes or aborts.
 */
import type { NatsConnection } from "@nats-io/nats-core";
import { BackupError, ErrorCode } from "../protocol/errors.ts";
import { JetStreamApiError, JsErrCode, jsApiRequest } from "../jetstream/jsapi.ts";

export class RestoreSession {
  #done = false;
  readonly #lost: { promise: Promise<never>; stop: () => void };

  constructor(
    private readonly nc: NatsConnection,
    readonly stream: string,
    /** Where the archive's chunks go. */
    readonly deliverSubject: string,
    private readonly finishTimeoutMs: number,
  ) {
    this.#lost = connectionLost(nc);
  }

  /**
   * Rejects when the connection drops during the restore: the server's restore does not
   * survive a restart, so the caller should stop waiting for anything else.
   */
  get lost(): Promise<never> {
    return this.#lost.promise.catch((err: unknown) => {
      throw new BackupError(
        ErrorCode.Unavailable,
        `restore of stream ${this.stream} failed: the ${(err as Error).message} during the restore; server restarted or connection lost?`,
      );
    });
  }

  /** After every chunk was answered: has the server build the stream. Returns the stream-create response text. */
  async finish(): Promise<string> {
    this.#done = true;
    let text: string;
    try {
      const reply = await Promise.race([
        this.nc.request(this.deliverSubject, new Uint8Array(0), { timeout: this.finishTimeoutMs }),
        this.#lost.promise,
      ]);
      text = reply.string();
    } catch (err) {
      throw new BackupError(
        ErrorCode.Unavailable,
        `restore of stream ${this.stream} failed: the server did not answer the final chunk (${(err as Error).message}); server restarted or connection lost?`,
        { cause: err },
      );
    } finally {
      this.#lost.stop();
    }
    const failure = replyError(this.stream, text);
    if (failure) throw failure;
    return text;
  }

  /**
   * The error in the server's answer to one chunk (see `chunkAnswerError`). An error means the
   * server ended its restore: nothing more is sent to it, not even `abort`, which a server before
   * 2.12.6 would block on (see `Capabilities.stagesRestores`).
   */
  chunkAnswer(text: string): BackupError | null {
    const failure = chunkAnswerError(this.stream, text);
    if (failure) this.#done = true;
    return failure;
  }

  /** Tells the server to drop the upload: a chunk without a reply subject aborts a restore. */
  abort(): void {
    this.#lost.stop();
    if (this.#done) return;
    this.#done = true;
    this.nc.publish(this.deliverSubject, new TextEncoder().encode("abort"));
  }
}

/**
 * Asks the server to restore `stream` from `{config, state}` (the backup.json text).
 * Rejects when the server refuses (the stream exists, no peers, …).
 */
export async function startRestore(
  nc: NatsConnection,
  stream: string,
  backupJson: string,
  finishTimeoutMs: number,
  /** How long the server may take to place the stream and answer (longer in a degraded cluster). */
  requestTimeoutMs = 10_000,
): Promise<RestoreSession> {
  let text: string;
  try {
    text = await jsApiRequest(nc, `STREAM.RESTORE.${stream}`, backupJson, requestTimeoutMs);
  } catch (err) {
    if (err instanceof JetStreamApiError && err.errCode === JsErrCode.StreamNameInUse) {
      throw BackupError.conflict(`stream ${stream} already exist`);
    }
    // A configuration field the server does not know: the job names both versions (restore-job.ts).
    if (err instanceof JetStreamApiError && err.errCode === JsErrCode.InvalidJson) throw err;
    throw err instanceof JetStreamApiError ? restoreFailed(stream, err.serverDescription, err.code) : err;
  }
  const { deliver_subject: deliver } = JSON.parse(text) as { deliver_subject?: string };
  if (!deliver) throw restoreFailed(stream, `the server named no deliver subject: ${text}`);
  return new RestoreSession(nc, stream, deliver, finishTimeoutMs);
}

/**
 * The error in the restore's answer to one chunk: none when empty (taken); `-ERR '…'` text up to
 * 2.12.5, a JSON error from 2.12.6 (which then answers no later chunk).
 */
function chunkAnswerError(stream: string, text: string): BackupError | null {
  return text.length === 0 ? null : replyError(stream, text);
}

/** The final answer is the stream-create response, `-ERR '…'` text or a JSON error. */
function replyError(stream: string, text: string): BackupError | null {
  if (text.startsWith("-ERR")) return restoreFailed(stream, text.replace(/^-ERR\s*'?|'$/g, ""));
  if (text.startsWith("{")) {
    const parsed = JSON.parse(text) as { error?: { code?: number; description?: string } };
    if (parsed.error) return restoreFailed(stream, parsed.error.description ?? text, parsed.error.code);
    return null;
  }
  return restoreFailed(stream, `unexpected answer ${JSON.stringify(text.slice(0, 200))}`);
}

function restoreFailed(stream: string, why: string, code: number = ErrorCode.Internal): BackupError {
  return new BackupError(code >= 400 ? code : ErrorCode.Internal, `restore of stream ${stream} failed: ${why}`);
}

/** Rejects when the connection drops: a server restart ends its restore, so waiting on is pointless. */
function connectionLost(nc: NatsConnection): { promise: Promise<never>; stop: () => void } {
  const events = nc.status()[Symbol.asyncIterator]();
  const promise = (async (): Promise<never> => {
    for (let e = await events.next(); !e.done; e = await events.next()) {
      if (e.value.type === "disconnect" || e.value.type === "close") throw new Error(`connection ${e.value.type === "close" ? "closed" : "dropped"}`);
    }
    return new Promise<never>(() => {});
  })();
  promise.catch(() => {});
  return { promise, stop: () => void events.return?.() };
}
