/**
 * Retention: which completed backups of a stream are due for removal, and removing them whole.
 *
 * A stream's policy is its newest completed backup's `retention` (what the backup request set),
 * field by field over the service's default. `keep_last: N` keeps the N newest; `max_age` removes
 * those created longer ago than that, but never the stream's newest: a stream that stopped being
 * backed up keeps its last backup, however old. Removal goes through the backup's lock, as
 * `$BACKUP.delete` does, so a backup that a restore reads is skipped (409) and tried again later.
 * Account backups are one more group, under the service's default policy.
 * Each call removes at most `max` backups, the oldest first, so that a sweep or a prune request is
 * bounded work; `more` says that others are due.
 */
import type { Logger } from "pino";
import type { Catalogue } from "../catalogue/catalogue.ts";
import { BackupError, ErrorCode } from "../protocol/errors.ts";
import { durationMs } from "../protocol/duration.ts";
import type { BackupManifest, BackupStreamRequest, PruneReply, RetentionPolicy } from "../protocol/schemas.ts";
import { idTime } from "./ids.ts";
import type { Locks } from "./locks.ts";

export type RemovalReason = "keep_last" | "max_age";

/** Who removes, as the backup's lock names it: a prune request, or the sweeper's retention pass. */
export type RemovalOperation = "prune" | "retention";

interface Due {
  group: string;
  manifest: BackupManifest;
  reason: RemovalReason;
}

type StreamReport = PruneReply["streams"][number];

export interface RetentionDeps {
  catalogue: Catalogue;
  locks: Locks;
  /** Deletes a backup under its lock (the runner's deleteBackup): 409 while a restore reads it, 404 once gone. */
  remove: (id: string, operation: RemovalOperation) => Promise<number>;
  /** The service's default policy, for what a stream's newest backup does not set. */
  defaults: RetentionPolicy;
  log: Logger;
}

export interface RetentionRun {
  /** Only this stream's backups. */
  stream?: string;
  /** Replaces every stream's own policy (a prune request that names keep_last or max_age). */
  policy?: RetentionPolicy;
  /** Remove nothing; report what would be removed, and what a lock would keep. */
  dryRun: boolean;
  /** The most backups this call removes (or, dry, reports as due). */
  max: number;
  operation: RemovalOperation;
}

/** The `retention` a backup request asks its manifest to carry: none when it names neither field. */
export function requestedRetention(req: BackupStreamRequest): { retention?: RetentionPolicy } {
  const retention = definedPolicy({ keep_last: req.keep_last, max_age: req.max_age });
  return Object.keys(retention).length > 0 ? { retention } : {};
}

/** Checks a service default; throws a 400 naming the bad field. */
export function checkPolicy(policy: RetentionPolicy, where: string): RetentionPolicy {
  if (policy.keep_last !== undefined && !(Number.isInteger(policy.keep_last) && policy.keep_last >= 0)) {
    throw BackupError.badRequest(`${where} keep_last must be a whole number of 0 or more, not ${policy.keep_last}`);
  }
  if (policy.max_age !== undefined) {
    try {
      durationMs(policy.max_age);
    } catch (err) {
      throw BackupError.badRequest(`${where} max_age: ${(err as Error).message}`);
    }
  }
  return definedPolicy(policy);
}

/** A stream's policy: each field as its newest backup's retention sets it, else the default's. */
export function streamPolicy(newest: BackupManifest, defaults: RetentionPolicy): RetentionPolicy {
  const own = ((newest.scope === "stream" ? newest.retention : undefined) ?? {}) as RetentionPolicy;
  return definedPolicy({ keep_last: own.keep_last ?? defaults.keep_last, max_age: own.max_age ?? defaults.max_age });
}

/**
 * The backups of one stream (given newest first) that `policy` removes, each with its reason
 * (keep_last first when both apply). The newest is never one of them.
 */
export function dueForRemoval(newestFirst: readonly BackupManifest[], policy: RetentionPolicy, now: number): Omit<Due, "group">[] {
  const keepLast = policy.keep_last ?? 0;
  const maxAgeMs = policy.max_age === undefined ? 0 : durationMs(policy.max_age);
  const due: Omit<Due, "group">[] = [];
  newestFirst.forEach((manifest, i) => {
    if (i === 0) return;
    if (keepLast > 0 && i >= keepLast) due.push({ manifest, reason: "keep_last" });
    else if (maxAgeMs > 0 && now - createdAt(manifest) > maxAgeMs) due.push({ manifest, reason: "max_age" });
  });
  return due;
}

export class Retention {
  constructor(private readonly deps: RetentionDeps) {}

  /** Applies the policies (or `run.policy`) once; see the file's comment. */
  async apply(run: RetentionRun): Promise<PruneReply> {
    const now = Date.now();
    const policies = new Map<string, RetentionPolicy>();
    const due: Due[] = [];
    const listed = await this.deps.catalogue.list(run.stream !== undefined ? { stream: run.stream } : {});
    for (const [group, backups] of byGroup(listed)) {
      const policy = run.policy ?? streamPolicy(backups[0]!, this.deps.defaults);
      policies.set(group, policy);
      try {
        for (const d of dueForRemoval(backups, policy, now)) due.push({ group, ...d });
      } catch (err) {
        // A manifest's retention this version cannot read (written by a newer one?): keep everything.
        this.deps.log.warn({ err, group, policy }, "retention policy not understood; the group's backups are kept");
      }
    }
    due.sort((a, b) => (a.manifest.id < b.manifest.id ? -1 : a.manifest.id > b.manifest.id ? 1 : 0));

    const reports = new Map<string, StreamReport>();
    for (const { group, manifest, reason } of due.slice(0, run.max)) {
      let report = reports.get(group);
      if (!report) {
        const of = manifest.scope === "stream" ? { scope: "stream" as const, stream: manifest.stream } : { scope: "account" as const };
        report = { ...of, policy: policies.get(group)!, removed: [], skipped: [] };
        reports.set(group, report);
      }
      const entry = { id: manifest.id, reason, created: manifest.created };
      const refused = run.dryRun ? await this.#wouldRefuse(manifest.id) : await this.#remove(manifest.id, run.operation);
      if (refused === "gone") continue;
      if (refused) report.skipped.push({ ...entry, code: refused.code, description: refused.description });
      else report.removed.push(entry);
    }
    return { dry_run: run.dryRun, streams: [...reports.values()], more: due.length > run.max };
  }

  /** Removes a backup: null when done, "gone" when someone else removed it first, else why not. */
  async #remove(id: string, operation: RemovalOperation): Promise<BackupError | "gone" | null> {
    try {
      await this.deps.remove(id, operation);
      return null;
    } catch (err) {
      const e = BackupError.from(err);
      if (e.code === ErrorCode.NotFound) return "gone";
      if (e.code !== ErrorCode.Conflict) this.deps.log.warn({ err, backup: id }, `${operation} could not remove a backup`);
      return e;
    }
  }

  /** What a removal would meet now: the backup's lock, held by a restore (or a delete). */
  async #wouldRefuse(id: string): Promise<BackupError | null> {
    const holder = await this.deps.locks.holder({ backup: id });
    if (!holder) return null;
    return BackupError.conflict(`backup ${id} is in use: ${holder.operation} job ${holder.job} is running (instance ${holder.instance})`);
  }
}

/** Backups grouped by stream (account backups as one group), each group newest first as given. */
function byGroup(newestFirst: BackupManifest[]): Map<string, BackupManifest[]> {
  const groups = new Map<string, BackupManifest[]>();
  for (const m of newestFirst) {
    const group = m.scope === "stream" ? `stream ${m.stream}` : "account";
    const backups = groups.get(group);
    if (backups) backups.push(m);
    else groups.set(group, [m]);
  }
  return groups;
}

/** When the backup's snapshot started: its manifest's `created`, else the time its id carries. */
function createdAt(manifest: BackupManifest): number {
  const created = Date.parse(manifest.created);
  return Number.isNaN(created) ? idTime(manifest.id).getTime() : created;
}

/** The policy without its unset fields. */
export function definedPolicy(policy: RetentionPolicy): RetentionPolicy {
  return Object.fromEntries(Object.entries(policy).filter(([, v]) => v !== undefined)) as RetentionPolicy;
}
