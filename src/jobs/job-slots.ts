/**
 * A limit on jobs running at once, shared by several backup services in one process (the
 * tenants of one `serve`), and shared fairly: a job that finds every slot taken waits in its
 * tenant's queue, and a freed slot goes to the tenants in turn, so a tenant with a hundred jobs
 * waiting takes one slot per round like a tenant with one.
 */
import { BackupError } from "../protocol/errors.ts";

interface Waiter {
  grant: (release: () => void) => void;
  fail: (err: unknown) => void;
}

export class JobSlots {
  #running = 0;
  /** Waiting jobs by tenant; the map's order is the turn (a served tenant goes to the back). */
  readonly #queues = new Map<string, Waiter[]>();

  constructor(readonly limit: number) {
    if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`a job slot limit is a whole number of 1 or more, not ${limit}`);
  }

  get running(): number {
    return this.#running;
  }

  /** Jobs waiting for a slot, by tenant. */
  waiting(tenant?: string): number {
    if (tenant !== undefined) return this.#queues.get(tenant)?.length ?? 0;
    let n = 0;
    for (const q of this.#queues.values()) n += q.length;
    return n;
  }

  /** A slot now, if one is free (no tenant waits ahead). */
  tryAcquire(): (() => void) | null {
    if (this.#running >= this.limit || this.#queues.size > 0) return null;
    this.#running++;
    return this.#releaser();
  }

  /** A slot for `tenant`'s job once its turn comes; rejects when `signal` aborts first. */
  acquire(tenant: string, signal: AbortSignal): Promise<() => void> {
    const now = this.tryAcquire();
    if (now) return Promise.resolve(now);
    if (signal.aborted) return Promise.reject(BackupError.from(signal.reason));
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        grant: (release) => {
          signal.removeEventListener("abort", onAbort);
          resolve(release);
        },
        fail: reject,
      };
      const onAbort = () => {
        const queue = this.#queues.get(tenant);
        const i = queue?.indexOf(waiter) ?? -1;
        if (queue && i >= 0) {
          queue.splice(i, 1);
          if (queue.length === 0) this.#queues.delete(tenant);
        }
        reject(BackupError.from(signal.reason));
      };
      signal.addEventListener("abort", onAbort, { once: true });
      const queue = this.#queues.get(tenant);
      if (queue) queue.push(waiter);
      else this.#queues.set(tenant, [waiter]);
    });
  }

  #releaser(): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#running--;
      this.#grantNext();
    };
  }

  /** Gives a free slot to the first tenant in turn, which then goes to the back. */
  #grantNext(): void {
    while (this.#running < this.limit && this.#queues.size > 0) {
      const [tenant, queue] = this.#queues.entries().next().value as [string, Waiter[]];
      const waiter = queue.shift()!;
      this.#queues.delete(tenant);
      if (queue.length > 0) this.#queues.set(tenant, queue);
      this.#running++;
      waiter.grant(this.#releaser());
    }
  }
}
