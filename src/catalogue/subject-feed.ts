/**
 * Reads, in order, what the bucket's stream stores on one subject, through an ephemeral push
 * consumer that delivers to a bulk connection. Each message is handed over in pieces as it
 * arrives and acked when its last piece was handled (or later, when the handler holds it); the
 * server keeps at most `window` messages unacked, so a slow reader slows the server's delivery
 * instead of piling bytes on the connection (where the server would cut it off as a slow consumer
 * once 64 MiB are pending).
 */
import { createInbox, type MsgHdrs, type NatsConnection } from "@nats-io/nats-core";
import type { BulkConnection, BulkSubscription } from "../bulk/bulk-connection.ts";
import { BackupError, ErrorCode } from "../protocol/errors.ts";
import { jsApiRequest } from "../jetstream/jsapi.ts";
import { DeliveryOrder, isAckSubject } from "./delivery-order.ts";

export interface FeedOptions {
  /** Messages delivered and not yet acked, at most. */
  window: number;
  /** Fail when no stored message arrives for this long. */
  idleMs: number;
  /** The error to fail with when idle; the default names the subject. */
  idleError?: (idleMs: number) => Error;
  description?: string;
}

/** A stored message, with where it sits in the stream; its payload follows in pieces. */
export interface StoredMessage {
  headers?: MsgHdrs;
  size: number;
  /** Stream sequence. */
  seq: number;
  /** Messages on the subject stored after this one and not delivered yet. */
  pending: number;
  /** Acks the message: for a handler that held it (`end` said "held"). */
  ack(): void;
}

/** Called synchronously, in order, as the messages arrive. */
export interface StoredMessageHandler {
  begin(msg: StoredMessage): void;
  part(bytes: Uint8Array): void;
  /** The message was read: `done` stops the feed (and it resolves); `held`: the handler acks it later. */
  end(): "more" | "done" | "held";
}

const AckWaitNanos = 600 * 1e9;

export class SubjectFeed {
  #sub: BulkSubscription | null = null;
  #consumer: string | null = null;
  #idleTimer: NodeJS.Timeout | null = null;
  #reply: string | null = null;
  #order: DeliveryOrder;
  #settled = false;
  #resolve!: () => void;
  #reject!: (err: Error) => void;
  /** Resolves when the handler said `done`; rejects on a failure (gap, idle, connection lost, handler threw). */
  readonly done: Promise<void>;

  private constructor(
    /** JetStream API requests. */
    private readonly nc: NatsConnection,
    readonly stream: string,
    readonly subject: string,
    private readonly opts: FeedOptions,
  ) {
    this.done = new Promise((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    this.done.catch(() => {});
    this.#order = new DeliveryOrder(`reading ${subject}`);
  }

  /**
   * Starts delivery from the subject's first stored message (and of everything stored later):
   * the messages come on `bulk`, the API requests go on `nc`.
   */
  static async open(
    nc: NatsConnection,
    bulk: BulkConnection,
    stream: string,
    subject: string,
    handler: StoredMessageHandler,
    opts: FeedOptions,
  ): Promise<SubjectFeed> {
    const feed = new SubjectFeed(nc, stream, subject, opts);
    const inbox = createInbox();
    feed.#sub = bulk.subscribe(inbox, {
      begin: (msg) => {
        // Stored messages come with an ack subject; anything else (a status) is not data.
        feed.#reply = isAckSubject(msg.reply) ? msg.reply : null;
        if (!feed.#reply || feed.#settled) return;
        feed.#armIdleTimer();
        const reply = feed.#reply;
        const ack = () => {
          if (!feed.#settled && !bulk.isClosed) bulk.publish(reply);
        };
        handler.begin({ ...feed.#order.next(reply), size: msg.size, ack, ...(msg.headers ? { headers: msg.headers } : {}) });
      },
      part: (bytes) => {
        if (feed.#reply && !feed.#settled) handler.part(bytes);
      },
      end: () => {
        const reply = feed.#reply;
        if (!reply || feed.#settled) return;
        // Handled: only now may the server send one more.
        const next = handler.end();
        if (next !== "held") bulk.publish(reply);
        if (next === "done") feed.#settle();
      },
      lost: (err) => feed.fail(err),
    });
    try {
      // The server must know the inbox before the consumer delivers to it.
      await bulk.flush();
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
      const text = await jsApiRequest(nc, `CONSUMER.CREATE.${stream}`, JSON.stringify({ stream_name: stream, config }));
      feed.#consumer = (JSON.parse(text) as { name: string }).name;
    } catch (err) {
      await feed.close();
      throw err;
    }
    feed.#armIdleTimer();
    return feed;
  }

  /** Stops delivery and removes the consumer (best effort: an ephemeral consumer also goes when its interest does). */
  async close(): Promise<void> {
    this.fail(new BackupError(ErrorCode.Unavailable, `the read of ${this.subject} was closed`));
    if (this.#consumer) {
      const consumer = this.#consumer;
      this.#consumer = null;
      await jsApiRequest(this.nc, `CONSUMER.DELETE.${this.stream}.${consumer}`).catch(() => {});
    }
  }

  fail(failure: Error): void {
    this.#settle(failure);
  }

  #settle(failure?: Error): void {
    if (this.#settled) return;
    this.#settled = true;
    if (this.#idleTimer) clearTimeout(this.#idleTimer);
    this.#sub?.unsubscribe();
    if (failure) this.#reject(failure);
    else this.#resolve();
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
