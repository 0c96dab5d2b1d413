/**
 * What a server says on the wire, as a bystander sees it, on wildcard subscriptions of the test's
 * own connection:
 * - `SnapshotTap`: every message a snapshot of one stream sends to its deliver subject (the
 *   service's inbox when it relays, the bucket's chunk subject when the server writes into the
 *   bucket itself), with its reply subject and status. A snapshot's server looks for interest on
 *   its literal deliver subject only, so the tap changes nothing of what it watches.
 * - `RestoreAnswerTap`: the restore's answers that carry an error (`-ERR '…'` text, or a JSON
 *   stream_create_response error), whichever chunk or final request they answer.
 */
import type { NatsConnection, Subscription } from "@nats-io/nats-core";

export interface TappedMessage {
  size: number;
  /** The reply subject the server gave it (a chunk's ack subject), or null. */
  reply: string | null;
  /** Its status (204, 408, 500), 0 without one. */
  status: number;
  description: string;
  data: Buffer;
}

export class SnapshotTap {
  /** Each snapshot request's deliver subject, in order. */
  readonly deliverSubjects: string[] = [];
  readonly #bySubject = new Map<string, TappedMessage[]>();
  readonly #subs: Subscription[] = [];

  private constructor() {}

  /** Listens before anything is asked: the requests, and everything sent on `_INBOX.>` and the bucket's chunk subjects. */
  static async start(nc: NatsConnection, stream: string, bucket = "backups"): Promise<SnapshotTap> {
    const tap = new SnapshotTap();
    // Everything on the subjects a snapshot may be sent to is kept: the server may send its first
    // chunks to this connection before the request that named the subject.
    tap.#subs.push(
      nc.subscribe(`$JS.API.STREAM.SNAPSHOT.${stream}`, {
        callback: (err, msg) => {
          if (err) return;
          const { deliver_subject: deliver } = JSON.parse(msg.string()) as { deliver_subject?: string };
          if (!deliver) return;
          tap.deliverSubjects.push(deliver);
        },
      }),
    );
    for (const subject of ["_INBOX.>", `$O.${bucket}.C.>`]) {
      tap.#subs.push(
        nc.subscribe(subject, {
          callback: (err, msg) => {
            if (err) return;
            let seen = tap.#bySubject.get(msg.subject);
            if (!seen) tap.#bySubject.set(msg.subject, (seen = []));
            seen.push({
              size: msg.data.length,
              reply: msg.reply || null,
              status: msg.headers?.code ?? 0,
              description: msg.headers?.description ?? "",
              data: Buffer.from(msg.data),
            });
          },
        }),
      );
    }
    await nc.flush();
    return tap;
  }

  /** What the `n`-th snapshot sent (the last by default): its chunks and its end (the first empty message). */
  snapshot(n = this.deliverSubjects.length - 1): { chunks: TappedMessage[]; end: TappedMessage | null } {
    const subject = this.deliverSubjects[n];
    const all = subject ? (this.#bySubject.get(subject) ?? []) : [];
    const endAt = all.findIndex((m) => m.size === 0);
    return { chunks: endAt < 0 ? all : all.slice(0, endAt), end: endAt < 0 ? null : all[endAt]! };
  }

  stop(): void {
    for (const s of this.#subs) s.unsubscribe();
  }
}

export class RestoreAnswerTap {
  /** Error answers, as sent: `-ERR '…'` or the JSON text. */
  readonly errors: string[] = [];
  #sub: Subscription | null = null;

  static async start(nc: NatsConnection): Promise<RestoreAnswerTap> {
    const tap = new RestoreAnswerTap();
    tap.#sub = nc.subscribe("_INBOX.>", {
      callback: (err, msg) => {
        if (err || msg.data.length === 0) return;
        const text = msg.string();
        if (text.startsWith("-ERR") || (text.includes('"io.nats.jetstream.api.v1.stream_create_response"') && text.includes('"error"'))) {
          tap.errors.push(text);
        }
      },
    });
    await nc.flush();
    return tap;
  }

  /** The first error's words: the -ERR text between its quotes, or the JSON error's description. */
  get firstDescription(): string | null {
    const first = this.errors[0];
    if (first === undefined) return null;
    if (first.startsWith("-ERR")) return first.replace(/^-ERR\s*'?|'$/g, "");
    return (JSON.parse(first) as { error: { description: string } }).error.description;
  }

  stop(): void {
    this.#sub?.unsubscribe();
  }
}
