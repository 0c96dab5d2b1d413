/**
 * Starts jobs and keeps track of the ones running here. A stream job holds its stream's lock for
 * its whole life (a restore also its backup's, so that nobody deletes it meanwhile); an account
 * job holds each stream's lock while it works on that stream. A job's start resolves once the
 * server accepted the snapshot or restore (an account job: once its request was checked), so
 * errors found at the start reach the caller.
 */
import { BackupError, ErrorCode } from "../protocol/errors.ts";
import type { BackupAccountRequest, BackupStreamRequest, RestoreAccountRequest, RestoreStreamRequest, VerifyReply } from "../protocol/schemas.ts";
import { backupAccount, chosenAccountStreams } from "./account-backup-job.ts";
import { checkAccountRestore, restoreAccount } from "./account-restore-job.ts";
import { backupStream, snapshotableStream } from "./backup-job.ts";
import type { JobContext } from "./context.ts";
import { newId } from "./ids.ts";
import { Job, type Operation, type Scope } from "./job.ts";
import type { JobStore } from "./job-store.ts";
import type { Lock, Locks } from "./locks.ts";
import type { JobSlots } from "./job-slots.ts";
import { chosenStreamBackup, restoreStream } from "./restore-job.ts";
import { verifyBackup } from "./verify-backup.ts";
import { JobFailed, type Finished, type Hold } from "./pipeline.ts";

type Pipeline = (accepted: () => void, job: Job, hold: Hold) => Promise<Finished>;

export class JobRunner {
  readonly #running = new Map<string, Job>();
  #stopping = false;

  constructor(
    private readonly ctx: JobContext,
    private readonly jobs: JobStore,
    private readonly locks: Locks,
    readonly instance: string,
    /** Jobs this instance runs at once; more are refused with 429. */
    readonly maxJobs = Number.POSITIVE_INFINITY,
    /** The streams of the service's own buckets, by stream name, with the bucket each is: never backed up or restored. */
    private readonly ownStreams: ReadonlyMap<string, string> = new Map(),
    /** The tenant this runner's jobs are for, and the job slots it shares with other tenants' runners. */
    private readonly shared: { tenant?: string; slots?: JobSlots } = {},
  ) {}

  // A request refused at once (its stream or backup missing, or not one it can take) is
  // refused before its job is recorded: it touches nothing. The job asks again.

  async backup(stream: string, req: BackupStreamRequest): Promise<Job> {
    this.#refuseOwn(stream);
    await snapshotableStream(this.ctx, stream);
    return this.#start("backup", stream, async (accepted, job) => ({ result: await backupStream(this.ctx, job, req, accepted) }));
  }

  async restore(stream: string, req: RestoreStreamRequest): Promise<Job> {
    this.#refuseOwn(stream);
    await chosenStreamBackup(this.ctx.catalogue, stream, req.backup);
    return this.#start("restore", stream, async (accepted, job, hold) => ({
      result: await restoreStream(this.ctx, job, req, accepted, hold),
    }));
  }

  async backupAccount(req: BackupAccountRequest): Promise<Job> {
    if (req.streams) await chosenAccountStreams(this.ctx, req.streams, this.ownStreams);
    return this.#start("backup", null, (accepted, job, hold) => backupAccount(this.ctx, job, req, accepted, hold, this.ownStreams));
  }

  async restoreAccount(req: RestoreAccountRequest): Promise<Job> {
    await checkAccountRestore(this.ctx.catalogue, req, this.ownStreams);
    return this.#start("restore", null, (accepted, job, hold) => restoreAccount(this.ctx, job, req, accepted, hold, this.ownStreams));
  }

  /**
   * Deletes a backup unless a restore is reading it (409 naming the restore). Resolves to the
   * objects removed. `operation` names who deletes in the lock, for a restore refused meanwhile.
   */
  async deleteBackup(id: string, operation: "delete" | "prune" | "retention" = "delete"): Promise<number> {
    await this.ctx.catalogue.info(id); // 404 before anything is written
    const lock = await this.locks.acquire({ backup: id }, { job: id, operation, instance: this.instance });
    try {
      return await this.ctx.catalogue.delete(id);
    } finally {
      await lock.release();
    }
  }

  /** Reads backup `id` through and says what it found (verify-backup.ts); not a job: it changes nothing. */
  verify(id: string): Promise<VerifyReply> {
    return verifyBackup(this.ctx, id);
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

  /** 400 for a stream of the service's own buckets. */
  #refuseOwn(stream: string): void {
    const own = this.ownStreams.get(stream);
    if (own) {
      throw BackupError.badRequest(
        `stream ${stream} is this service's own ${own}: its backups would be written into the bucket being backed up, or a restore would overwrite them`,
      );
    }
  }

  /** Starts a job on `stream`, or an account job (`stream` null). */
  async #start(operation: Operation, stream: string | null, pipeline: Pipeline): Promise<Job> {
    if (stream !== null) this.#refuseOwn(stream);
    if (this.#stopping) throw new BackupError(ErrorCode.Unavailable, "the backup service is stopping");
    if (this.#running.size >= this.maxJobs) {
      throw new BackupError(
        ErrorCode.TooManyRequests,
        `this backup service instance is running ${this.#running.size} jobs, its limit (--max-jobs); try again later`,
      );
    }
    const scope: Scope = stream === null ? "account" : "stream";
    const job = new Job(
      {
        id: newId(),
        operation,
        scope,
        ...(stream !== null ? { stream } : {}),
        instance: this.instance,
        ...(this.shared.tenant !== undefined ? { tenant: this.shared.tenant } : {}),
      },
      this.ctx.nc,
      this.jobs,
      this.ctx.log,
    );
    this.#running.set(job.id, job);
    const log = this.ctx.log.child({ job: job.id, operation, scope, ...(stream !== null ? { stream } : {}) });
    let signalAccepted!: () => void;
    const accepted = new Promise<void>((resolve) => (signalAccepted = resolve));

    const finished = (async () => {
      const releaseSlot = await this.#slot(job, signalAccepted);
      try {
        return await this.#run(job, operation, stream, pipeline, signalAccepted);
      } finally {
        releaseSlot?.();
      }
    })();
    finished.then(
      ({ result, state }) => {
        const record = job.complete(result, state);
        log.info({ progress: record.progress }, `${operation} ${record.state}`);
      },
      (err: unknown) => {
        const record = job.fail(err, err instanceof JobFailed ? err.result : undefined);
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

  /**
   * A slot under the limit this runner shares with other tenants (none: no shared limit). A job
   * that has to wait for one is accepted at once (its request answered) and says what it waits for.
   */
  async #slot(job: Job, accepted: () => void): Promise<(() => void) | null> {
    const { slots } = this.shared;
    if (!slots) return null;
    const now = slots.tryAcquire();
    if (now) return now;
    job.waitingFor(`a job slot: ${slots.running} jobs of this process's tenants run, its limit; ${slots.waiting() + 1} wait, served one tenant at a time`);
    accepted();
    const release = await slots.acquire(this.shared.tenant ?? "", job.signal);
    job.waitingFor(null);
    return release;
  }

  /** The job's pipeline, under its stream's lock (a stream job) and the locks it takes as it goes. */
  async #run(job: Job, operation: Operation, stream: string | null, pipeline: Pipeline, accepted: () => void): Promise<Finished> {
    const holder = { job: job.id, operation, instance: this.instance };
    const held = new Set<Lock>();
    if (stream !== null) held.add(await this.locks.acquire({ stream }, holder));
    try {
      return await pipeline(accepted, job, async (what) => {
        const lock = await this.locks.acquire(what, holder);
        held.add(lock);
        return async () => {
          held.delete(lock);
          await lock.release();
        };
      });
    } finally {
      for (const lock of [...held].reverse()) await lock.release();
    }
  }
}
