/**
 * A stream restore: the backup's archive goes from the bucket to the server's restore through
 * this process (bounded chunks in flight, each acked to the bucket once the restore answered it),
 * checked as it passes (count, size, digest); only when every chunk was taken and the archive
 * found whole is the server told to build the stream. A restore that fails leaves no stream of
 * its own behind. `restoreSnapshot` is the part an account restore runs for each stream with data.
 */
import type { NatsConnection } from "@nats-io/nats-core";
import { BackupError } from "../protocol/errors.ts";
import type { RestoreResult, RestoreStreamRequest, StreamData } from "../protocol/schemas.ts";
import type { Logger } from "pino";
import { deleteStream, JetStreamApiError, JsErrCode, streamSummary, streamExists } from "../jetstream/jsapi.ts";
import { Capabilities, canRestoreFormat, parseServerVersion } from "../jetstream/server-version.ts";
import { rawMembers, rawObject } from "../jetstream/raw-json.ts";
import { startRestore } from "../snapshot/restore.ts";
import { BulkConnectionError } from "../bulk/bulk-connection.ts";
import type { JobContext } from "./context.ts";
import type { Job } from "./job.ts";
import type { Hold } from "./pipeline.ts";

export async function restoreStream(
  ctx: JobContext,
  job: Job,
  req: RestoreStreamRequest,
  accepted: () => void,
  hold: Hold,
): Promise<RestoreResult> {
  const { catalogue } = ctx;
  const stream = job.record.stream!;
  const chosen = req.backup ? await catalogue.info(req.backup) : await catalogue.latest(stream);
  job.setBackup(chosen.id);
  // Nobody may delete it while it is read; and it may have been deleted just before.
  await hold({ backup: chosen.id });
  const manifest = await catalogue.info(chosen.id);
  if (manifest.scope !== "stream") {
    throw BackupError.badRequest(`backup ${manifest.id} is an account backup: restore it with $RESTORE.account`);
  }
  if (manifest.stream !== stream) {
    throw BackupError.badRequest(
      `backup ${manifest.id} is of stream ${manifest.stream}, not ${stream}: a restore keeps the stream's name`,
    );
  }
  return restoreSnapshot(
    ctx,
    {
      stream,
      backup: manifest.id,
      data: { ...manifest, objects: manifest.objects, archive_format: manifest.archive_format ?? "v1" },
      takenOn: manifest.server?.version,
      job,
    },
    req,
    accepted,
  );
}

/** One stream's snapshot to restore: which backup holds it, its objects, and the job it reports to. */
export interface RestoreTarget {
  stream: string;
  backup: string;
  data: Pick<StreamData, "objects" | "sha256" | "size" | "stream_created" | "archive_format">;
  /** The nats-server version the backup was taken on, if known. */
  takenOn: string | undefined;
  job: Pick<Job, "id" | "signal" | "progress">;
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
  if (target && Capabilities.restoresRaceStreamChanges(target)) {
    return oneAtATime(ctx.nc, () => restoreFreshStream(ctx, restore, req, accepted));
  }
  return restoreOneSnapshot(ctx, restore, req, accepted);
}

/** The 2.15.3 restore's words when the stream it created was not empty. */
const StoreNotEmpty = /failed to store message sequence \d+: expected sequence does not match store/;

/**
 * A restore, tried a second time when the server found the stream it had just created not
 * empty ("failed to store message sequence 1: expected sequence does not match store"): seen on
 * 2.15.3 under load, twice in some 600 restores, each right after a stream of the same name was
 * deleted; the cause is in the server, not found yet, and it could not be brought about on demand.
 * The failed try removed its stream, so a second one a moment later starts from nothing. Once
 * only: a second such failure is the job's.
 */
async function restoreFreshStream(
  ctx: JobContext,
  restore: RestoreTarget,
  req: Pick<RestoreStreamRequest, "replicas" | "placement">,
  accepted: () => void,
): Promise<RestoreResult> {
  try {
    return await restoreOneSnapshot(ctx, restore, req, accepted);
  } catch (err) {
    if (!(err instanceof BackupError) || !StoreNotEmpty.test(err.description) || restore.job.signal.aborted) throw err;
    ctx.log.warn({ job: restore.job.id, stream: restore.stream, reason: err.description }, "the server's new stream was not empty; restoring again");
    await new Promise((resolve) => setTimeout(resolve, 1000));
    return restoreOneSnapshot(ctx, restore, req, accepted);
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
  if (await streamExists(nc, stream)) throw BackupError.conflict(`stream ${stream} already exist`);
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
  const { request, warnings } = restoreRequest(await catalogue.readText(data.objects.config), req, nc.info?.cluster !== undefined);

  if (await catalogue.repairArchive(archive)) {
    ctx.log.warn({ job: job.id, backup: manifest.id }, "removed the snapshot's end message, back in the archive after a server crash");
  }

  // The server builds the stream after the last chunk: about 1-4 s per GiB measured here; allow far more.
  const session = await startRestore(nc, stream, request, 60_000 + Math.ceil(archive.size / 2 ** 30) * 60_000).catch((err: unknown) => {
    // A configuration field the target server does not know (strict JSON from 2.12).
    if (err instanceof JetStreamApiError && err.errCode === JsErrCode.InvalidJson && target) {
      throw BackupError.badRequest(`nats-server ${target.text} refuses the stream configuration of backup ${manifest.id}, taken on ${takenOn}: ${err.serverDescription}`);
    }
    throw err;
  });
  accepted();
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
      config?: { num_replicas?: number };
      state?: { messages?: number; bytes?: number; first_seq?: number; last_seq?: number; consumer_count?: number };
    };
    const state = created.state ?? {};
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
    await removePartialStream(nc, stream, { manifest, failure: err, createdAtStart }, ctx.log.child({ job: job.id })).catch((e: unknown) =>
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
 * manifest recorded, and is built only at the end (a stream there before is someone else's); a
 * v2 restore (2.15+) creates the stream at its start and holds the name, so a stream there is its own.
 */
async function removePartialStream(
  nc: NatsConnection,
  stream: string,
  restore: { manifest: { id: string; stream_created?: string | undefined }; failure: unknown; createdAtStart: boolean },
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
    const keptOriginal = manifest.stream_created === undefined || created === manifest.stream_created;
    if (!keptOriginal && !restore.createdAtStart) return leave(created, "someone else created it meanwhile");
    await deleteStream(nc, stream);
  }
}
