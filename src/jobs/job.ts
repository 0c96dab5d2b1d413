/**
 * One job's record and its status events. Every job publishes on `$BACKUP.status.<id>`: one
 * event when it starts, progress at least once a second, and exactly one terminal event; the
 * same record is kept in the job store for `$BACKUP.job.<id>`. The record is written
 * compare-and-set: when a sweeper took the job over (judged it abandoned and ended its record),
 * the job is aborted, and it publishes and stores nothing more; the sweeper's event was the last.
 */
import type { NatsConnection } from "@nats-io/nats-core";
import type { Logger } from "pino";
import { BackupError, ErrorCode } from "../protocol/errors.ts";
import type { JobRecord, JobStarted } from "../protocol/schemas.ts";
import { Subjects } from "../protocol/subjects.ts";
import { RecordChanged, type JobStore } from "./job-store.ts";

export type Operation = JobRecord["operation"];
export type Scope = JobRecord["scope"];
export type JobResult = NonNullable<JobRecord["result"]>;

/** Tries at storing a job's final record (about 20 s in all). */
const TerminalStoreAttempts = 8;

export interface JobInit {
  id: string;
  operation: Operation;
  scope: Scope;
  /** The stream of a stream job. */
  stream?: string;
  instance: string;
  /** The tenant the job is for, when the process serves several. */
  tenant?: string;
}

export class Job {
  readonly abort = new AbortController();
  readonly done: Promise<JobRecord>;
  #record: JobRecord;
  /** The stored record's revision (0: not stored yet). */
  #revision = 0;
  /** Record writes, one after another: each is compare-and-set on the revision the previous left. */
  #writes: Promise<unknown> = Promise.resolve();
  /** What someone else wrote over this job's record, once that happened. */
  #takenOver: JobRecord | null = null;
  #startedAt = Date.now();
  #ticker: NodeJS.Timeout;
  #resolveDone!: (record: JobRecord) => void;

  constructor(
    init: JobInit,
    private readonly nc: NatsConnection,
    private readonly store: JobStore,
    private readonly log: Logger,
    progressIntervalMs = 1000,
  ) {
    const now = new Date(this.#startedAt).toISOString();
    this.#record = {
      type: "io.nats.backup.v1.job",
      id: init.id,
      operation: init.operation,
      scope: init.scope,
      ...(init.stream !== undefined ? { stream: init.stream } : {}),
      state: "running",
      status_subject: Subjects.status(init.id),
      instance: init.instance,
      ...(init.tenant !== undefined ? { tenant: init.tenant } : {}),
      created: now,
      updated: now,
      progress: { bytes: 0, chunks: 0, rate: 0 },
    };
    this.done = new Promise((resolve) => (this.#resolveDone = resolve));
    this.#ticker = setInterval(() => void this.#emit(), progressIntervalMs);
    // The record first: whoever sees the first event can ask `$BACKUP.job.<id>` for it.
    const first = this.record;
    void this.#store(first, 1).then(() => {
      if (!this.#takenOver && this.#record.state === "running") publishStatus(this.nc, first, this.log);
    });
  }

  get id(): string {
    return this.#record.id;
  }
  get record(): JobRecord {
    return structuredClone(this.#record);
  }
  get signal(): AbortSignal {
    return this.abort.signal;
  }

  /** The `wait:false` reply of the request that started this job (a backup or restore: no request starts an import). */
  started(): JobStarted {
    const r = this.#record;
    return {
      id: r.id,
      operation: r.operation as JobStarted["operation"],
      scope: r.scope,
      ...(r.stream !== undefined ? { stream: r.stream } : {}),
      state: "running",
      status_subject: r.status_subject,
      ...(r.backup ? { backup: r.backup } : {}),
    };
  }

  /** For a restore: which backup it restores. */
  setBackup(id: string): void {
    this.#record.backup = id;
  }

  progress(bytes: number, chunks: number, expected?: number, uncompressed?: number): void {
    const seconds = Math.max(0.001, (Date.now() - this.#startedAt) / 1000);
    const p = this.#record.progress;
    p.bytes = bytes;
    p.chunks = chunks;
    if (uncompressed !== undefined) p.uncompressed_bytes = uncompressed;
    p.rate = Math.round(bytes / seconds);
    if (expected !== undefined) {
      p.bytes_expected = expected;
      p.percent = expected > 0 ? Math.min(100, Math.round((bytes / expected) * 1000) / 10) : 100;
    }
  }

  /** While the job waits for a shared job slot: what it waits for; null once it has one. */
  waitingFor(what: string | null): void {
    if (what === null) delete this.#record.waiting;
    else this.#record.waiting = what;
  }

  /** For an account job: streams ended of the total, and those in progress. */
  streams(done: number, total: number, running: Iterable<string>): void {
    this.#record.progress.streams = { done, total, running: [...running] };
  }

  /**
   * Stores the record now, and throws if the job was taken over: for a job about to make its
   * outcome visible (a backup's manifest), so that a job someone else ended commits nothing.
   */
  async confirmOwnership(): Promise<void> {
    await this.#emit(TerminalStoreAttempts);
    if (this.#takenOver) throw this.#takenOverError();
  }

  /** Ends the job with its result: `partial` for an account job some of whose streams or consumers failed. */
  complete(result: JobResult, state: "completed" | "partial" = "completed"): JobRecord {
    if (this.#record.state !== "running") return this.record;
    this.progress(this.#record.progress.bytes, this.#record.progress.chunks, this.#record.progress.bytes_expected);
    return this.#end({ state, result });
  }

  /** Ends the job with an error; an account job whose every item failed keeps what it did as its result. */
  fail(err: unknown, result?: JobResult): JobRecord {
    if (this.#record.state !== "running") return this.record;
    const e = BackupError.from(err);
    return this.#end({ state: "failed", error: { code: e.code, description: e.description }, ...(result ? { result } : {}) });
  }

  #end(change: Partial<JobRecord>): JobRecord {
    clearInterval(this.#ticker);
    const now = new Date().toISOString();
    Object.assign(this.#record, change, { updated: now, ended: now });
    const record = this.record;
    // Stored first, then published, so the terminal event is never one a sweeper's overrides;
    // and `done` waits for it, so `$BACKUP.job.<id>` agrees with a `wait:true` reply.
    void this.#store(record, TerminalStoreAttempts).then(() => {
      if (this.#takenOver) return this.#resolveDone(this.#takenOver);
      publishStatus(this.nc, record, this.log);
      this.#resolveDone(record);
    });
    return record;
  }

  /** Publishes the record and stores it; `attempts` > 1 retries the store through short outages. */
  #emit(attempts = 1): Promise<void> {
    this.#record.updated = new Date().toISOString();
    const record = this.record;
    if (this.#takenOver) return Promise.resolve();
    publishStatus(this.nc, record, this.log);
    return this.#store(record, attempts);
  }

  /** Queues a compare-and-set write of `record`. */
  #store(record: JobRecord, attempts: number): Promise<void> {
    const write = this.#writes.then(() => this.#write(record, attempts));
    this.#writes = write;
    return write;
  }

  async #write(record: JobRecord, attempts: number): Promise<void> {
    for (let attempt = 1; !this.#takenOver; attempt++) {
      try {
        this.#revision = await this.store.write(record, this.#revision);
        return;
      } catch (err) {
        if (err instanceof RecordChanged && (await this.#reconcile(record))) return;
        if (attempt >= attempts || this.#takenOver) {
          if (!this.#takenOver) this.log.warn({ err, job: record.id }, "could not store job record");
          return;
        }
        await new Promise((resolve) => setTimeout(resolve, 500 * attempt));
      }
    }
  }

  /**
   * After a write found the record changed: our own earlier write that landed after its answer
   * was lost (take its revision and write again), or someone else's (the job was taken over:
   * abort it). True when `record` itself is what is stored.
   */
  async #reconcile(record: JobRecord): Promise<boolean> {
    const current = await this.store.entry(record.id).catch(() => undefined);
    if (current === undefined) return false; // cannot tell now: the write is tried again
    if (current && JSON.stringify(current.record) === JSON.stringify(record)) {
      this.#revision = current.revision;
      return true;
    }
    if (current && current.record.state === "running" && current.record.instance === record.instance) {
      this.#revision = current.revision;
      return false;
    }
    if (!current) {
      this.#revision = 0; // removed (expired, purged): written anew
      return false;
    }
    this.#takenOver = current.record;
    clearInterval(this.#ticker);
    this.log.warn({ job: record.id, by: this.#takenOver }, "job taken over by someone else: stopping it");
    this.abort.abort(this.#takenOverError());
    return false;
  }

  #takenOverError(): BackupError {
    const why = this.#takenOver?.error?.description ?? `its record says ${this.#takenOver?.state}`;
    return new BackupError(ErrorCode.Conflict, `job ${this.id} was taken over: ${why}`);
  }
}

/** Publishes a job's record as a status event; a closed connection is logged, not thrown. */
export function publishStatus(nc: NatsConnection, record: JobRecord, log: Logger): void {
  try {
    nc.publish(record.status_subject, JSON.stringify(record));
  } catch (err) {
    log.warn({ err, job: record.id }, "could not publish job status");
  }
}
