/** A stream backup: the server's snapshot streamed into the bucket, then checked and committed. */
import type { NatsConnection } from "@nats-io/nats-core";
import { ManifestUnsettled, objectNames } from "../catalogue/catalogue.ts";
import { BackupError, ErrorCode } from "../protocol/errors.ts";
import type { BackupManifest, BackupStreamRequest } from "../protocol/schemas.ts";
import { JetStreamApiError, JsErrCode, jsApiRequest, streamSummary } from "../jetstream/jsapi.ts";
import { Capabilities, parseServerVersion } from "../jetstream/server-version.ts";
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
): Promise<BackupManifest> {
  const { nc, catalogue } = ctx;
  const stream = job.record.stream;
  const described = await streamSummary(nc, stream);
  if (described === null) throw BackupError.notFound(`stream ${stream} not found`);
  const version = parseServerVersion(nc.info?.version);
  if (described.storage === "memory" && version && !Capabilities.snapshotsMemoryStreams(version)) {
    throw BackupError.badRequest(
      `stream ${stream} uses memory storage, which nats-server ${version.text} cannot snapshot (nats-server 2.15 and later can)`,
    );
  }
  const consumers = req.consumers ? await consumerNames(nc, stream) : [];
  const chunkSize = Math.min(req.chunk_size ?? ctx.tuning.chunkSize, nc.info?.max_payload ?? Infinity);
  const created = new Date().toISOString();
  let acceptedOnce = false;
  const acceptOnce = () => {
    if (!acceptedOnce) accepted();
    acceptedOnce = true;
  };

  // The server writes into the bucket itself; after a lost watch, the careful way it allows.
  const fallback: CaptureMode = version && Capabilities.snapshotFlowControl(version) ? "relay" : "read-back";
  let captured: Captured;
  try {
    captured = await capture(ctx, job, req, chunkSize, "watch", acceptOnce);
  } catch (err) {
    if (!(err instanceof WatchLost) || job.signal.aborted) throw BulkConnectionError.during(`backup of stream ${stream}`, err);
    ctx.log.warn({ job: job.id, stream, reason: err.description, mode: fallback }, "snapshot watch lost; taking the snapshot again");
    captured = await capture(ctx, job, req, chunkSize, fallback, acceptOnce).catch((e: unknown) => {
      throw BulkConnectionError.during(`backup of stream ${stream}`, e);
    });
  }
  const { snapshot, archive } = captured;
  const info = nc.info;
  const manifest: BackupManifest = {
    type: "io.nats.backup.v1.manifest",
    id: job.id,
    scope: "stream",
    stream,
    stream_created: described.created,
    created,
    completed: new Date().toISOString(),
    size: archive.size,
    chunks: archive.chunks,
    sha256: archive.digest,
    messages: snapshot.state.messages,
    bytes: snapshot.state.bytes,
    first_seq: snapshot.state.first_seq,
    last_seq: snapshot.state.last_seq,
    consumers,
    checked: req.check,
    ...(req.tag !== undefined ? { tag: req.tag } : {}),
    ...requestedRetention(req),
    objects: objectNames(job.id),
    server: { name: info?.server_name, version: info?.version, cluster: info?.cluster },
    archive_format: version ? Capabilities.archiveFormat(version) : "v1",
  };
  try {
    await job.confirmOwnership();
    await catalogue.commit(manifest);
    ctx.log.debug({ job: job.id }, "manifest written");
  } catch (err) {
    // Not committed, and never will be: its parts go. (Unsettled: it may be listed yet, whole.)
    if (!(err instanceof ManifestUnsettled)) {
      await catalogue.discard(job.id).catch((e: unknown) => ctx.log.warn({ err: e, job: job.id }, "could not remove an incomplete backup"));
    }
    throw err;
  }
  return manifest;
}

interface Captured {
  snapshot: StartedSnapshot;
  archive: ObjectMetaRecord;
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
  job: Job,
  req: BackupStreamRequest,
  chunkSize: number,
  mode: CaptureMode,
  accepted: () => void,
): Promise<Captured> {
  const { nc, catalogue } = ctx;
  const stream = job.record.stream;
  const idleMs = ctx.tuning.snapshotIdleMs;
  const version = parseServerVersion(nc.info?.version);
  const upload = catalogue.archiveUpload(job.id, chunkSize);
  const progress = () => job.progress(upload.tally.size, upload.tally.chunks);
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
    const log = ctx.log.child({ job: job.id });
    log.debug({ mode }, "snapshot started");
    const onAbort = () => {
      const reason = BackupError.from(job.signal.reason);
      watch?.stop();
      relay?.stop();
      feed?.fail(reason);
    };
    job.signal.addEventListener("abort", onAbort, { once: true });
    try {
      await catalogue.putConfig(job.id, snapshot.backupJson);
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
      job.progress(archive.size, archive.chunks);
      return { snapshot, archive };
    } catch (err) {
      if (job.signal.aborted) err = BackupError.from(job.signal.reason);
      // The server goes on storing chunks until its snapshot ends: remove them after that (a
      // stopped relay ends once the bucket answered what it published).
      if (relay) {
        relay.stop();
        await relay.ended.catch(() => {});
      }
      await catalogue
        .discard(job.id, upload, relay ? 0 : idleMs)
        .catch((e: unknown) => ctx.log.warn({ err: e, job: job.id }, "could not remove an incomplete backup"));
      throw err;
    } finally {
      job.signal.removeEventListener("abort", onAbort);
    }
  } finally {
    bulk.close();
  }
}

/** The consumers the snapshot will carry, by name. */
async function consumerNames(nc: NatsConnection, stream: string): Promise<string[]> {
  const names: string[] = [];
  for (let offset = 0; ; ) {
    let text: string;
    try {
      text = await jsApiRequest(nc, `CONSUMER.NAMES.${stream}`, JSON.stringify({ offset }));
    } catch (err) {
      if (err instanceof JetStreamApiError && err.errCode === JsErrCode.StreamNotFound) {
        throw BackupError.notFound(`stream ${stream} not found`);
      }
      throw err;
    }
    const page = JSON.parse(text) as { consumers?: string[] | null; total?: number };
    const batch = page.consumers ?? [];
    names.push(...batch);
    offset += batch.length;
    if (batch.length === 0 || offset >= (page.total ?? 0)) break;
  }
  return names.sort();
}
