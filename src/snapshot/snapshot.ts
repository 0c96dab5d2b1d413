/**
 * The server's side of a backup: `$JS.API.STREAM.SNAPSHOT.<stream>` and the chunks it pushes.
 * Chunks are yielded in order; each must be acked once it is safely stored, and those acks
 * are the server's flow control (enforced from 2.14, advisory on 2.9).
 */
import { createInbox, type Msg, type NatsConnection, type Subscription } from "@nats-io/nats-core";
import { BackupError, ErrorCode } from "../protocol/errors.ts";
import { JetStreamApiError, JsErrCode, jsApiRequest } from "./jsapi.ts";
import { rawMembers } from "./raw-json.ts";

export interface SnapshotOptions {
  chunkSize: number;
  consumers: boolean;
  check: boolean;
  /** Fail when the server sends nothing for this long. */
  idleTimeoutMs?: number;
}

export interface SnapshotChunk {
  readonly data: Uint8Array;
  /** Tells the server this chunk is stored. */
  ack(): void;
}

/** What the server says of the stream when it starts a snapshot. */
export interface StreamStateSummary {
  messages: number;
  bytes: number;
  first_seq: number;
  last_seq: number;
  consumer_count: number;
}

export class StreamSnapshot implements AsyncIterable<SnapshotChunk> {
  /** `{"config":…,"state":…}` exactly as the server sent them: the nats CLI's backup.json. */
  readonly backupJson: string;
  readonly state: StreamStateSummary;
  #queue: Msg[] = [];
  #queuedBytes = 0;
  #ended = false;
  #failure: Error | null = null;
  #wake: (() => void) | null = null;
  #idleTimer: NodeJS.Timeout | null = null;

  constructor(
    private readonly nc: NatsConnection,
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

  /** Bytes received from the server and not yet taken by the reader. */
  get queuedBytes(): number {
    return this.#queuedBytes;
  }

  /** Called by the subscription for every message on the deliver subject. */
  receive(msg: Msg): void {
    if (this.#ended) return;
    this.#armIdleTimer();
    if (msg.data.length === 0) {
      // The end: 2.9 sends no headers; 2.10+ a status, 204 on success.
      const status = msg.headers?.code ?? 0;
      if (status !== 0 && status !== 204) {
        const text = msg.headers?.description || "snapshot failed";
        this.#end(new BackupError(ErrorCode.Internal, `server ended the snapshot of ${this.stream} with ${status} ${text}`));
      } else {
        this.#end(null);
      }
      return;
    }
    this.#queue.push(msg);
    this.#queuedBytes += msg.data.length;
    this.#notify();
  }

  /** Stops reading; chunks not yet yielded are dropped. */
  cancel(reason: Error): void {
    this.#end(reason);
  }

  async *[Symbol.asyncIterator](): AsyncIterator<SnapshotChunk> {
    const nc = this.nc;
    while (true) {
      const msg = this.#queue.shift();
      if (msg) {
        this.#queuedBytes -= msg.data.length;
        const reply = msg.reply;
        yield { data: msg.data, ack: () => reply && nc.publish(reply) };
        continue;
      }
      if (this.#ended) {
        if (this.#failure) throw this.#failure;
        return;
      }
      await new Promise<void>((resolve) => (this.#wake = resolve));
    }
  }

  #end(failure: Error | null): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#failure = failure;
    if (failure) {
      this.#queue = [];
      this.#queuedBytes = 0;
    }
    if (this.#idleTimer) clearTimeout(this.#idleTimer);
    this.sub.unsubscribe();
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
      this.#end(
        new BackupError(
          ErrorCode.Unavailable,
          `the server sent no snapshot data for stream ${this.stream} for ${this.idleTimeoutMs / 1000}s (server restarted or connection lost?)`,
        ),
      );
    }, this.idleTimeoutMs);
    this.#idleTimer.unref();
  }
}

/**
 * Asks the server for a snapshot of `stream`. Resolves once the server accepted it; server
 * errors at the start (no such stream, a snapshot already running, memory storage) reject.
 */
export async function openSnapshot(nc: NatsConnection, stream: string, opts: SnapshotOptions): Promise<StreamSnapshot> {
  const deliver = createInbox();
  let snapshot: StreamSnapshot | null = null;
  const early: Msg[] = [];
  // Subscribe before asking: the server waits only briefly for interest on the deliver subject.
  const sub = nc.subscribe(deliver, {
    callback: (err, msg) => {
      if (err) snapshot?.cancel(err);
      else if (snapshot) snapshot.receive(msg);
      else early.push(msg);
    },
  });
  const request = JSON.stringify({
    deliver_subject: deliver,
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
  snapshot = new StreamSnapshot(nc, sub, stream, response, opts.idleTimeoutMs ?? 15_000);
  for (const msg of early) snapshot.receive(msg);
  void sub.closed.then(() => snapshot?.cancel(new BackupError(ErrorCode.Unavailable, "the NATS connection closed during the snapshot")));
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
