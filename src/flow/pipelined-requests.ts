/**
 * Many requests in flight over one reply subscription, for the data path (chunks to the bucket,
 * chunks to a restore). Each request's reply subject is `<inbox>.<n>` and one timer checks every
 * deadline, so a chunk costs a publish and a map entry: `nc.request` per chunk spent a tenth of
 * the service's CPU on timers and error objects.
 */
import { createInbox, type Msg, type NatsConnection, type Subscription } from "@nats-io/nats-core";

export class RequestTimeoutError extends Error {
  override readonly name = "RequestTimeoutError";
}

interface Pending {
  resolve: (msg: Msg) => void;
  reject: (err: Error) => void;
  deadline: number;
}

export class PipelinedRequests {
  readonly #inbox = createInbox();
  readonly #sub: Subscription;
  readonly #pending = new Map<number, Pending>();
  readonly #timer: NodeJS.Timeout;
  #next = 0;
  #closed = false;

  constructor(
    private readonly nc: NatsConnection,
    private readonly timeoutMs: number,
  ) {
    this.#sub = nc.subscribe(`${this.#inbox}.*`, { callback: (err, msg) => (err ? this.close(err) : this.#reply(msg)) });
    this.#timer = setInterval(() => this.#expire(), Math.max(50, Math.min(1000, timeoutMs / 4)));
    this.#timer.unref();
    void this.#sub.closed.then(() => this.close(new Error("the reply subscription closed")));
  }

  get inFlight(): number {
    return this.#pending.size;
  }

  request(subject: string, payload: Uint8Array): Promise<Msg> {
    if (this.#closed) return Promise.reject(new Error("closed"));
    const id = this.#next++;
    return new Promise<Msg>((resolve, reject) => {
      this.#pending.set(id, { resolve, reject, deadline: Date.now() + this.timeoutMs });
      try {
        this.nc.publish(subject, payload, { reply: `${this.#inbox}.${id}` });
      } catch (err) {
        this.#pending.delete(id);
        reject(err as Error);
      }
    });
  }

  /** Fails what is still pending and stops listening. */
  close(err: Error = new Error("closed")): void {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    this.#sub.unsubscribe();
    for (const p of this.#pending.values()) p.reject(err);
    this.#pending.clear();
  }

  #reply(msg: Msg): void {
    const id = Number(msg.subject.slice(this.#inbox.length + 1));
    const pending = this.#pending.get(id);
    if (!pending) return;
    this.#pending.delete(id);
    // No subscriber on the subject: the server answers 503 to the reply subject.
    if (msg.headers?.code === 503) pending.reject(new Error("no responders"));
    else pending.resolve(msg);
  }

  #expire(): void {
    const now = Date.now();
    for (const [id, p] of this.#pending) {
      if (p.deadline > now) continue;
      this.#pending.delete(id);
      p.reject(new RequestTimeoutError(`no reply within ${this.timeoutMs / 1000}s`));
    }
  }
}
