/** A stream backup: the server's snapshot streamed into the bucket, then checked and committed. */
import type { NatsConnection } from "@nats-io/nats-core";
import { objectNames } from "../catalogue/catalogue.ts";
import { BackupError } from "../protocol/errors.ts";
import type { BackupManifest, BackupStreamRequest } from "../protocol/schemas.ts";
import { JetStreamApiError, JsErrCode, jsApiRequest } from "../snapshot/jsapi.ts";
import { openSnapshot } from "../snapshot/snapshot.ts";
import type { JobContext } from "./context.ts";
import type { Job } from "./job.ts";

export async function backupStream(
  ctx: JobContext,
  job: Job,
  req: BackupStreamRequest,
  accepted: () => void,
): Promise<BackupManifest> {
  const { nc, catalogue } = ctx;
  const stream = job.record.stream;
  const consumers = req.consumers ? await consumerNames(nc, stream) : [];
  const chunkSize = Math.min(req.chunk_size ?? ctx.tuning.chunkSize, nc.info?.max_payload ?? Infinity);
  const created = new Date().toISOString();
  const upload = catalogue.archiveUpload(job.id, chunkSize);
  const snapshot = await openSnapshot(nc, stream, {
    deliverSubject: upload.subject,
    chunkSize,
    consumers: req.consumers,
    check: req.check,
    idleTimeoutMs: ctx.tuning.snapshotIdleMs,
  });
  accepted();
  const onAbort = () => snapshot.cancel(BackupError.from(job.signal.reason));
  job.signal.addEventListener("abort", onAbort, { once: true });

  try {
    await catalogue.putConfig(job.id, snapshot.backupJson);
    for await (const chunk of snapshot) {
      upload.observe(chunk);
      job.progress(upload.size, upload.chunks);
    }
    if (job.signal.aborted) throw BackupError.from(job.signal.reason);
    const archive = await upload.finish(snapshot.messages);
    job.progress(archive.size, upload.chunks);
    const info = nc.info;
    const manifest: BackupManifest = {
      type: "io.nats.backup.v1.manifest",
      id: job.id,
      scope: "stream",
      stream,
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
      objects: objectNames(job.id),
      server: { name: info?.server_name, version: info?.version, cluster: info?.cluster },
    };
    await catalogue.commit(manifest);
    return manifest;
  } catch (err) {
    snapshot.cancel(BackupError.from(err));
    // The server goes on storing chunks until its snapshot ends: remove them after that.
    await snapshot.settled(ctx.tuning.snapshotIdleMs);
    await catalogue.discard(job.id, upload).catch((e: unknown) => ctx.log.warn({ err: e, job: job.id }, "could not remove an incomplete backup"));
    throw err;
  } finally {
    job.signal.removeEventListener("abort", onAbort);
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
