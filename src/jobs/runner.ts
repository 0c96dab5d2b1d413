/**
 * Starts jobs and keeps track of the ones running here. A job holds its stream's lock for its
 * whole life; its start resolves once the server accepted the snapshot or restore, so errors
 * the server gives at the start reach the caller.
 */
import { BackupError, ErrorCode } from "../protocol/errors.ts";
import type { BackupManifest, BackupStreamRequest, RestoreResult, RestoreStreamRequest } from "../protocol/schemas.ts";
import { backupStream } from "./backup-job.ts";
import type { JobContext } from "./context.ts";
import { newId } from "./ids.ts";
import { Job, type Operation } from "./job.ts";
import type { JobStore } from "./job-store.ts";
import type { StreamLocks } from "./locks.ts";
import { restoreStream } from "./restore-job.ts";

type Pipeline = (accepted: () => void, job: Job) => Promise<BackupManifest | RestoreResult>;

export class JobRunner {
  readonly #running = new Map<string, Job>();
  #stopping = false;

  constructor(
    private readonly ctx: JobContext,
    private readonly jobs: JobStore,
    private readonly locks: StreamLocks,
    readonly instance: string,
    /** Jobs this instance runs at once; more are refused with 429. */
    readonly maxJobs = Number.POSITIVE_INFINITY,
  ) {}

  backup(stream: string, req: BackupStreamRequest): Promise<Job> {
    return this.#start("backup", stream, (accepted, job) => backupStream(this.ctx, job, req, accepted));
  }

  restore(stream: string, req: RestoreStreamRequest): Promise<Job> {
    return this.#start("restore", stream, (accepted, job) => restoreStream(this.ctx, job, req, accepted));
  }

  /** A job running on this instance. */
  running(id: string): Job | undefined {
    return this.#running.get(id);
  }

  get runningCount(): number {
    return this.#running.size;
  }

  /** Waits up to `graceMs` for running jobs, then fails the rest with `reason`. */
  async stop(graceMs: number, reason = "the backup service is stopping"): Promise<void> {
    this.#stopping = true;
    const all = () => Promise.all([...this.#running.values()].map((job) => job.done));
    const timer = new Promise((resolve) => setTimeout(resolve, graceMs).unref());
    await Promise.race([all(), timer]);
    for (const job of this.#running.values()) job.abort.abort(new BackupError(ErrorCode.Unavailable, reason));
    await all();
  }

  async #start(operation: Operation, stream: string, pipeline: Pipeline): Promise<Job> {
    if (this.#stopping) throw new BackupError(ErrorCode.Unavailable, "the backup service is stopping");
    if (this.#running.size >= this.maxJobs) {
      throw new BackupError(
        ErrorCode.TooManyRequests,
        `this backup service instance is running ${this.#running.size} jobs, its limit (--max-jobs); try again later`,
      );
    }
    const job = new Job({ id: newId(), operation, stream, instance: this.instance }, this.ctx.nc, this.jobs, this.ctx.log);
    this.#running.set(job.id, job);
    const log = this.ctx.log.child({ job: job.id, operation, stream });
    let signalAccepted!: () => void;
    const accepted = new Promise<void>((resolve) => (signalAccepted = resolve));

    const finished = (async () => {
      const lock = await this.locks.acquire(stream, { job: job.id, operation, instance: this.instance });
      try {
        return await pipeline(signalAccepted, job);
      } finally {
        await lock.release();
      }
    })();
    finished.then(
      (result) => {
        const record = job.complete(result);
        log.info({ progress: record.progress }, `${operation} completed`);
      },
      (err: unknown) => {
        const record = job.fail(err);
        log.warn({ error: record.error }, `${operation} failed`);
      },
    );
    void job.done.then(() => this.#running.delete(job.id));
    log.info(`${operation} started`);
    // Whichever comes first: the server accepted the job, or it failed before that.
    try {
      await Promise.race([accepted, finished]);
    } catch (err) {
      throw BackupError.from(err).ofJob(job.id);
    }
    return job;
  }
}
