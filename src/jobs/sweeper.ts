/**
 * Cleans up after instances that died: fails their jobs, frees their locks, and removes what
 * their uploads left in the bucket. Then, a pass of its own, applies the streams' retention
 * policies (retention.ts), a bounded number of backups per sweep. Runs at start and then
 * periodically, on every instance; each step is safe to race with another instance doing the same.
 */
import type { NatsConnection } from "@nats-io/nats-core";
import { Svcm } from "@nats-io/services";
import type { Logger } from "pino";
import type { Catalogue } from "../catalogue/catalogue.ts";
import { ErrorCode } from "../protocol/errors.ts";
import { backupId, type JobRecord } from "../protocol/schemas.ts";
import { ServiceName } from "../protocol/subjects.ts";
import { publishStatus } from "./job.ts";
import type { JobStore } from "./job-store.ts";
import type { Locks } from "./locks.ts";
import type { Retention } from "./retention.ts";
import type { PruneReply } from "../protocol/schemas.ts";

export interface SweepOptions {
  intervalMs: number;
  /** Unreferenced chunks and incomplete backups younger than this are left alone (an upload may still be writing them). */
  orphanMinAgeMs: number;
  /** A running job whose record was not refreshed for this long has lost its instance. */
  staleJobMs: number;
  /**
   * A running job whose instance did not answer the sweep's PING is abandoned only if its record
   * was not refreshed (every second while it runs) for this long either: a busy instance, on a
   * busy server, can answer a PING late.
   */
  silentJobMs: number;
  /** Backups the retention pass removes at most per sweep (the oldest due first); the rest wait for the next sweeps. */
  retentionPerSweep: number;
}

export const DefaultSweep: SweepOptions = {
  intervalMs: 60_000,
  orphanMinAgeMs: 60_000,
  staleJobMs: 30_000,
  silentJobMs: 3_000,
  retentionPerSweep: 64,
};

export interface SweepReport {
  abandonedJobs: string[];
  purgedUploads: string[];
  removedObjects: string[];
  /** What the retention pass removed and skipped; null when it failed (logged) or there is no retention. */
  retention: PruneReply | null;
}

export class Sweeper {
  #timer: NodeJS.Timeout | null = null;
  #running: Promise<SweepReport> | null = null;

  constructor(
    private readonly nc: NatsConnection,
    private readonly catalogue: Catalogue,
    private readonly jobs: JobStore,
    private readonly locks: Locks,
    private readonly instance: string,
    /** Whether this instance's runner holds a job: such a job is never taken over, however stale its record. */
    private readonly holds: (job: string) => boolean,
    private readonly log: Logger,
    private readonly opts: SweepOptions,
    private readonly retention: Retention | null = null,
  ) {}

  start(): void {
    const run = () => void this.sweep().catch((err: unknown) => this.log.warn({ err }, "sweep failed"));
    run();
    this.#timer = setInterval(run, this.opts.intervalMs);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    await this.#running?.catch(() => {});
  }

  /** One pass; concurrent calls share it. */
  sweep(): Promise<SweepReport> {
    this.#running ??= this.#sweep().finally(() => (this.#running = null));
    return this.#running;
  }

  /** The clean-up, then the retention pass, which runs even when the clean-up failed; the clean-up's error is thrown after it. */
  async #sweep(): Promise<SweepReport> {
    const cleanUp = await this.#cleanUp().then(
      (report) => ({ report }),
      (err: unknown) => ({ err }),
    );
    const report: SweepReport = "report" in cleanUp ? cleanUp.report : { abandonedJobs: [], purgedUploads: [], removedObjects: [], retention: null };
    report.retention = await this.#applyRetention();
    if ("err" in cleanUp) throw cleanUp.err;
    return report;
  }

  async #applyRetention(): Promise<PruneReply | null> {
    if (!this.retention) return null;
    try {
      const applied = await this.retention.apply({ dryRun: false, max: this.opts.retentionPerSweep, operation: "retention" });
      if (applied.streams.length > 0) this.log.info({ retention: applied }, "sweep applied the streams' retention");
      return applied;
    } catch (err) {
      this.log.warn({ err }, "the retention pass failed; the next sweep tries again");
      return null;
    }
  }

  async #cleanUp(): Promise<SweepReport> {
    const report: SweepReport = { abandonedJobs: [], purgedUploads: [], removedObjects: [], retention: null };
    // Uploads first: anything that starts after this list is read cannot be mistaken for an orphan.
    const uploads = await this.catalogue.chunkUploads();
    const live = await this.#liveInstances();
    const aliveJobs = new Set<string>();
    const now = Date.now();
    for (const { record, revision } of await this.jobs.running()) {
      if (record.instance === this.instance && this.holds(record.id)) {
        aliveJobs.add(record.id);
        continue;
      }
      const age = now - Date.parse(record.updated);
      const stale = age > this.opts.staleJobMs;
      // An import runs in a `nats-backup import` process, which answers no PING: only its record's age tells.
      const pingless = record.operation === "import";
      if (!stale && (pingless || live.has(record.instance) || age <= this.opts.silentJobMs)) {
        aliveJobs.add(record.id);
        continue;
      }
      if (await this.#failOrphanedJob(record, revision, stale)) report.abandonedJobs.push(record.id);
    }

    const objects = await this.catalogue.objects();
    const referenced = new Set(objects.map((o) => o.nuid));
    for (const nuid of uploads) {
      if (referenced.has(nuid)) continue;
      const last = await this.catalogue.lastChunkTime(nuid);
      if (last && now - last.getTime() > this.opts.orphanMinAgeMs) {
        await this.catalogue.purgeUpload(nuid);
        report.purgedUploads.push(nuid);
      }
    }

    // Backups whose manifest was never written: their job is not alive anywhere.
    const byBackup = new Map<string, typeof objects>();
    for (const o of objects) {
      const id = o.name.split("/")[0] ?? "";
      if (!backupId.safeParse(id).success) continue;
      byBackup.set(id, [...(byBackup.get(id) ?? []), o]);
    }
    for (const [id, parts] of byBackup) {
      if (aliveJobs.has(id) || parts.some((o) => o.name.endsWith("/manifest.json"))) continue;
      if (parts.some((o) => now - Date.parse(o.mtime) <= this.opts.orphanMinAgeMs)) continue;
      // Its manifest may be on its way still (a commit whose answer was lost): settle it first.
      if (await this.catalogue.settleManifest(id)) continue;
      for (const o of parts) {
        await this.catalogue.deleteObject(o.name);
        report.removedObjects.push(o.name);
      }
    }
    if (report.abandonedJobs.length + report.purgedUploads.length + report.removedObjects.length > 0) {
      this.log.info({ ...report, retention: undefined }, "sweep cleaned up after stopped instances");
    }
    return report;
  }

  /**
   * Ends a job whose instance is gone; false when another instance got there first, or the job
   * wrote its record meanwhile (it is alive; its own record writes are compare-and-set too).
   */
  async #failOrphanedJob(record: JobRecord, revision: number, stale: boolean): Promise<boolean> {
    const now = new Date().toISOString();
    const why = stale
      ? `its instance ${record.instance} stopped updating it`
      : `its instance ${record.instance} no longer answers $SRV.PING`;
    // A backup (or import) whose manifest was committed before its instance died is complete; else
    // none can be committed any more once this settles it, so the job is failed for good.
    const manifest = record.operation !== "restore" ? await this.catalogue.settleManifest(record.id) : null;
    const ended: JobRecord = manifest
      ? { ...record, state: "completed", updated: now, ended: now, result: manifest }
      : {
          ...record,
          state: "failed",
          updated: now,
          ended: now,
          error: { code: ErrorCode.Unavailable, description: `${record.operation} job ${record.id} was abandoned: ${why}` },
        };
    if (!(await this.jobs.replace(ended, revision))) return false;
    publishStatus(this.nc, ended, this.log);
    // (An account job's stream locks are freed by their TTL: its record does not say which it held.)
    if (record.stream !== undefined) await this.locks.releaseFor({ stream: record.stream }, record.id);
    if (record.backup && record.operation === "restore") await this.locks.releaseFor({ backup: record.backup }, record.id);
    return true;
  }

  async #liveInstances(): Promise<Set<string>> {
    const live = new Set([this.instance]);
    const pings = await new Svcm(this.nc).client({ strategy: "timer", maxWait: 1000 }).ping(ServiceName);
    for await (const p of pings) live.add(p.id);
    return live;
  }
}
