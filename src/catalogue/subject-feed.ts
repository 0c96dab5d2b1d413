/**
 * Reads, in order, what the bucket's stream stores on one subject, through an ephemeral push
 * consumer whose acks are the flow control: the server keeps at most `window` messages unacked,
 * and a message is acked only when the reader asks for the next one. A slow reader therefore
 * slows the server's delivery instead of piling bytes on the connection, where the server would
 * cut the whole connection off as a slow consumer once 64 MiB are pending. (A plain subscription
 * to a snapshot's chunks has no such bound: a 2.9 server waits only 10 ms for snapshot acks.)
 */
import { createInbox, type Msg, type MsgHdrs, type NatsConnection, type Subscription } from "@nats-io/nats-core";
import { BackupError, ErrorCode } from "../protocol/errors.ts";
import { jsApiRequest } from "../snapshot/jsapi.ts";

export interface FeedOptions {
  /** Messages delivered and not yet acked, at most. */
  window: number;
  /** Fail when no stored message arrives for this long. */
  idleMs: number;
  /** The error to fail with when idle; the default names the subject. */
  idleError?: (idleMs: number) => Error;
  description?: string;
}

/** A stored message, with where it sits in the stream. */
export interface FeedMessage {
  data: Uint8Array;
  headers?: MsgHdrs;
  /** Stream sequence. */
  seq: number;
  /** Messages on the subject stored after this one and not delivered yet. */
  pending: number;
}

const AckWaitNanos = 600 * 1e9;

export class SubjectFeed implements AsyncIterable<FeedMessage> {
  #queue: Msg[] = [];
  #failure: Error | null = null;
  #wake: (() => void) | null = null;
  #idleTimer: NodeJS.Timeout | null = null;
  #consumer: string | null = null;
  #closed = false;
  #delivered = 0;

  private constructor(
    /** JetStream API requests. */
    private readonly nc: NatsConnection,
    readonly stream: string,
    readonly subject: string,
    private readonly sub: Subscription,
    private readonly opts: FeedOptions,
  ) {}

  /**
   * Starts delivery from the subject's first stored message (and of everything stored later).
   * `via` receives the messages (a data connection); `nc` makes the API requests.
   */
  static async open(nc: NatsConnection, via: NatsConnection, stream: string, subject: string, opts: FeedOptions): Promise<SubjectFeed> {
    const inbox = createInbox();
    let feed: SubjectFeed | null = null;
    const sub = via.subscribe(inbox, { callback: (err, msg) => (err ? feed?.fail(err) : feed?.receive(msg)) });
    feed = new SubjectFeed(nc, stream, subject, sub, opts);
    // The server must know the inbox before the consumer delivers to it (the connection may be reconnecting).
    try {
      await flushWithin(via, opts.idleMs);
    } catch (err) {
      sub.unsubscribe();
      throw err;
    }
    void sub.closed.then(() => feed.fail(new BackupError(ErrorCode.Unavailable, `the NATS connection closed while reading ${subject}`)));
    const config = {
      deliver_subject: inbox,
      filter_subject: subject,
      deliver_policy: "all",
      ack_policy: "explicit",
      ack_wait: AckWaitNanos,
      // A message delivered twice would be hashed twice: never redeliver.
      max_deliver: 1,
      max_ack_pending: Math.max(1, opts.window),
      mem_storage: true,
      description: opts.description ?? "nats-backup: reader",
    };
    try {
      const text = await jsApiRequest(nc, `CONSUMER.CREATE.${stream}`, JSON.stringify({ stream_name: stream, config }));
      feed.#consumer = (JSON.parse(text) as { name: string }).name;
    } catch (err) {
      sub.unsubscribe();
      throw err;
    }
    return feed;
  }

  async *[Symbol.asyncIterator](): AsyncIterator<FeedMessage> {
    while (true) {
      if (this.#failure) throw this.#failure;
      const msg = this.#queue.shift();
      if (!msg) {
        if (this.#closed) return;
        // Idle time counts only while the reader waits: a full window of unread messages is not idle.
        this.#armIdleTimer();
        await new Promise<void>((resolve) => (this.#wake = resolve));
        continue;
      }
      const { seq, pending } = this.#position(msg);
      yield { data: msg.data, headers: msg.headers, seq, pending };
      // The reader is done with it: only now may the server send one more.
      msg.respond();
    }
  }

  /** Stops delivery and removes the consumer (best effort: an ephemeral consumer also goes when its interest does). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#idleTimer) clearTimeout(this.#idleTimer);
    this.sub.unsubscribe();
    this.#queue = [];
    this.#notify();
    if (this.#consumer) {
      await jsApiRequest(this.nc, `CONSUMER.DELETE.${this.stream}.${this.#consumer}`).catch(() => {});
    }
  }

  fail(failure: Error): void {
    if (this.#closed) return;
    this.#failure ??= failure;
    this.#queue = [];
    this.#notify();
  }

  private receive(msg: Msg): void {
    // Stored messages come with an ack subject; anything else (a status) is not data.
    if (this.#closed || !msg.reply?.startsWith("$JS.ACK.")) return;
    this.#queue.push(msg);
    this.#notify();
  }

  /** `$JS.ACK.[domain.hash.]<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>[.token]`, read from the end. */
  #position(msg: Msg): { seq: number; pending: number } {
    const tokens = (msg.reply as string).split(".");
    const at = tokens.length >= 12 ? 6 : 4;
    const [delivered, seq, consumerSeq, , pending] = tokens.slice(at, at + 5).map(Number) as [number, number, number, number, number];
    if (delivered !== 1 || consumerSeq !== ++this.#delivered) {
      const failure = new BackupError(
        ErrorCode.Internal,
        `reading ${this.subject}: message ${seq} arrived out of order (delivery ${delivered}, consumer sequence ${consumerSeq}, expected ${this.#delivered})`,
      );
      this.fail(failure);
      throw failure;
    }
    return { seq, pending };
  }

  #notify(): void {
    if (this.#idleTimer) clearTimeout(this.#idleTimer);
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
  }

  #armIdleTimer(): void {
    if (this.#idleTimer) clearTimeout(this.#idleTimer);
    this.#idleTimer = setTimeout(() => {
      this.fail(
        this.opts.idleError?.(this.opts.idleMs) ??
          new BackupError(ErrorCode.Unavailable, `no message on ${this.subject} for ${this.opts.idleMs / 1000}s (server restarted or connection lost?)`),
      );
    }, this.opts.idleMs);
    this.#idleTimer.unref();
  }
}

/** Waits until the server has seen everything sent on `nc`, through a reconnect if need be. */
async function flushWithin(nc: NatsConnection, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (true) {
    try {
      return await nc.flush();
    } catch (err) {
      if (nc.isClosed() || Date.now() > deadline) {
        throw new BackupError(ErrorCode.Unavailable, `the data connection to NATS is down: ${(err as Error).message}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }
}
