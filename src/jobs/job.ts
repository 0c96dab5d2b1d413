/**
 * One job's record and its status events. Every job publishes on `$BACKUP.status.<id>`: one
 * event when it starts, progress at least once a second, and exactly one terminal event; the
 * same record is kept in the job store for `$BACKUP.job.<id>`.
 */
import type { NatsConnection } from "@nats-io/nats-core";
import type { Logger } from "pino";
import { BackupError } from "../protocol/errors.ts";
import type { BackupManifest, JobRecord, JobStarted, RestoreResult } from "../protocol/schemas.ts";
import { Subjects } from "../protocol/subjects.ts";
import type { JobStore } from "./job-store.ts";

export type Operation = JobRecord["operation"];

/** Tries at storing a job's final record (about 20 s in all). */
const TerminalStoreAttempts = 8;

export interface JobInit {
  id: string;
  operation: Operation;
  stream: string;
  instance: string;
}

export class Job {
  readonly abort = new AbortController();
  readonly done: Promise<JobRecord>;
  #record: JobRecord;
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
      scope: "stream",
      stream: init.stream,
      state: "running",
      status_subject: Subjects.status(init.id),
      instance: init.instance,
      created: now,
      updated: now,
      progress: { bytes: 0, chunks: 0, rate: 0 },
    };
    this.done = new Promise((resolve) => (this.#resolveDone = resolve));
    this.#ticker = setInterval(() => void this.#emit(), progressIntervalMs);
    void this.#emit();
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

  started(): JobStarted {
    const r = this.#record;
    return {
      id: r.id,
      operation: r.operation,
      scope: r.scope,
      stream: r.stream,
      state: "running",
      status_subject: r.status_subject,
      ...(r.backup ? { backup: r.backup } : {}),
    };
  }

  /** For a restore: which backup it restores. */
  setBackup(id: string): void {
    this.#record.backup = id;
  }

  progress(bytes: number, chunks: number, expected?: number): void {
    const seconds = Math.max(0.001, (Date.now() - this.#startedAt) / 1000);
    const p = this.#record.progress;
    p.bytes = bytes;
    p.chunks = chunks;
    p.rate = Math.round(bytes / seconds);
    if (expected !== undefined) {
      p.bytes_expected = expected;
      p.percent = expected > 0 ? Math.min(100, Math.round((bytes / expected) * 1000) / 10) : 100;
    }
  }

  complete(result: BackupManifest | RestoreResult): JobRecord {
    if (this.#record.state !== "running") return this.record;
    this.progress(this.#record.progress.bytes, this.#record.progress.chunks, this.#record.progress.bytes_expected);
    return this.#end({ state: "completed", result });
  }

  fail(err: unknown): JobRecord {
    if (this.#record.state !== "running") return this.record;
    const e = BackupError.from(err);
    return this.#end({ state: "failed", error: { code: e.code, description: e.description } });
  }

  #end(change: Partial<JobRecord>): JobRecord {
    clearInterval(this.#ticker);
    const now = new Date().toISOString();
    Object.assign(this.#record, change, { updated: now, ended: now });
    // `done` waits for the stored record, so `$BACKUP.job.<id>` agrees with a `wait:true` reply;
    // the record is taken after #emit stamped `updated`, so it is the one published and stored.
    const stored = this.#emit(TerminalStoreAttempts);
    const record = this.record;
    void stored.then(() => this.#resolveDone(record));
    return record;
  }

  /** Publishes the record and stores it; the terminal record is retried through short outages. */
  #emit(attempts = 1): Promise<void> {
    this.#record.updated = new Date().toISOString();
    const record = this.record;
    publishStatus(this.nc, record, this.log);
    return this.#store(record, attempts);
  }

  async #store(record: JobRecord, attempts: number): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.store.put(record);
        return;
      } catch (err) {
        if (attempt >= attempts) {
          this.log.warn({ err, job: record.id }, "could not store job record");
          return;
        }
        await new Promise((resolve) => setTimeout(resolve, 500 * attempt));
      }
    }
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
