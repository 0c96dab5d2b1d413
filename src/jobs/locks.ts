/**
 * One job per stream at a time, across every instance: a lock is a KV key created atomically
 * and kept alive by its holder; the bucket's TTL frees the lock of an instance that died.
 */
import type { JetStreamClient } from "@nats-io/jetstream";
import { Kvm, type KV } from "@nats-io/kv";
import { BackupError } from "../protocol/errors.ts";

export interface LockHolder {
  job: string;
  operation: string;
  instance: string;
}

export class StreamLock {
  #timer: NodeJS.Timeout;
  #revision: number;
  #released = false;

  constructor(
    private readonly kv: KV,
    private readonly key: string,
    private readonly value: string,
    revision: number,
    refreshMs: number,
  ) {
    this.#revision = revision;
    this.#timer = setInterval(() => void this.#refresh(), refreshMs);
    this.#timer.unref();
  }

  async release(): Promise<void> {
    if (this.#released) return;
    this.#released = true;
    clearInterval(this.#timer);
    await this.kv.delete(this.key, { previousSeq: this.#revision }).catch(() => {
      // Someone else holds it now (ours expired): not ours to remove.
    });
  }

  async #refresh(): Promise<void> {
    if (this.#released) return;
    try {
      this.#revision = await this.kv.update(this.key, this.value, this.#revision);
    } catch {
      // Lost or expired; the job goes on and release() will not touch another holder's lock.
    }
  }
}

export class StreamLocks {
  private constructor(
    private readonly kv: KV,
    private readonly refreshMs: number,
  ) {}

  static async open(js: JetStreamClient, opts: { bucket: string; replicas: number; ttlMs: number }): Promise<StreamLocks> {
    const kv = await new Kvm(js).create(opts.bucket, {
      history: 1,
      replicas: opts.replicas,
      ttl: opts.ttlMs,
      description: "nats-backup: one job per stream",
    });
    return new StreamLocks(kv, Math.max(100, Math.floor(opts.ttlMs / 3)));
  }

  /** Takes the stream's lock or fails with 409 naming the job that holds it. */
  async acquire(stream: string, holder: LockHolder): Promise<StreamLock> {
    const key = lockKey(stream);
    const value = JSON.stringify(holder);
    // The holder may release between our create and our look at it: then try again.
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        const revision = await this.kv.create(key, value);
        return new StreamLock(this.kv, key, value, revision, this.refreshMs);
      } catch {
        const current = await this.holder(stream);
        if (current) {
          throw BackupError.conflict(
            `stream ${stream} is busy: ${current.operation} job ${current.job} is running (instance ${current.instance})`,
          );
        }
      }
    }
    throw BackupError.conflict(`stream ${stream} is busy: its lock changed hands while this job tried to take it`);
  }

  /** Frees a stream's lock if `job` holds it (the job's instance is gone). */
  async releaseFor(stream: string, job: string): Promise<void> {
    const entry = await this.kv.get(lockKey(stream));
    if (!entry || entry.operation !== "PUT" || (entry.json() as LockHolder).job !== job) return;
    await this.kv.delete(lockKey(stream), { previousSeq: entry.revision }).catch(() => {});
  }

  async holder(stream: string): Promise<LockHolder | null> {
    const entry = await this.kv.get(lockKey(stream));
    return entry && entry.operation === "PUT" ? (entry.json() as LockHolder) : null;
  }
}

/** KV keys allow fewer characters than stream names do. */
function lockKey(stream: string): string {
  return `stream.${Buffer.from(stream).toString("base64url")}`;
}
