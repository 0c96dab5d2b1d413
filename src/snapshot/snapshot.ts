/**
 * The server's side of a backup: `$JS.API.STREAM.SNAPSHOT.<stream>` and the chunks it sends.
 * The chunks go to a deliver subject the caller chose; when that subject belongs to a stream
 * (the bucket's chunk subject), the stream stores each chunk and its publish ack is the ack the
 * snapshot's flow control waits for. This side watches the same subject: it yields each chunk in
 * order, notices the end (2.9: an empty message; 2.10+: an empty message with a status, 204 on
 * success, 408/500 on failure) and fails when the server goes quiet.
 */
import type { Msg, NatsConnection, Subscription } from "@nats-io/nats-core";
import { BackupError, ErrorCode } from "../protocol/errors.ts";
import { JetStreamApiError, JsErrCode, jsApiRequest } from "./jsapi.ts";
import { rawMembers } from "./raw-json.ts";

export interface SnapshotOptions {
  /** Where the server sends the chunks. */
  deliverSubject: string;
  chunkSize: number;
  consumers: boolean;
  check: boolean;
  /** Fail when the server sends nothing for this long. */
  idleTimeoutMs?: number;
}

/** What the server says of the stream when it starts a snapshot. */
export interface StreamStateSummary {
  messages: number;
  bytes: number;
  first_seq: number;
  last_seq: number;
  consumer_count: number;
}

export class StreamSnapshot implements AsyncIterable<Uint8Array> {
  /** `{"config":…,"state":…}` exactly as the server sent them: the nats CLI's backup.json. */
  readonly backupJson: string;
  readonly state: StreamStateSummary;
  #queue: Uint8Array[] = [];
  #queuedBytes = 0;
  #messages = 0;
  #serverDone = false;
  #failure: Error | null = null;
  #wake: (() => void) | null = null;
  #onServerDone: (() => void)[] = [];
  #idleTimer: NodeJS.Timeout | null = null;

  constructor(
    private readonly sub: Subscription,
    readonly stream: string,
    response: string,
    private readonly idleTimeoutMs: number,
  ) {
    const members = rawMembers(response);
    const config = members.get("config");
    const state = members.get("state");
    if (!config || !state) throw new BackupError(ErrorCode.Internal, `snapshot response for ${stream} lacks config or state`);
    this.backupJson = `{"config":${config},"state":${state}}`;
    const s = JSON.parse(state) as Partial<StreamStateSummary>;
    this.state = {
      messages: s.messages ?? 0,
      bytes: s.bytes ?? 0,
      first_seq: s.first_seq ?? 0,
      last_seq: s.last_seq ?? 0,
      consumer_count: s.consumer_count ?? 0,
    };
    this.#armIdleTimer();
  }

  /** Every message the server sent on the deliver subject so far, the end message included. */
  get messages(): number {
    return this.#messages;
  }

  /** The server has sent its last message (or went quiet). */
  get serverDone(): boolean {
    return this.#serverDone;
  }

  /** Bytes received and not yet taken by the reader. */
  get queuedBytes(): number {
    return this.#queuedBytes;
  }

  /** Called by the subscription for every message on the deliver subject. */
  receive(msg: Msg): void {
    if (this.#serverDone) return;
    this.#messages++;
    this.#armIdleTimer();
    if (msg.data.length > 0) {
      if (this.#failure) return;
      this.#queue.push(msg.data);
      this.#queuedBytes += msg.data.length;
      this.#notify();
      return;
    }
    // The end: 2.9 sends no headers; 2.10+ a status, 204 on success.
    const status = msg.headers?.code ?? 0;
    if (status !== 0 && status !== 204) {
      const text = msg.headers?.description || "snapshot failed";
      this.#fail(new BackupError(ErrorCode.Internal, `server ended the snapshot of ${this.stream} with ${status} ${text}`));
    }
    this.#finishServer();
  }

  /** Stops yielding chunks; the subscription stays until the server ends (see `settled`). */
  cancel(reason: Error): void {
    this.#fail(reason);
  }

  /** Resolves when the server has sent its last message, or after `timeoutMs`; then stops listening. */
  async settled(timeoutMs: number): Promise<void> {
    if (!this.#serverDone) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, timeoutMs);
        this.#onServerDone.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    this.#finishServer();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    while (true) {
      if (this.#failure) throw this.#failure;
      const chunk = this.#queue.shift();
      if (chunk) {
        this.#queuedBytes -= chunk.length;
        yield chunk;
        continue;
      }
      if (this.#serverDone) return;
      await new Promise<void>((resolve) => (this.#wake = resolve));
    }
  }

  #fail(failure: Error): void {
    this.#failure ??= failure;
    this.#queue = [];
    this.#queuedBytes = 0;
    this.#notify();
  }

  #finishServer(): void {
    if (this.#serverDone) return;
    this.#serverDone = true;
    if (this.#idleTimer) clearTimeout(this.#idleTimer);
    this.sub.unsubscribe();
    for (const done of this.#onServerDone.splice(0)) done();
    this.#notify();
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
  }

  #armIdleTimer(): void {
    if (this.#idleTimer) clearTimeout(this.#idleTimer);
    this.#idleTimer = setTimeout(() => {
      this.#fail(
        new BackupError(
          ErrorCode.Unavailable,
          `the server sent no snapshot data for stream ${this.stream} for ${this.idleTimeoutMs / 1000}s (server restarted or connection lost?)`,
        ),
      );
      this.#finishServer();
    }, this.idleTimeoutMs);
    this.#idleTimer.unref();
  }
}

/**
 * Asks the server for a snapshot of `stream`. Resolves once the server accepted it; server
 * errors at the start (no such stream, a snapshot already running, memory storage) reject.
 */
export async function openSnapshot(nc: NatsConnection, stream: string, opts: SnapshotOptions): Promise<StreamSnapshot> {
  let snapshot: StreamSnapshot | null = null;
  const early: Msg[] = [];
  // Subscribe before asking: the server waits only briefly for interest on the deliver subject.
  const sub = nc.subscribe(opts.deliverSubject, {
    callback: (err, msg) => {
      if (err) snapshot?.cancel(err);
      else if (snapshot) snapshot.receive(msg);
      else early.push(msg);
    },
  });
  await nc.flush();
  const request = JSON.stringify({
    deliver_subject: opts.deliverSubject,
    chunk_size: opts.chunkSize,
    no_consumers: !opts.consumers,
    jsck: opts.check,
  });
  let response: string;
  try {
    // A checked snapshot verifies every message before answering.
    response = await jsApiRequest(nc, `STREAM.SNAPSHOT.${stream}`, request, opts.check ? 120_000 : 10_000);
  } catch (err) {
    sub.unsubscribe();
    throw describeSnapshotError(stream, err);
  }
  snapshot = new StreamSnapshot(sub, stream, response, opts.idleTimeoutMs ?? 15_000);
  for (const msg of early) snapshot.receive(msg);
  void sub.closed.then(() => {
    if (snapshot && !snapshot.serverDone) {
      snapshot.cancel(new BackupError(ErrorCode.Unavailable, "the NATS connection closed during the snapshot"));
    }
  });
  return snapshot;
}

function describeSnapshotError(stream: string, err: unknown): BackupError {
  if (!(err instanceof JetStreamApiError)) return BackupError.from(err);
  if (err.errCode === JsErrCode.StreamNotFound) return BackupError.notFound(`stream ${stream} not found`);
  const text = err.serverDescription;
  if (/in progress/i.test(text)) {
    return BackupError.conflict(`the server is already taking a snapshot of stream ${stream} (${text})`);
  }
  if (/no impl/i.test(text)) {
    return BackupError.badRequest(`stream ${stream} uses memory storage, which the server cannot snapshot (${text})`);
  }
  return err;
}
