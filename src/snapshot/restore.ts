/**
 * The server's side of a restore: `$JS.API.STREAM.RESTORE.<stream>`, then the archive sent as
 * requests to the deliver subject the server names, several in flight, then an empty request
 * that makes the server build the stream.
 */
import type { NatsConnection } from "@nats-io/nats-core";
import { BackupError, ErrorCode } from "../protocol/errors.ts";
import { PipelinedRequests } from "../flow/pipelined-requests.ts";
import { JetStreamApiError, JsErrCode, jsApiRequest } from "./jsapi.ts";

export interface RestoreUploadOptions {
  /** Chunks awaiting the server's answer at once. */
  window: number;
  chunkTimeoutMs?: number;
  /** How long the server may take to build the stream after the last chunk. */
  finishTimeoutMs?: number;
}

export class RestoreUpload {
  #inFlight = new Set<Promise<void>>();
  #failure: BackupError | null = null;
  #done = false;
  readonly #requests: PipelinedRequests;

  constructor(
    private readonly nc: NatsConnection,
    readonly stream: string,
    private readonly deliver: string,
    private readonly opts: Required<RestoreUploadOptions>,
  ) {
    this.#requests = new PipelinedRequests(nc, opts.chunkTimeoutMs);
  }

  /** Sends one chunk; resolves when the window has room for the next. */
  async write(chunk: Uint8Array): Promise<void> {
    this.#throwIfFailed();
    const sent = this.#requests
      .request(this.deliver, chunk)
      .then((reply) => {
        const failure = replyError(this.stream, reply.string());
        if (failure) throw failure;
      })
      .catch((err: unknown) => {
        this.#failure ??=
          err instanceof BackupError
            ? err
            : noAnswer(this.stream, `a chunk within ${this.opts.chunkTimeoutMs / 1000}s`, err);
      })
      .finally(() => this.#inFlight.delete(sent));
    this.#inFlight.add(sent);
    while (this.#inFlight.size >= this.opts.window) await Promise.race(this.#inFlight);
    this.#throwIfFailed();
  }

  /** Waits for every chunk, then has the server build the stream. Returns the stream-create response text. */
  async finish(): Promise<string> {
    await Promise.all(this.#inFlight);
    this.#requests.close();
    this.#throwIfFailed();
    this.#done = true;
    let text: string;
    try {
      const reply = await this.nc.request(this.deliver, new Uint8Array(0), { timeout: this.opts.finishTimeoutMs });
      text = reply.string();
    } catch (err) {
      throw noAnswer(this.stream, "the final chunk", err);
    }
    const failure = replyError(this.stream, text);
    if (failure) throw failure;
    return text;
  }

  /** Tells the server to drop the upload: a chunk without a reply subject aborts a restore. */
  abort(): void {
    this.#requests.close();
    if (this.#done) return;
    this.#done = true;
    this.nc.publish(this.deliver, new TextEncoder().encode("abort"));
  }

  #throwIfFailed(): void {
    if (this.#failure) throw this.#failure;
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
  opts: RestoreUploadOptions,
): Promise<RestoreUpload> {
  let text: string;
  try {
    text = await jsApiRequest(nc, `STREAM.RESTORE.${stream}`, backupJson, 10_000);
  } catch (err) {
    if (err instanceof JetStreamApiError && err.errCode === JsErrCode.StreamNameInUse) {
      throw BackupError.conflict(`stream ${stream} already exist`);
    }
    throw err instanceof JetStreamApiError ? restoreFailed(stream, err.serverDescription, err.code) : err;
  }
  const { deliver_subject: deliver } = JSON.parse(text) as { deliver_subject?: string };
  if (!deliver) throw restoreFailed(stream, `the server named no deliver subject: ${text}`);
  return new RestoreUpload(nc, stream, deliver, {
    chunkTimeoutMs: 10_000,
    finishTimeoutMs: 600_000,
    ...opts,
  });
}

/** A chunk's answer is empty on success, `-ERR '…'` text or a JSON error otherwise. */
function replyError(stream: string, text: string): BackupError | null {
  if (text.length === 0) return null;
  if (text.startsWith("-ERR")) return restoreFailed(stream, text.replace(/^-ERR\s*'?|'$/g, ""));
  if (text.startsWith("{")) {
    const parsed = JSON.parse(text) as { error?: { code?: number; description?: string } };
    if (parsed.error) return restoreFailed(stream, parsed.error.description ?? text, parsed.error.code);
  }
  return null;
}

/** The server did not answer (restarted, connection lost, overloaded): 503, as for any JetStream silence. */
function noAnswer(stream: string, what: string, err: unknown): BackupError {
  return new BackupError(
    ErrorCode.Unavailable,
    `restore of stream ${stream} failed: the server did not answer ${what} (${(err as Error).message}); server restarted or connection lost?`,
    { cause: err },
  );
}

function restoreFailed(stream: string, why: string, code: number = ErrorCode.Internal): BackupError {
  return new BackupError(code >= 400 ? code : ErrorCode.Internal, `restore of stream ${stream} failed: ${why}`);
}
