/**
 * A stream restore: the backup's archive goes from the bucket to the server's restore through
 * this process (bounded chunks in flight, each acked to the bucket once the restore answered it),
 * checked as it passes (count, size, digest); only when every chunk was taken and the archive
 * found whole is the server told to build the stream. A restore that fails leaves no stream of
 * its own behind. `restoreSnapshot` is the part an account restore runs for each stream with data.
 */
import type { NatsConnection } from "@nats-io/nats-core";
import { BackupError, ErrorCode } from "../protocol/errors.ts";
import type { RestoreResult, RestoreStreamRequest, StreamData, StreamManifest } from "../protocol/schemas.ts";
import type { Catalogue } from "../catalogue/catalogue.ts";
import type { Logger } from "pino";
import { deleteStream, JetStreamApiError, JsErrCode, streamSummary, streamExists } from "../jetstream/jsapi.ts";
import { Capabilities, canRestoreFormat, parseServerVersion } from "../jetstream/server-version.ts";
import { rawMembers, rawObject } from "../jetstream/raw-json.ts";
import { startRestore } from "../snapshot/restore.ts";
import { BulkConnectionError } from "../bulk/bulk-connection.ts";
import type { JobContext } from "./context.ts";
import type { Job } from "./job.ts";
import type { Hold } from "./pipeline.ts";
import { placeRestore, savedPlacement } from "./degraded-placement.ts";
import { goneWithin, removeUnansweredRestore } from "./unanswered-restore.ts";
import { removeLostStream } from "./replace-lost.ts";
import { streamGroups } from "../jetstream/raft-groups.ts";
import { sameCreation } from "./stream-identity.ts";

export async function restoreStream(
  ctx: JobContext,
  job: Job,
  req: RestoreStreamRequest,
  accepted: () => void,
  hold: Hold,
): Promise<RestoreResult> {
  const { catalogue } = ctx;
  const stream = job.record.stream!;
  const chosen = await chosenStreamBackup(catalogue, stream, req.backup);
  job.setBackup(chosen.id);
  // Nobody may delete it while it is read; and it may have been deleted just before.
  await hold({ backup: chosen.id });
  const manifest = await chosenStreamBackup(catalogue, stream, chosen.id);
  // replace_lost: the name is held by a stream whose every replica is gone (refused otherwise).
  const replaced = req.replace_lost ? await removeLostStream(ctx.nc, stream, ctx.log.child({ job: job.id })) : null;
  const result = await restoreSnapshot(
    ctx,
    {
      stream,
      backup: manifest.id,
      data: { ...manifest, objects: manifest.objects, archive_format: manifest.archive_format ?? "v1" },
      takenOn: manifest.server?.version,
      job,
      ...(replaced ? { gone: replaced.peers } : {}),
    },
    req,
    accepted,
  );
  return replaced ? { ...result, warnings: [replaced.note, ...(result.warnings ?? [])] } : result;
}

/**
 * The backup a restore of `stream` reads (`id`, or its newest), or the 4xx refusing it: 404 when
 * there is none, 400 for an account backup or another stream's. Asked before a job is recorded,
 * so that such a request touches nothing, and again by the job.
 */
export async function chosenStreamBackup(catalogue: Catalogue, stream: string, id: string | undefined): Promise<StreamManifest> {
  const chosen = id ? await catalogue.info(id) : await catalogue.latest(stream);
  if (chosen.scope !== "stream") {
    throw BackupError.badRequest(`backup ${chosen.id} is an account backup: restore it with $RESTORE.account`);
  }
  if (chosen.stream !== stream) {
    throw BackupError.badRequest(`backup ${chosen.id} is of stream ${chosen.stream}, not ${stream}: a restore keeps the stream's name`);
  }
  return chosen;
}

/** One stream's snapshot to restore: which backup holds it, its objects, and the job it reports to. */
export interface RestoreTarget {
  stream: string;
  backup: string;
  data: Pick<StreamData, "objects" | "sha256" | "size" | "stream_created" | "archive_format">;
  /** The nats-server version the backup was taken on, if known. */
  takenOn: string | undefined;
  job: Pick<Job, "id" | "signal" | "progress">;
  /** Servers known to be gone: the peers of the lost stream this restore replaces. */
  gone?: string[];
}

/**
 * Restores one stream from its snapshot in the bucket: 409 `already exist` when the stream does,
 * 400 when this server cannot read the archive's format or refuses the configuration. A failure
 * leaves no stream of its own behind.
 */
export async function restoreSnapshot(
  ctx: JobContext,
  restore: RestoreTarget,
  req: Pick<RestoreStreamRequest, "replicas" | "placement">,
  accepted: () => void,
): Promise<RestoreResult> {
  const target = parseServerVersion(ctx.nc.info?.version);
  const restoreWhole = () => restoreUntilWhole(ctx, restore, req, accepted);
  if (target && Capabilities.restoresRaceStreamChanges(target)) return oneAtATime(ctx.nc, restoreWhole);
  return restoreWhole();
}

/** The 2.15.3 restore's words when the stream it created was not empty. */
const StoreNotEmpty = /failed to store message sequence \d+: expected sequence does not match store/;

/**
 * A restore, tried again (three tries at most) when the server's new stream came out broken, each
 * time right after a stream of the same name was deleted, with causes in the server that could
 * not be brought about on demand:
 * - the stream it created was not empty ("failed to store message sequence 1: expected sequence
 *   does not match store"): 2.15.3 under load, twice in some 600 restores;
 * - a group of the restored stream did not form in time (RestoredNotWhole): 2.9.10, 6 of 30 R3
 *   restores that each followed an R1 restore of the stream and its deletion; every second try
 *   came out whole. In 2.9.10's source the restored stream's leader proposes each consumer's
 *   assignment with a new group; in a stalled case two nodes logged doing so ("Consumer
 *   assignment has not been assigned, retrying").
 * A failed try removed its stream, so the next, once the name is free, starts from nothing.
 */
async function restoreUntilWhole(
  ctx: JobContext,
  restore: RestoreTarget,
  req: Pick<RestoreStreamRequest, "replicas" | "placement">,
  accepted: () => void,
): Promise<RestoreResult> {
  const notes: string[] = [];
  for (let attempt = 1; ; attempt++) {
    try {
      const result = await restoreOneSnapshot(ctx, restore, req, accepted);
      return notes.length ? { ...result, warnings: [...(result.warnings ?? []), ...notes] } : result;
    } catch (err) {
      const broken = err instanceof RestoredNotWhole || (err instanceof BackupError && StoreNotEmpty.test(err.description));
      if (!broken || attempt === 3 || restore.job.signal.aborted) throw err;
      // Its removal may take a while to be seen (2.9.10 with a consumer stalled): not tried again while the name is held.
      if (!(await goneWithin(ctx.nc, restore.stream, 30_000))) throw err;
      ctx.log.warn({ job: restore.job.id, stream: restore.stream, reason: err.description, attempt }, "the server's new stream came out broken and was removed; restoring again");
      notes.push(`try ${attempt} was removed and the stream restored again: ${err.description}`);
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }
}

/** A restored stream some of whose groups (its own, its consumers') were not whole in time. */
class RestoredNotWhole extends BackupError {
  constructor(stream: string, notWhole: string[], waitedMs: number) {
    super(
      ErrorCode.Unavailable,
      `restore of stream ${stream} failed: ${waitedMs / 1000} s after the server built it, ${notWhole.join(", ")} were not whole (a leader, and every replica listed and current, the same at two looks)`,
    );
  }
}

/**
 * How long a restored stream's groups may take to be whole: about 1 s in most R3 restores of a
 * 3-node 2.9.10 cluster here, 11 to 22 s in a few; a 2.9.10 consumer whose group did not form
 * stayed so.
 */
const WholeGroupsWaitMs = 30_000;
const WholeGroupsPollMs = 250;

/**
 * Waits until the restored stream and its `consumers` consumers are whole (see `notWholeBecause`)
 * at two looks in a row, one poll apart, with the same leaders and groups; RestoredNotWhole after
 * WholeGroupsWaitMs. One look is not enough: right after a restore 2.10.27 showed a group's
 * followers current, then 1,624 entries behind a millisecond later, then current again.
 */
async function awaitWholeGroups(nc: NatsConnection, stream: string, consumers: number, signal: AbortSignal): Promise<void> {
  const started = Date.now();
  let previous = "";
  for (;;) {
    const groups = await streamGroups(nc, stream);
    const listed = groups.length - 1;
    const notWhole = groups.filter((g) => g.notWhole !== null).map((g) => `${g.label} (${g.notWhole})`);
    const seen = listed >= consumers && notWhole.length === 0 ? groups.map((g) => `${g.label}=${g.identity}`).join(" ") : "";
    if (seen && seen === previous) return;
    previous = seen;
    if (signal.aborted) throw BackupError.from(signal.reason);
    if (Date.now() - started >= WholeGroupsWaitMs) {
      const unlisted = listed < consumers ? [`${consumers - listed} of its ${consumers} consumers (not listed)`] : [];
      const unsteady = notWhole.length || unlisted.length ? [] : ["its groups (leaders still changing)"];
      throw new RestoredNotWhole(stream, [...notWhole, ...unlisted, ...unsteady], WholeGroupsWaitMs);
    }
    await new Promise((resolve) => setTimeout(resolve, WholeGroupsPollMs));
  }
}

/** The restores this process runs on each connection, one after another (see `Capabilities.restoresRaceStreamChanges`). */
const restoreQueues = new WeakMap<NatsConnection, Promise<unknown>>();

function oneAtATime<T>(nc: NatsConnection, run: () => Promise<T>): Promise<T> {
  const previous = restoreQueues.get(nc) ?? Promise.resolve();
  const next = previous.catch(() => {}).then(run);
  restoreQueues.set(nc, next);
  return next;
}

async function restoreOneSnapshot(
  ctx: JobContext,
  restore: RestoreTarget,
  req: Pick<RestoreStreamRequest, "replicas" | "placement">,
  accepted: () => void,
): Promise<RestoreResult> {
  const { nc, catalogue } = ctx;
  const { stream, job, data } = restore;
  const manifest = { id: restore.backup, stream_created: data.stream_created };
  const exists = await streamExists(nc, stream).catch((err: unknown) => {
    // 10118: the stream is there, but no leader answers for it.
    if (err instanceof JetStreamApiError && err.errCode === 10118) {
      throw BackupError.conflict(`stream ${stream} already exist, with no leader (its replicas are offline); once every replica is gone, restore with "replace_lost":true`);
    }
    throw err;
  });
  if (exists) throw BackupError.conflict(`stream ${stream} already exist`);
  const archive = await catalogue.archiveInfo(data.objects.archive);
  if (archive.digest !== data.sha256 || archive.size !== data.size) {
    throw new BackupError(500, `backup ${manifest.id} is damaged: the archive of stream ${stream} is not the one its manifest recorded`);
  }
  const target = parseServerVersion(nc.info?.version);
  const format = data.archive_format;
  const takenOn = restore.takenOn ? `nats-server ${restore.takenOn}` : "an older nats-server";
  if (target && !canRestoreFormat(target, format)) {
    throw BackupError.badRequest(
      `backup ${manifest.id} was taken on ${takenOn}, whose archive format (${format}) nats-server ${target.text} cannot restore; restore it on nats-server 2.15 or later`,
    );
  }
  // A 2.15+ server restoring a v2 archive creates the stream when the restore starts, and holds the name until it ends.
  const createdAtStart = format === "v2";
  const backupJson = await catalogue.readText(data.objects.config);
  // A cluster with a dead server: placed on live ones (or refused), and given longer to answer.
  const placed = await placeRestore(nc, stream, target, { ...savedPlacement(backupJson, req, nc.info?.cluster !== undefined), gone: restore.gone ?? [] });
  const { request, warnings } = restoreRequest(backupJson, placed.placement ? { ...req, placement: placed.placement } : req, nc.info?.cluster !== undefined);
  warnings.push(...placed.warnings);
  const requestTimeoutMs = placed.offline.length ? 30_000 : 10_000;

  if (await catalogue.repairArchive(archive)) {
    ctx.log.warn({ job: job.id, backup: manifest.id }, "removed the snapshot's end message, back in the archive after a server crash");
  }

  // The server builds the stream after the last chunk: about 1-4 s per GiB measured here; allow far more.
  const requestedAt = Date.now();
  const session = await startRestore(nc, stream, request, 60_000 + Math.ceil(archive.size / 2 ** 30) * 60_000, requestTimeoutMs).catch(async (err: unknown) => {
    // A configuration field the target server does not know (strict JSON from 2.12).
    if (err instanceof JetStreamApiError && err.errCode === JsErrCode.InvalidJson && target) {
      throw BackupError.badRequest(`nats-server ${target.text} refuses the stream configuration of backup ${manifest.id}, taken on ${takenOn}: ${err.serverDescription}`);
    }
    // No answer at all: the server may still have made a stream that will never hold anything.
    if (err instanceof BackupError && !(err instanceof JetStreamApiError) && err.description.startsWith("JetStream did not answer")) {
      const left = await removeUnansweredRestore(nc, stream, { requestedAt, streamCreated: manifest.stream_created }, ctx.log.child({ job: job.id })).catch(
        (e: unknown) => ({ outcome: `what it did could not be found out (${(e as Error).message})` }),
      );
      const why = placed.offline.length ? ` (the cluster has servers that answer nothing: ${placed.offline.join(", ")}; it may have placed the stream on one)` : "";
      throw new BackupError(ErrorCode.Unavailable, `restore of stream ${stream} failed: the server did not answer the restore request within ${requestTimeoutMs / 1000} s${why}; ${left.outcome}`, { cause: err });
    }
    throw err;
  });
  accepted();
  /** The creation time the server gave the stream it built, once it said so. */
  let built: string | undefined;
  const bulk = await ctx.openBulk().catch((err: unknown) => {
    session.abort();
    throw BulkConnectionError.during(`restore of stream ${stream}`, err);
  });
  try {
    job.progress(0, 0, archive.size);
    const log = ctx.log.child({ job: job.id, stream });
    const delivered = catalogue.deliverArchive(bulk, archive, session.deliverSubject, {
      // A server that stages the upload must never have more than two failing chunks in flight.
      window: target && Capabilities.stagesRestores(target) ? Math.min(2, ctx.tuning.restoreWindow) : ctx.tuning.restoreWindow,
      idleMs: ctx.tuning.snapshotIdleMs,
      signal: job.signal,
      answerError: (text) => session.chunkAnswer(text),
      onProgress: (chunks) => job.progress(Math.round((archive.size * chunks) / Math.max(1, archive.chunks)), chunks, archive.size),
    });
    delivered.catch(() => {}); // when the connection drops first, it may still reject later
    await Promise.race([delivered, session.lost]).catch((err: unknown) => {
      throw BulkConnectionError.during(`restore of stream ${stream}`, err);
    });
    log.debug("every chunk delivered, answered and checked: asking the server to build the stream");
    // Only now, with the digest checked, may the server build the stream.
    const created = JSON.parse(await session.finish()) as {
      created?: string;
      config?: { num_replicas?: number };
      state?: { messages?: number; bytes?: number; first_seq?: number; last_seq?: number; consumer_count?: number };
    };
    const state = created.state ?? {};
    built = created.created;
    // In a cluster the restore is whole once the stream and each consumer has a leader and every replica current.
    if (nc.info?.cluster !== undefined) await awaitWholeGroups(nc, stream, state.consumer_count ?? 0, job.signal);
    return {
      stream,
      backup: manifest.id,
      messages: state.messages ?? 0,
      bytes: state.bytes ?? 0,
      first_seq: state.first_seq ?? 0,
      last_seq: state.last_seq ?? 0,
      consumers: state.consumer_count ?? 0,
      replicas: created.config?.num_replicas ?? 1,
      ...(warnings.length ? { warnings } : {}),
    };
  } catch (err) {
    session.abort();
    await removePartialStream(nc, stream, { manifest, failure: err, createdAtStart, built }, ctx.log.child({ job: job.id })).catch((e: unknown) =>
      ctx.log.error({ err: e, stream, job: job.id }, "could not remove a partly restored stream"),
    );
    throw err;
  } finally {
    bulk.close();
  }
}

/** backup.json with the request's overrides (see `configOverrides`); every other field stays as the server wrote it. */
function restoreRequest(
  backupJson: string,
  req: Pick<RestoreStreamRequest, "replicas" | "placement">,
  clustered: boolean,
): { request: string; warnings: string[] } {
  const top = rawMembers(backupJson);
  const configText = top.get("config");
  if (!configText) throw new BackupError(500, "backup.json has no config");
  const { config, warnings } = configOverrides(configText, req, clustered);
  top.set("config", config);
  return { request: rawObject(top), warnings };
}

/**
 * A stream configuration (JSON text) with the request's replicas and placement; every other
 * field stays as the server wrote it. A replicated stream restored onto a server without a
 * cluster becomes R1 (the server would refuse it), and a warning says so.
 */
export function configOverrides(
  configText: string,
  req: Pick<RestoreStreamRequest, "replicas" | "placement">,
  clustered: boolean,
): { config: string; warnings: string[] } {
  const config = rawMembers(configText);
  const warnings: string[] = [];
  const backedUpReplicas = Number(config.get("num_replicas") ?? 1);
  if (req.replicas !== undefined) {
    config.set("num_replicas", JSON.stringify(req.replicas));
  } else if (!clustered && backedUpReplicas > 1) {
    config.set("num_replicas", "1");
    warnings.push(`the stream had ${backedUpReplicas} replicas; this server is not clustered, so it was restored with 1`);
  }
  if (req.placement !== undefined) config.set("placement", JSON.stringify(req.placement));
  return { config: rawObject(config), warnings };
}

/**
 * Deletes what the failed restore made of the stream, and only that: a stream someone else
 * created under the same name meanwhile (the lock keeps only this service's jobs off it) is left
 * alone. A stream restored from a v1 archive keeps its original's creation time, which the
 * manifest recorded (give or take its replicas' skew: sameCreation), and is built only at the end
 * (a stream there before is someone else's; 2.9.10 sometimes gives it a new creation time, which
 * the server's answer to the finished restore names); a
 * v2 restore (2.15+) creates the stream at its start and holds the name, so a stream there is its own.
 */
async function removePartialStream(
  nc: NatsConnection,
  stream: string,
  restore: {
    manifest: { id: string; stream_created?: string | undefined };
    failure: unknown;
    createdAtStart: boolean;
    /** The creation time of the stream the server said it built, when the failure came after that. */
    built?: string | undefined;
  },
  log: Logger,
): Promise<void> {
  const { manifest } = restore;
  const leave = (created: string, why: string) =>
    log.warn({ stream, created, restoring: manifest.stream_created }, `a stream of that name is left alone: ${why}`);
  // The server may still be finishing what it was given: look twice.
  for (const delayMs of [0, 500]) {
    await new Promise((r) => setTimeout(r, delayMs));
    const created = (await streamSummary(nc, stream))?.created;
    if (created === undefined) continue;
    if (restore.failure instanceof BackupError && /already in use/i.test(restore.failure.description)) {
      return leave(created, "the server refused to build it because someone else created it meanwhile");
    }
    const keptOriginal = manifest.stream_created === undefined || sameCreation(created, manifest.stream_created);
    const ours = keptOriginal || restore.createdAtStart || sameCreation(created, restore.built);
    if (!ours) return leave(created, "someone else created it meanwhile");
    await deleteStream(nc, stream);
  }
}
