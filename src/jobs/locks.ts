/**
 * One job per stream, and no delete of a backup a restore is reading, across every instance: a
 * lock is a KV key created atomically and kept alive by its holder; the bucket's TTL frees the
 * lock of an instance that died.
 */
import type { JetStreamClient } from "@nats-io/jetstream";
import { Kvm, type KV } from "@nats-io/kv";
import { BackupError, ErrorCode } from "../protocol/errors.ts";

export interface LockHolder {
  job: string;
  operation: string;
  instance: string;
}

/** What a lock guards: a stream (every job on it) or a backup (restores of it, its deletion). */
export type Lockable = { stream: string } | { backup: string };

/** The KV errors for a key that exists (create) or changed (update, delete): someone else holds it. */
const KeyTaken = new Set([10071, 10164]);

export class Lock {
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
      // Someone else holds it now (ours expired), or the bucket is away: the TTL frees it then.
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

export class Locks {
  private constructor(
    private readonly kv: KV,
    private readonly refreshMs: number,
  ) {}

  static async open(js: JetStreamClient, opts: { bucket: string; replicas: number; ttlMs: number }): Promise<Locks> {
    const kv = await new Kvm(js).create(opts.bucket, {
      history: 1,
      replicas: opts.replicas,
      ttl: opts.ttlMs,
      description: "nats-backup: one job per stream, no delete of a backup in use",
    });
    return new Locks(kv, Math.max(100, Math.floor(opts.ttlMs / 3)));
  }

  /**
   * Takes the lock or fails: 409 naming the job that holds it, 503 with the cause when the lock
   * bucket did not answer (a timeout, no quorum).
   */
  async acquire(what: Lockable, holder: LockHolder): Promise<Lock> {
    const key = lockKey(what);
    const value = JSON.stringify(holder);
    // The holder may release between our create and our look at it: then try again.
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        const revision = await this.kv.create(key, value);
        return new Lock(this.kv, key, value, revision, this.refreshMs);
      } catch (err) {
        if (!KeyTaken.has((err as { code?: number }).code ?? 0)) {
          throw new BackupError(ErrorCode.Unavailable, `could not take the lock of ${describe(what)}: ${(err as Error).message}`, { cause: err });
        }
        const current = await this.holder(what);
        if (current) throw BackupError.conflict(`${describe(what)} is ${"stream" in what ? "busy" : "in use"}: ${current.operation} job ${current.job} is running (instance ${current.instance})`);
      }
    }
    throw BackupError.conflict(`${describe(what)} is busy: its lock changed hands while this job tried to take it`);
  }

  /** Frees a lock if `job` holds it (the job's instance is gone). */
  async releaseFor(what: Lockable, job: string): Promise<void> {
    const entry = await this.kv.get(lockKey(what));
    if (!entry || entry.operation !== "PUT" || (entry.json() as LockHolder).job !== job) return;
    await this.kv.delete(lockKey(what), { previousSeq: entry.revision }).catch(() => {});
  }

  async holder(what: Lockable): Promise<LockHolder | null> {
    const entry = await this.kv.get(lockKey(what)).catch((err: unknown) => {
      throw new BackupError(ErrorCode.Unavailable, `could not read the lock of ${describe(what)}: ${(err as Error).message}`, { cause: err });
    });
    return entry && entry.operation === "PUT" ? (entry.json() as LockHolder) : null;
  }
}

function describe(what: Lockable): string {
  return "stream" in what ? `stream ${what.stream}` : `backup ${what.backup}`;
}

/** KV keys allow fewer characters than stream names do. */
function lockKey(what: Lockable): string {
  return "stream" in what ? `stream.${Buffer.from(what.stream).toString("base64url")}` : `backup.${what.backup}`;
}
