/**
 * The `backup` micro service, attached to a connection the host already has. `nats-backup serve`
 * is a thin wrapper over `startBackupService`.
 */
import type { NatsConnection } from "@nats-io/nats-core";
import type { NodeConnectionOptions } from "@nats-io/transport-node";
import { Svcm, type Service } from "@nats-io/services";
import { pino, type Logger } from "pino";
import { packageVersion } from "../version.ts";
import { BulkConnection } from "../bulk/bulk-connection.ts";
import { Catalogue } from "../catalogue/catalogue.ts";
import { streamOf } from "../catalogue/object-format.ts";
import { DefaultTuning, type Tuning } from "../jobs/context.ts";
import { jobBucketOf, JobStore } from "../jobs/job-store.ts";
import { Locks } from "../jobs/locks.ts";
import { JobRunner } from "../jobs/runner.ts";
import type { JobSlots } from "../jobs/job-slots.ts";
import { useDomain } from "../jetstream/jsapi.ts";
import { checkPolicy, Retention } from "../jobs/retention.ts";
import type { RetentionPolicy } from "../protocol/schemas.ts";
import { DefaultSweep, Sweeper, type SweepOptions } from "../jobs/sweeper.ts";
import { Endpoints, QueueGroup, ServiceName, type EndpointName } from "../protocol/subjects.ts";
import { BackupError, ErrorCode } from "../protocol/errors.ts";
import { EndpointStats } from "./endpoint-stats.ts";
import { serve, type EndpointDeps } from "./endpoints.ts";

export interface BackupServiceOptions {
  /** Object store bucket for backups; job records and locks live in `<bucket>-jobs` and `<bucket>-locks`. */
  bucket?: string;
  /** Replicas for the buckets when this service creates them. */
  replicas?: number;
  logger?: Logger;
  /** How long `stop()` lets running jobs finish before failing them. */
  shutdownGraceMs?: number;
  /** How long job records are kept. */
  jobRetentionMs?: number;
  /** A lock whose holder stopped refreshing it is free after this long. */
  lockTtlMs?: number;
  /** Jobs one instance runs at once; more are refused with 429. */
  maxJobs?: number;
  /** Cleanup after stopped instances (abandoned jobs, orphan chunks, incomplete backups), and the retention pass. */
  sweep?: Partial<SweepOptions>;
  /**
   * The default retention of every stream: `keep_last` (its N newest completed backups) and
   * `max_age` (a duration as the nats CLI writes it, e.g. "30d", or seconds). A backup request's
   * own fields win for its stream. Default: none, every backup is kept.
   */
  retention?: RetentionPolicy;
  tuning?: Partial<Tuning>;
  /** Streams an account backup or restore works on at once (default 4): `Tuning.accountParallel`. */
  accountParallel?: number;
  /**
   * The tenant (account) this service serves, when one process serves several: named in its
   * `$SRV.INFO` metadata, every job record and event, and every log line.
   */
  tenant?: string;
  /** Job slots shared with the other tenants' services of this process (a process-wide limit, shared fairly). */
  slots?: JobSlots;
  /** A stream holding more bytes than this is not backed up (413). */
  maxBackupBytes?: number;
  /**
   * The JetStream domain whose JetStream holds the streams and the buckets (`$JS.<domain>.API`):
   * a leaf node's or a hub's, reached from a server of the other. Default: the connected server's.
   */
  domain?: string;
  /**
   * A connection in the system account, which `$RESTORE.server-remove` sends `$JS.API.SERVER.REMOVE`
   * on; without one that endpoint answers 503. The caller owns it (the service does not close it).
   */
  systemConnection?: NatsConnection;
  /**
   * The options `nc` was connected with. Each job's data connection takes its credentials and
   * TLS settings from them; without them, from nats.js's copy on `nc` (not typed API).
   */
  connectionOptions?: NodeConnectionOptions;
}

export interface BackupService {
  /** The micro service instance id; job records name it as their instance. */
  readonly id: string;
  readonly bucket: string;
  /** The bucket's backups, as `$BACKUP.list` and `info` read them. */
  readonly catalogue: Catalogue;
  readonly service: Service;
  readonly runner: JobRunner;
  readonly sweeper: Sweeper;
  /** Stops taking requests, lets running jobs finish (up to the grace period), fails the rest. The connection stays open. */
  stop(): Promise<void>;
  /**
   * For an error that escaped every handler (a host's `unhandledRejection`): logs it, and fails
   * the job it names, if that job runs here.
   */
  failStray(reason: unknown): void;
}

export const Defaults = {
  bucket: "backups",
  replicas: 1,
  shutdownGraceMs: 20_000,
  jobRetentionMs: 7 * 24 * 3600_000,
  lockTtlMs: 30_000,
  maxJobs: 4,
} as const;

export async function startBackupService(nc: NatsConnection, opts: BackupServiceOptions = {}): Promise<BackupService> {
  const bucket = opts.bucket ?? Defaults.bucket;
  const replicas = opts.replicas ?? Defaults.replicas;
  const baseLog = opts.logger ?? pino({ level: "silent" });
  const log = opts.tenant !== undefined ? baseLog.child({ tenant: opts.tenant }) : baseLog;
  const retentionDefaults = checkPolicy(opts.retention ?? {}, "the default retention's");
  useDomain(nc, opts.domain);
  const catalogue = await Catalogue.open(nc, { bucket, replicas, index: true, log });
  const jobs = await JobStore.open(catalogue.js, {
    bucket: jobBucketOf(bucket),
    replicas,
    ttlMs: opts.jobRetentionMs ?? Defaults.jobRetentionMs,
  });
  const locks = await Locks.open(catalogue.js, {
    bucket: `${bucket}-locks`,
    replicas,
    ttlMs: opts.lockTtlMs ?? Defaults.lockTtlMs,
  });

  const stats = new EndpointStats();
  const service = await new Svcm(nc).add({
    name: ServiceName,
    version: packageVersion,
    description: "Backup and restore of JetStream streams and accounts into an object store bucket",
    queue: QueueGroup,
    metadata: { bucket, ...(opts.tenant !== undefined ? { tenant: opts.tenant } : {}) },
    statsHandler: stats.statsHandler,
  });
  const id = service.info().id;
  const tuning = { ...DefaultTuning, ...opts.tuning, ...(opts.accountParallel !== undefined ? { accountParallel: opts.accountParallel } : {}) };
  const jobLog = log.child({ instance: id });
  // Each job's bulk data goes on a connection of its own to the same server, with the same
  // credentials: endpoint replies never queue behind megabytes of chunks, and a connection the
  // server drops as a slow consumer takes down nothing but that job's attempt.
  const openBulk = () => BulkConnection.like(nc, opts.connectionOptions);
  const ownStreams = new Map([
    [streamOf(bucket), `backup bucket ${bucket}`],
    [`KV_${bucket}-jobs`, `job record bucket ${bucket}-jobs`],
    [`KV_${bucket}-locks`, `lock bucket ${bucket}-locks`],
  ]);
  const limits = opts.maxBackupBytes !== undefined ? { maxBackupBytes: opts.maxBackupBytes } : {};
  const runner = new JobRunner({ nc, openBulk, catalogue, log: jobLog, tuning, limits }, jobs, locks, id, opts.maxJobs ?? Defaults.maxJobs, ownStreams, {
    ...(opts.tenant !== undefined ? { tenant: opts.tenant } : {}),
    ...(opts.slots ? { slots: opts.slots } : {}),
  });
  const retention = new Retention({
    catalogue,
    locks,
    remove: (backup, operation) => runner.deleteBackup(backup, operation),
    defaults: retentionDefaults,
    log: jobLog,
  });
  const sweep = { ...DefaultSweep, ...opts.sweep };
  const sweeper = new Sweeper(nc, catalogue, jobs, locks, id, (job) => runner.running(job) !== undefined, jobLog, sweep, retention);
  const deps: EndpointDeps = { runner, catalogue, jobs, retention, log, stats, ...(opts.systemConnection ? { systemConnection: opts.systemConnection } : {}) };
  for (const [name, spec] of Object.entries(Endpoints) as [EndpointName, (typeof Endpoints)[EndpointName]][]) {
    service.addEndpoint(name, {
      subject: spec.subject,
      metadata: { description: spec.description, request: spec.request, reply: spec.reply },
      handler: (err, msg) => {
        if (!err) void stats.track(name, () => serve(name, msg, deps));
      },
    });
  }
  await nc.flush(); // the endpoints are subscribed on the server before we say we started
  sweeper.start();
  log.info({ id, bucket, version: packageVersion }, "backup service started");

  let stopped: Promise<void> | undefined;
  return {
    id,
    bucket,
    catalogue,
    service,
    runner,
    sweeper,
    failStray: (reason) => {
      const job = reason instanceof BackupError ? reason.job : undefined;
      log.error({ err: reason, ...(job ? { job } : {}) }, "an error escaped its handler");
      const running = job ? runner.running(job) : undefined;
      if (running) running.abort.abort(new BackupError(ErrorCode.Internal, `internal error: ${BackupError.from(reason).description}`));
    },
    stop: () =>
      (stopped ??= (async () => {
        await service.stop();
        await sweeper.stop();
        await runner.stop(opts.shutdownGraceMs ?? Defaults.shutdownGraceMs);
        catalogue.close();
        log.info({ id }, "backup service stopped");
      })()),
  };
}
