/**
 * A stream restore: the bucket's stream delivers the backup's archive straight to the server's
 * restore (bounded chunks in flight, each acked by the restore's answer) while this process
 * watches them go by and checks count, size and digest; only when both are done is the server
 * told to build the stream. A restore that fails leaves no stream behind.
 */
import type { NatsConnection } from "@nats-io/nats-core";
import type { ObjectInfo } from "@nats-io/obj";
import { BackupError } from "../protocol/errors.ts";
import type { BackupManifest, RestoreResult, RestoreStreamRequest } from "../protocol/schemas.ts";
import type { Logger } from "pino";
import { deleteStream, streamCreated, streamExists } from "../jetstream/jsapi.ts";
import { rawMembers, rawObject } from "../jetstream/raw-json.ts";
import { startRestore } from "../snapshot/restore.ts";
import type { ArchiveDelivery } from "../catalogue/archive-delivery.ts";
import { BulkConnectionError, type BulkConnection } from "../bulk/bulk-connection.ts";
import { WatchLost } from "../bulk/watch.ts";
import type { JobContext } from "./context.ts";
import type { Job } from "./job.ts";
import type { Hold } from "./runner.ts";

export async function restoreStream(
  ctx: JobContext,
  job: Job,
  req: RestoreStreamRequest,
  accepted: () => void,
  hold: Hold,
): Promise<RestoreResult> {
  const { nc, catalogue } = ctx;
  const stream = job.record.stream;
  const chosen = req.backup ? await catalogue.info(req.backup) : await catalogue.latest(stream);
  job.setBackup(chosen.id);
  // Nobody may delete it while it is read; and it may have been deleted just before.
  await hold({ backup: chosen.id });
  const manifest = await catalogue.info(chosen.id);
  if (manifest.stream !== stream) {
    throw BackupError.badRequest(
      `backup ${manifest.id} is of stream ${manifest.stream}, not ${stream}: a restore keeps the stream's name`,
    );
  }
  if (await streamExists(nc, stream)) throw BackupError.conflict(`stream ${stream} already exist`);
  const archive = await catalogue.archiveInfo(manifest.id);
  if (archive.digest !== manifest.sha256 || archive.size !== manifest.size) {
    throw new BackupError(500, `backup ${manifest.id} is damaged: its archive is not the one its manifest recorded`);
  }
  const { request, warnings } = restoreRequest(await catalogue.readConfig(manifest.id), req, nc.info?.cluster !== undefined);

  if (await catalogue.repairArchive(archive)) {
    ctx.log.warn({ job: job.id, backup: manifest.id }, "removed the snapshot's end message, back in the archive after a server crash");
  }

  // The server builds the stream after the last chunk: about 1-4 s per GiB measured here; allow far more.
  const session = await startRestore(nc, stream, request, 60_000 + Math.ceil(archive.size / 2 ** 30) * 60_000);
  accepted();
  let delivery: ArchiveDelivery | undefined;
  const bulks: BulkConnection[] = [];
  const openBulk = async () => {
    const bulk = await ctx.openBulk();
    bulks.push(bulk);
    return bulk;
  };
  try {
    job.progress(0, 0, archive.size);
    const log = ctx.log.child({ job: job.id });
    // Watched from before the delivery starts: the chunks are checked as the restore gets them.
    const { checked } = await checkAsDelivered(ctx, job, archive, session.deliverSubject, openBulk);
    delivery = await catalogue.deliverArchive(archive, session.deliverSubject, {
      window: ctx.tuning.restoreWindow,
      stallMs: ctx.tuning.snapshotIdleMs,
    });
    // Both must be done before the server may build the stream.
    const both = Promise.all([
      checked.then(() => log.debug("archive digest checked")),
      delivery
        .done((chunks) => {
          job.progress(Math.round((archive.size * chunks) / Math.max(1, archive.chunks)), chunks, archive.size);
        }, job.signal)
        .then(() => log.debug("every chunk delivered and answered")),
    ]);
    both.catch(() => {}); // when the connection drops first, `both` may still reject later
    await Promise.race([both, session.lost]);
    log.debug("asking the server to build the stream");
    await delivery.stop();
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
    await delivery?.stop();
    session.abort();
    await removePartialStream(nc, stream, manifest, ctx.log.child({ job: job.id })).catch((e: unknown) =>
      ctx.log.error({ err: e, stream, job: job.id }, "could not remove a partly restored stream"),
    );
    throw err;
  } finally {
    for (const bulk of bulks) bulk.close();
  }
}

/**
 * Checks the archive's chunk count, size and digest as the bucket delivers it to the restore's
 * `subject`, watching on a bulk connection. When the watch is lost (this process fell behind and
 * the server dropped it as a slow consumer, or it could not subscribe), reads the archive back
 * from the bucket to check it instead. Resolves once watching, with `checked`, the check's outcome.
 */
async function checkAsDelivered(
  ctx: JobContext,
  job: Job,
  archive: ObjectInfo,
  subject: string,
  openBulk: () => Promise<BulkConnection>,
): Promise<{ checked: Promise<void> }> {
  const { catalogue } = ctx;
  const idleMs = ctx.tuning.snapshotIdleMs;
  const readBack = async (lost: WatchLost) => {
    if (job.signal.aborted) throw BackupError.from(job.signal.reason);
    ctx.log.warn({ job: job.id, reason: lost.description }, "lost the watch on the restore's delivery; reading the archive back to check it");
    await catalogue.checkArchive(await openBulk(), archive, { budgetBytes: ctx.tuning.readBudgetBytes, idleMs, signal: job.signal });
  };
  const named = (err: unknown) => BulkConnectionError.during(`restore of stream ${job.record.stream}`, err);
  let check: Promise<void>;
  try {
    const watch = await catalogue.watchDelivery(await openBulk(), archive, subject, { idleMs });
    check = watch.ended.catch((err: unknown) => (err instanceof WatchLost ? readBack(err) : Promise.reject(err)));
  } catch (err) {
    if (!(err instanceof WatchLost)) throw named(err);
    check = readBack(err);
  }
  const checked = check.catch((err: unknown) => Promise.reject(named(err)));
  checked.catch(() => {}); // awaited by the caller, perhaps only after the delivery failed
  return { checked };
}

/**
 * backup.json with the request's overrides; every other field stays as the server wrote it.
 * A replicated stream restored onto a server without a cluster becomes R1 (the server would
 * refuse it), and the result says so.
 */
function restoreRequest(
  backupJson: string,
  req: RestoreStreamRequest,
  clustered: boolean,
): { request: string; warnings: string[] } {
  const top = rawMembers(backupJson);
  const configText = top.get("config");
  if (!configText) throw new BackupError(500, "backup.json has no config");
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
  top.set("config", rawObject(config));
  return { request: rawObject(top), warnings };
}

/**
 * Deletes what the failed restore made of the stream, and only that: a stream someone else
 * created under the same name meanwhile (the lock keeps only this service's jobs off it) is left
 * alone. A restored stream keeps its original's creation time, which the manifest recorded.
 */
async function removePartialStream(nc: NatsConnection, stream: string, manifest: BackupManifest, log: Logger): Promise<void> {
  // The server may still be finishing what it was given: look twice.
  for (const delayMs of [0, 500]) {
    await new Promise((r) => setTimeout(r, delayMs));
    const created = await streamCreated(nc, stream);
    if (created === null) continue;
    if (manifest.stream_created !== undefined && created !== manifest.stream_created) {
      log.warn({ stream, created, restoring: manifest.stream_created }, "a stream of that name, created by someone else meanwhile, is left alone");
      return;
    }
    await deleteStream(nc, stream);
  }
}
