/**
 * A stream backup: the server's snapshot streamed into the bucket, then checked and committed.
 * `takeSnapshot` is the part an account backup runs for each of its streams.
 */
import { setTimeout as delay } from "node:timers/promises";
import type { NatsConnection } from "@nats-io/nats-core";
import { ManifestUnsettled, objectNames } from "../catalogue/catalogue.ts";
import { BackupError, ErrorCode } from "../protocol/errors.ts";
import type { BackupStreamRequest, StreamData, StreamManifest } from "../protocol/schemas.ts";
import { JetStreamApiError, JsErrCode, listNames, streamSummary } from "../jetstream/jsapi.ts";
import { Capabilities, parseServerVersion } from "../jetstream/server-version.ts";
import { ArchiveError, type ArchiveSummary } from "../archive/mod.ts";
import { ArchiveCheck, archiveProblems, type BackupJson } from "./archive-check.ts";
import { openSnapshot, snapshotMessage, type StartedSnapshot } from "../snapshot/snapshot.ts";
import { WatchLost } from "../bulk/watch.ts";
import { BulkConnectionError } from "../bulk/bulk-connection.ts";
import { watchSnapshot } from "../snapshot/watch.ts";
import type { StoredMessage } from "../catalogue/subject-feed.ts";
import type { ObjectMetaRecord } from "../catalogue/object-format.ts";
import type { JobContext } from "./context.ts";
import { requestedRetention } from "./retention.ts";
import type { Job } from "./job.ts";

export async function backupStream(
  ctx: JobContext,
  job: Job,
  req: BackupStreamRequest,
  accepted: () => void,
): Promise<StreamManifest> {
  const { nc, catalogue } = ctx;
  const stream = job.record.stream!;
  const objects = objectNames(job.id);
  const created = new Date().toISOString();
  const taken = await takeSnapshot(ctx, { stream, objects, job }, req, accepted);
  const info = nc.info;
  const manifest: StreamManifest = {
    type: "io.nats.backup.v1.manifest",
    id: job.id,
    scope: "stream",
    stream,
    created,
    completed: new Date().toISOString(),
    ...snapshotSummary(taken),
    consumers: taken.consumers,
    checked: req.check,
    ...(req.tag !== undefined ? { tag: req.tag } : {}),
    ...requestedRetention(req),
    objects,
    server: { name: info?.server_name, version: info?.version, cluster: info?.cluster },
  };
  try {
    await job.confirmOwnership();
    await catalogue.commit(manifest);
    ctx.log.debug({ job: job.id }, "manifest written");
  } catch (err) {
    // Not committed, and never will be: its parts go. (Unsettled: it may be listed yet, whole.)
    if (!(err instanceof ManifestUnsettled)) {
      await catalogue
        .discard([objects.archive, objects.config])
        .catch((e: unknown) => ctx.log.warn({ err: e, job: job.id }, "could not remove an incomplete backup"));
    }
    throw err;
  }
  return manifest;
}

/** What a manifest records of a snapshot taken: the stream's mark, the archive and the stream's state. */
export function snapshotSummary(
  taken: TakenSnapshot,
): Pick<StreamData, "stream_created" | "size" | "chunks" | "sha256" | "messages" | "bytes" | "first_seq" | "last_seq" | "archive_format" | "uncompressed_bytes"> {
  const { archive, snapshot } = taken;
  return {
    stream_created: taken.streamCreated,
    size: archive.size,
    chunks: archive.chunks,
    sha256: archive.digest,
    messages: snapshot.state.messages,
    bytes: snapshot.state.bytes,
    first_seq: snapshot.state.first_seq,
    last_seq: snapshot.state.last_seq,
    archive_format: taken.contents.format,
    uncompressed_bytes: taken.contents.uncompressedBytes,
  };
}

/** What a job tracks of one snapshot: its stream, and the job it reports progress to and stops with. */
export interface SnapshotTarget {
  stream: string;
  /** Where its backup.json and archive go. */
  objects: { config: string; archive: string };
  job: Pick<Job, "id" | "signal" | "progress">;
}

export interface TakenSnapshot extends Captured {
  /** When the stream was created, as the server said. */
  streamCreated: string;
  /** The consumers the snapshot carries. */
  consumers: string[];
}

type StreamSummary = NonNullable<Awaited<ReturnType<typeof streamSummary>>>;

/**
 * The stream as the server describes it (`described`: as the caller just read it), or the 4xx
 * that refuses its snapshot: 404 when it does not exist, 400 for a memory stream the server
 * cannot snapshot (before 2.15), 413 over `max_backup_bytes`. Asked before a job is recorded, so
 * that such a request touches nothing, and again by the job, which may have waited for its lock.
 */
export async function snapshotableStream(ctx: Pick<JobContext, "nc" | "limits">, stream: string, described?: StreamSummary): Promise<StreamSummary> {
  const { nc } = ctx;
  const summary = described ?? (await streamSummary(nc, stream));
  if (summary === null) throw BackupError.notFound(`stream ${stream} not found`);
  const version = parseServerVersion(nc.info?.version);
  if (summary.storage === "memory" && version && !Capabilities.snapshotsMemoryStreams(version)) {
    throw BackupError.badRequest(
      `stream ${stream} uses memory storage, which nats-server ${version.text} cannot snapshot (nats-server 2.15 and later can)`,
    );
  }
  const maxBytes = ctx.limits?.maxBackupBytes;
  if (maxBytes !== undefined && summary.bytes > maxBytes) {
    throw new BackupError(ErrorCode.PayloadTooLarge, `stream ${stream} holds ${summary.bytes} bytes, more than the ${maxBytes} a backup may hold here (max_backup_bytes)`);
  }
  return summary;
}

/**
 * Takes one stream's snapshot into the bucket: resolves once its backup.json and archive are
 * stored and checked (nothing committed yet); on failure leaves neither behind. 404 when the
 * stream is gone, 400 when the server cannot snapshot it (a memory stream before 2.15).
 */
export async function takeSnapshot(
  ctx: JobContext,
  target: SnapshotTarget,
  req: Pick<BackupStreamRequest, "consumers" | "check" | "chunk_size">,
  accepted: () => void,
  /** What the caller read of the stream just before (an account backup), so as not to ask again. */
  known?: { described: StreamSummary; consumers: string[] },
): Promise<TakenSnapshot> {
  const { nc } = ctx;
  const { stream, job } = target;
  const described = await snapshotableStream(ctx, stream, known?.described);
  const version = parseServerVersion(nc.info?.version);
  const consumers = req.consumers ? (known?.consumers ?? (await consumerNames(nc, stream))) : [];
  const chunkSize = Math.min(req.chunk_size ?? ctx.tuning.chunkSize, nc.info?.max_payload ?? Infinity);
  let acceptedOnce = false;
  const acceptOnce = () => {
    if (!acceptedOnce) accepted();
    acceptedOnce = true;
  };

  // The server writes into the bucket itself; after a lost watch, the careful way it allows.
  const fallback: CaptureMode = version && Capabilities.snapshotFlowControl(version) ? "relay" : "read-back";
  let captured: Captured;
  try {
    captured = await capture(ctx, target, req, { chunkSize, streamBytes: described.bytes }, "watch", acceptOnce);
  } catch (err) {
    if (!(err instanceof WatchLost) || job.signal.aborted) throw BulkConnectionError.during(`backup of stream ${stream}`, err);
    ctx.log.warn({ job: job.id, stream, reason: err.description, mode: fallback }, "snapshot watch lost; taking the snapshot again");
    captured = await retakeCarefully(() => capture(ctx, target, req, { chunkSize, streamBytes: described.bytes }, fallback, acceptOnce), ctx, target);
  }
  return { ...captured, streamCreated: described.created, consumers };
}
interface Captured {
  snapshot: StartedSnapshot;
  archive: ObjectMetaRecord;
  /** What the archive holds, read as it was stored. */
  contents: ArchiveSummary;
}

/** The archive's summary, or a 500 naming what is wrong with it (truncated, errors.txt, another stream). */
async function checkedContents(check: ArchiveCheck, stream: string, backupJson: string): Promise<ArchiveSummary> {
  const found = await check.finish();
  if (found instanceof ArchiveError) throw new BackupError(ErrorCode.Internal, `the snapshot of stream ${stream} is not a whole archive: ${found.message}`);
  const problems = archiveProblems(found, stream, JSON.parse(backupJson) as BackupJson);
  if (problems.length) throw new BackupError(ErrorCode.Internal, `the snapshot of stream ${stream} is not usable: ${problems.join("; ")}`);
  return found;
}

/**
 * How a snapshot gets into the bucket, and how this process checks it, on a bulk connection of its own:
 * - `watch`: the server delivers its chunks to the archive's chunk subject, where the bucket
 *   stores them and its acks pace the server; this process hashes them as they go by, on a
 *   subscription that also tells the server someone is listening (it then starts at once). The
 *   fast way, but the server does not slow down for the watcher, so one that falls too far behind
 *   loses its connection: `WatchLost`, and nothing is kept. Servers whose streams do not ack a
 *   JetStream reply subject (2.14.10+, 2.15.3+) get the watcher's acks instead, and the bucket's
 *   count is checked at the end as always.
 * - `read-back`: the same delivery, hashed as the bucket stores them, through a consumer whose
 *   acks bound what is in flight. Without a listener the server first waits 2 s for one; nothing
 *   can be lost. For servers without flow control (before 2.10.12), whose stored end message
 *   keeps its status or never had one.
 * - `relay`: the server sends its chunks to this process, which stores each in the bucket and
 *   acks it once stored (archive-upload.ts): the server waits for it, so nothing is lost either.
 *   After a lost watch on servers with flow control (2.10.12+).
 */
type CaptureMode = "watch" | "read-back" | "relay";

async function capture(
  ctx: JobContext,
  target: SnapshotTarget,
  req: Pick<BackupStreamRequest, "consumers" | "check">,
  { chunkSize, streamBytes }: { chunkSize: number; streamBytes: number },
  mode: CaptureMode,
  accepted: () => void,
): Promise<Captured> {
  const { nc, catalogue } = ctx;
  const { stream, job, objects } = target;
  const idleMs = ctx.tuning.snapshotIdleMs;
  const version = parseServerVersion(nc.info?.version);
  // The archive is read as it goes by: a backup whose archive is not whole never completes.
  const check = new ArchiveCheck(streamBytes);
  const upload = catalogue.archiveUpload(objects.archive, chunkSize, (bytes) => check.push(bytes));
  const progress = () => job.progress(upload.tally.size, upload.tally.chunks, undefined, check.uncompressedBytes);
  const bulk = await ctx.openBulk();
  try {
    // Listen before asking: the chunks start right after the server's answer.
    // Where the bucket will not ack what it stores, the watcher acks what it saw.
    const ackChunks = version !== null && !Capabilities.answersJetStreamReplies(version);
    const watch = mode === "watch" ? await watchSnapshot(bulk, upload.subject, upload.tally, { stream, idleMs, onChunk: progress, ackChunks }) : null;
    const relay = mode === "relay" ? await upload.relay(bulk, { stream, idleMs, onChunk: progress }) : null;
    let end: StoredMessage | null = null;
    const feed =
      mode === "read-back"
        ? await upload.stored(
            bulk,
            {
              begin: (msg) => {
                if (snapshotMessage(stream, msg) === "end") end = msg;
              },
              part: (bytes) => upload.tally.part(bytes),
              end: () => {
                if (end) return "done";
                upload.tally.endChunk();
                progress();
                return "more";
              },
            },
            {
              window: Math.max(2, Math.floor(ctx.tuning.readBudgetBytes / chunkSize)),
              idleMs: idleMs + 2_000,
              idleError: () =>
                new BackupError(
                  ErrorCode.Unavailable,
                  `the bucket stored no snapshot data of stream ${stream} for ${idleMs / 1000}s (server restarted, connection lost, or bucket ${catalogue.bucket} full?)`,
                ),
            },
          )
        : null;
    let snapshot: StartedSnapshot;
    try {
      snapshot = await openSnapshot(nc, stream, {
        deliverSubject: relay?.subject ?? upload.subject,
        chunkSize,
        ...(version && Capabilities.snapshotWindowSize(version) ? { windowSize: ctx.tuning.snapshotWindowBytes } : {}),
        consumers: req.consumers,
        check: req.check,
      });
    } catch (err) {
      watch?.stop();
      relay?.stop();
      await upload.abort().catch(() => {});
      throw err;
    }
    accepted();
    const log = ctx.log.child({ job: job.id, stream });
    log.debug({ mode }, "snapshot started");
    const onAbort = () => {
      const reason = BackupError.from(job.signal.reason);
      watch?.stop();
      relay?.stop();
      feed?.fail(reason);
    };
    job.signal.addEventListener("abort", onAbort, { once: true });
    try {
      let archive: ObjectMetaRecord;
      if (watch) {
        await watch.ended;
        log.debug("every chunk seen");
        archive = await upload.finishWatched(watch.messages);
      } else if (relay) {
        await relay.ended;
        log.debug("every chunk relayed and stored");
        archive = await upload.finishRelayed();
      } else {
        await feed!.done;
        log.debug("every chunk read back");
        if (!end) throw new BackupError(ErrorCode.Internal, `reading the archive of ${stream} back from the bucket ended early`);
        archive = await upload.finish(end);
      }
      log.debug("archive stored and checked");
      const contents = await checkedContents(check, stream, snapshot.backupJson);
      // Written after the snapshot, not beside it: while the server sends, nothing else of the
      // job's waits for an answer that a stalled process would read only after its timeout.
      await catalogue.putConfig(objects.config, snapshot.backupJson);
      job.progress(archive.size, archive.chunks, undefined, contents.uncompressedBytes);
      return { snapshot, archive, contents };
    } catch (err) {
      void check.finish().catch(() => {}); // its reader goes back to the pool
      if (job.signal.aborted) err = BackupError.from(job.signal.reason);
      // The server goes on storing chunks until its snapshot ends: remove them after that (a
      // stopped relay ends once the bucket answered what it published).
      if (relay) {
        relay.stop();
        await relay.ended.catch(() => {});
      }
      await catalogue
        .discard([objects.archive, objects.config], upload, relay ? 0 : idleMs)
        .catch((e: unknown) => ctx.log.warn({ err: e, job: job.id }, "could not remove an incomplete backup"));
      throw err;
    } finally {
      job.signal.removeEventListener("abort", onAbort);
    }
  } finally {
    bulk.close();
  }
}

/**
 * Pauses before each careful try after a lost watch. Its data connection can be lost too, the
 * server closing it within moments of the try's start (CI at 2e611b3, and twice in a row at
 * d7fe4c0, on 2.10.27; not reproduced in 26 runs here): so a few tries, further apart each time.
 */
const RetakePausesMs = [0, 1_000, 3_000] as const;

async function retakeCarefully(retake: () => Promise<Captured>, ctx: JobContext, { stream, job }: SnapshotTarget): Promise<Captured> {
  for (let attempt = 0; ; attempt++) {
    try {
      await delay(RetakePausesMs[attempt], undefined, { signal: job.signal });
      return await retake();
    } catch (err) {
      const connectionLost = err instanceof BulkConnectionError || err instanceof WatchLost;
      if (!connectionLost || job.signal.aborted || attempt + 1 >= RetakePausesMs.length) {
        throw BulkConnectionError.during(`backup of stream ${stream}`, job.signal.aborted ? BackupError.from(job.signal.reason) : err);
      }
      ctx.log.warn({ job: job.id, stream, reason: err.description, attempt: attempt + 1 }, "snapshot's data connection lost; taking the snapshot again");
    }
  }
}

/** The consumers the snapshot will carry, by name. */
async function consumerNames(nc: NatsConnection, stream: string): Promise<string[]> {
  try {
    return await listNames(nc, `CONSUMER.NAMES.${stream}`, "consumers");
  } catch (err) {
    if (err instanceof JetStreamApiError && err.errCode === JsErrCode.StreamNotFound) throw BackupError.notFound(`stream ${stream} not found`);
    throw err;
  }
}
