/**
 * A folder in the nats CLI's layout into the bucket, as a backup the service restores:
 * - `DIR/backup.json` beside `stream.tar.s2` (or natscli 0.5.0's `stream.arc.s2` for a 2.15
 *   server), what `nats stream backup STREAM DIR` writes: one stream backup;
 * - one such folder per stream, `DIR/<stream>/`, what `nats account backup DIR` writes: one
 *   account backup with data, every stream in it (consumers come inside each stream's archive;
 *   configuration files an export put beside them, `stream_<S>.json` and
 *   `stream_<S>_consumer_<C>.json`, are kept too, and a folder holding only `stream_<S>.json` is a
 *   stream saved without data).
 * Every backup.json is checked before anything is stored; each archive is read once, uploaded and
 * decoded (ArchiveInspector) in the same pass, and a bad one (not S2, truncated, not a tar or
 * NATSARC1, another stream's, errors.txt inside) is refused with everything stored so far removed.
 * The manifest is committed last, through the catalogue's checks, as the service commits its own.
 *
 * A service's sweeper may run on the bucket meanwhile: it purges uploads no object names once they
 * are a minute old, and removes a manifest-less backup's objects unless a running job's record
 * names it. So the import runs as a job of the service's job store (operation `import`, its record
 * refreshed every second, ended once), and commits each stream's objects as soon as they are
 * stored; an import whose process died is cleaned up by the sweeper as an abandoned job.
 */
import { createReadStream } from "node:fs";
import { readdir, readFile, stat } from "node:fs/promises";
import { basename, join, resolve } from "node:path";
import { hostname } from "node:os";
import type { NatsConnection } from "@nats-io/nats-core";
import { pino, type Logger } from "pino";
import { ArchiveError, ArchiveInspector, type ArchiveSummary } from "../archive/mod.ts";
import { accountObjectNames, Catalogue, objectNames, type ManifestPart } from "../catalogue/catalogue.ts";
import { streamOf, type ObjectMetaRecord } from "../catalogue/object-format.ts";
import { newId } from "../jobs/ids.ts";
import { Job } from "../jobs/job.ts";
import { jobBucketOf, JobStore } from "../jobs/job-store.ts";
import { streamExists } from "../jetstream/jsapi.ts";
import { Defaults } from "../service/service.ts";
import { BackupError } from "../protocol/errors.ts";
import type { AccountContents, AccountManifest, AccountStream, BackupManifest, StreamData, StreamManifest } from "../protocol/schemas.ts";
import { parseBackupJson, type BackupJson } from "./backup-json.ts";
import { archiveIn, BackupJsonFile, streamConfigFile } from "./folder.ts";
import { ObjectWriter } from "../catalogue/object-stream.ts";

/** Bytes per chunk of an imported archive (the service's snapshot chunk), capped at the server's max_payload. */
const ChunkSize = 256 * 1024;

export interface ImportedStream {
  stream: string;
  /** Absent for a stream imported without data. */
  format?: ArchiveSummary["format"];
  size?: number;
  messages?: number;
  consumers: string[];
}

export interface ImportResult {
  manifest: BackupManifest;
  streams: ImportedStream[];
  /** Streams of an account folder left out: the service's own buckets (a restore never creates them). */
  skipped: { stream: string; reason: string }[];
  /** The bucket did not exist: the import created it, and its job record bucket, as a service would. */
  createdBucket: boolean;
}

export interface ImportOptions {
  /** Archive bytes stored so far, of `total`. */
  onProgress?(bytes: number, total: number): void;
  /**
   * An account folder: called once each stream's objects are stored and committed, before the
   * next stream is read; the import waits for what it returns.
   */
  onStreamStored?(stored: { id: string; stream: string; done: number; total: number }): void | Promise<void>;
  /** Replicas of the buckets the import creates when the bucket does not exist yet (as `serve --replicas`). */
  replicas?: number;
  /** Where the import's job reports what it could not store (its record). */
  log?: Logger;
}

/** One import under way: where it stores, the job it runs as, how it reports. */
interface ImportRun {
  catalogue: Catalogue;
  job: Job;
  chunkSize: number;
  /** The folder's name, for the manifest's `imported.from`. */
  from: string;
  progress(bytes: number): void;
  onStreamStored: ImportOptions["onStreamStored"];
}

/** One stream's folder, read and checked: its backup.json, its archive file, its configuration files. */
interface StreamFolder {
  dir: string;
  stream: string;
  backup?: BackupJson;
  archive?: string;
  archiveBytes: number;
  /** stream_<S>.json's text, if the folder has one. */
  configText?: string;
  consumers: { name: string; text: string }[];
}

export async function importFolder(nc: NatsConnection, bucket: string, dir: string, opts: ImportOptions = {}): Promise<ImportResult> {
  const plan = await readFolder(dir, ownStreams(bucket));
  const replicas = opts.replicas ?? Defaults.replicas;
  const createdBucket = !(await streamExists(nc, streamOf(bucket)));
  const catalogue = await Catalogue.open(nc, { bucket, replicas });
  try {
    const jobs = await JobStore.open(catalogue.js, { bucket: jobBucketOf(bucket), replicas, ttlMs: Defaults.jobRetentionMs });
    const job = new Job(
      {
        id: newId(),
        operation: "import",
        scope: plan.kind,
        ...(plan.kind === "stream" ? { stream: plan.streams[0]!.stream } : {}),
        instance: `nats-backup import ${process.pid}@${hostname()}`,
      },
      nc,
      jobs,
      opts.log ?? pino({ level: "silent" }),
    );
    try {
      // The record stored before anything else: from here on a sweeper counts the backup's objects as a running job's.
      await job.confirmOwnership();
      const total = plan.streams.reduce((n, s) => n + s.archiveBytes, 0);
      let stored = 0;
      let chunks = 0;
      const run: ImportRun = {
        catalogue,
        job,
        chunkSize: Math.min(ChunkSize, nc.info?.max_payload ?? ChunkSize),
        from: basename(resolve(dir)),
        progress: (bytes) => {
          job.progress((stored += bytes), ++chunks, total);
          opts.onProgress?.(stored, total);
        },
        onStreamStored: opts.onStreamStored,
      };
      const imported = plan.kind === "stream" ? await importStream(run, plan.streams[0]!) : await importAccount(run, plan.streams);
      job.complete(imported.manifest);
      return { ...imported, skipped: plan.skipped, createdBucket };
    } catch (err) {
      job.fail(err);
      throw err;
    } finally {
      await job.done; // its terminal record stored before the caller closes the connection
    }
  } finally {
    catalogue.close();
  }
}

/**
 * The service's own streams on `bucket`: `nats account backup` saves them like any other, but an
 * account restore never creates them, and the bucket's own copy would only double it.
 */
function ownStreams(bucket: string): Map<string, string> {
  return new Map([
    [`OBJ_${bucket}`, `the backup bucket ${bucket} itself`],
    [`KV_${bucket}-jobs`, `the service's job records`],
    [`KV_${bucket}-locks`, `the service's locks`],
  ]);
}

interface FolderPlan {
  kind: "stream" | "account";
  streams: StreamFolder[];
  skipped: ImportResult["skipped"];
}

/** What the folder holds, every part checked, nothing stored yet. */
async function readFolder(dir: string, own: ReadonlyMap<string, string>): Promise<FolderPlan> {
  const top = await stat(dir).catch(() => null);
  if (!top?.isDirectory()) throw BackupError.notFound(`${dir} is not a folder`);
  if (await exists(join(dir, BackupJsonFile))) return { kind: "stream", streams: [await readStreamFolder(dir)], skipped: [] };
  const streams: StreamFolder[] = [];
  const skipped: FolderPlan["skipped"] = [];
  for (const entry of (await readdir(dir, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1))) {
    if (!entry.isDirectory()) continue;
    const folder = await readStreamFolder(join(dir, entry.name));
    const why = own.get(folder.stream);
    if (why) skipped.push({ stream: folder.stream, reason: `${why}: an account restore never creates it` });
    else streams.push(folder);
  }
  if (streams.length === 0) {
    throw BackupError.badRequest(
      `${dir} is neither a stream's backup (no ${BackupJsonFile}) nor an account's (no folder with one${skipped.length ? ` but the service's own ${skipped.map((s) => s.stream).join(", ")}` : ""})`,
    );
  }
  const seen = new Set<string>();
  for (const s of streams) {
    if (seen.has(s.stream)) throw BackupError.badRequest(`${dir} holds stream ${s.stream} twice`);
    seen.add(s.stream);
  }
  return { kind: "account", streams, skipped };
}

async function readStreamFolder(dir: string): Promise<StreamFolder> {
  const files = await readdir(dir);
  if (files.includes(BackupJsonFile)) {
    const where = join(dir, BackupJsonFile);
    const backup = parseBackupJson(await readFile(where, "utf8"), where);
    const archive = archiveIn(dir);
    const archiveBytes = (await stat(archive)).size;
    return { dir, stream: backup.stream, backup, archive, archiveBytes, ...(await configFiles(dir, files, backup.stream)) };
  }
  // An exported stream saved without data: its configuration only, in a folder of its name.
  const stream = basename(dir);
  const config = await configFiles(dir, files, stream);
  if (!config.configText) {
    throw BackupError.badRequest(`${dir} holds no ${BackupJsonFile} (nor ${streamConfigFile(stream)}): not a stream's backup folder`);
  }
  return { dir, stream, archiveBytes: 0, ...config };
}

/** The configuration files an export writes beside a stream's snapshot, checked as JSON objects. */
async function configFiles(dir: string, files: string[], stream: string): Promise<Pick<StreamFolder, "configText" | "consumers">> {
  const json = async (file: string, check: (o: Record<string, unknown>) => boolean) => {
    const text = await readFile(join(dir, file), "utf8");
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = null;
    }
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed) || !check(parsed as Record<string, unknown>)) {
      throw BackupError.badRequest(`${join(dir, file)} is not the configuration its name says`);
    }
    return text;
  };
  const prefix = `stream_${stream}_consumer_`;
  const consumers: StreamFolder["consumers"] = [];
  for (const file of files.filter((f) => f.startsWith(prefix) && f.endsWith(".json")).sort()) {
    const name = file.slice(prefix.length, -".json".length);
    consumers.push({ name, text: await json(file, (c) => c.durable_name === name || c.name === name) });
  }
  const configFile = streamConfigFile(stream);
  const configText = files.includes(configFile) ? await json(configFile, (c) => c.name === stream) : undefined;
  return { ...(configText !== undefined ? { configText } : {}), consumers };
}

async function importStream(run: ImportRun, folder: StreamFolder): Promise<Pick<ImportResult, "manifest" | "streams">> {
  const { catalogue, job, from } = run;
  const id = job.id;
  const objects = objectNames(id);
  const created = new Date().toISOString();
  const backup = folder.backup!;
  try {
    const { meta, summary } = await storeArchive(run, folder, objects.archive);
    await catalogue.putConfig(objects.config, backup.text);
    const manifest: StreamManifest = {
      type: "io.nats.backup.v1.manifest",
      id,
      scope: "stream",
      stream: backup.stream,
      ...snapshotFacts(backup, meta, summary),
      created,
      completed: new Date().toISOString(),
      consumers: summary.consumers,
      checked: false,
      objects,
      server: serverOf(backup),
      imported: { from, at: created },
    };
    await job.confirmOwnership(); // a job a sweeper took over commits nothing
    await catalogue.commit(manifest);
    return { manifest, streams: [imported(backup, meta, summary)] };
  } catch (err) {
    await catalogue.discard([objects.archive, objects.config]).catch(() => {});
    throw err;
  }
}

async function importAccount(run: ImportRun, folders: StreamFolder[]): Promise<Pick<ImportResult, "manifest" | "streams">> {
  const { catalogue, job, from } = run;
  const id = job.id;
  const names = accountObjectNames(id);
  const created = new Date().toISOString();
  const entries: AccountStream[] = [];
  const streams: ImportedStream[] = [];
  const parts: ManifestPart[] = [{ name: names.contents, countChunks: false }];
  try {
    for (const [done, folder] of folders.entries()) {
      job.signal.throwIfAborted();
      job.streams(done, folders.length, [folder.stream]);
      const stream = folder.stream;
      // Each archive is committed once stored: a sweeper purges an upload no object names once it is a minute old.
      let data: StreamData | undefined;
      if (folder.backup) {
        const objects = names.data(stream);
        const { meta, summary } = await storeArchive(run, folder, objects.archive);
        await catalogue.putConfig(objects.config, folder.backup.text);
        data = { objects, ...snapshotFacts(folder.backup, meta, summary) };
        parts.push({ name: objects.config, countChunks: false }, { name: objects.archive, archive: { sha256: meta.digest, size: meta.size } });
        streams.push(imported(folder.backup, meta, summary));
      } else {
        streams.push({ stream, consumers: [] });
      }
      const config = names.streamConfig(stream);
      await catalogue.putText(config, folder.configText ?? folder.backup!.configText);
      parts.push({ name: config, countChunks: false });
      const consumers: AccountStream["consumers"] = [];
      for (const c of folder.consumers) {
        const object = names.consumerConfig(stream, c.name);
        await catalogue.putText(object, c.text);
        parts.push({ name: object, countChunks: false });
        consumers.push({ name: c.name, config: object });
      }
      entries.push({ name: stream, state: "completed", config, consumers, ...(data ? { data } : {}) });
      job.streams(done + 1, folders.length, []);
      await run.onStreamStored?.({ id, stream, done: done + 1, total: folders.length });
    }
    const contents: AccountContents = { type: "io.nats.backup.v1.account_contents", id, streams: entries };
    await catalogue.putText(names.contents, JSON.stringify(contents));
    const withData = entries.filter((e) => e.data);
    const manifest: AccountManifest = {
      type: "io.nats.backup.v1.manifest",
      id,
      scope: "account",
      created,
      completed: new Date().toISOString(),
      data: true,
      streams: entries.map((e) => e.name),
      streams_with_data: withData.length,
      consumers: entries.reduce((n, e) => n + e.consumers.length, 0),
      failed: [],
      size: withData.reduce((n, e) => n + e.data!.size, 0),
      messages: withData.reduce((n, e) => n + e.data!.messages, 0),
      objects: { manifest: names.manifest, contents: names.contents },
      server: serverOf(folders.find((f) => f.backup)?.backup),
      imported: { from, at: created },
    };
    await job.confirmOwnership(); // a job a sweeper took over commits nothing
    await catalogue.commit(manifest, parts);
    return { manifest, streams };
  } catch (err) {
    // What was stored, committed streams included: nothing of a refused folder stays.
    await catalogue.discardAll(id).catch(() => {});
    throw err;
  }
}

/**
 * Stores a folder's archive as object `name`, decoding it in the same pass, and commits it once it
 * is whole: resolves with the object's metadata and what the archive holds, or removes the chunks
 * it stored and throws (400 when the archive is not a whole snapshot of the folder's stream; the
 * job's abort reason when a sweeper took the job over).
 */
async function storeArchive(run: ImportRun, folder: StreamFolder, name: string): Promise<{ meta: ObjectMetaRecord; summary: ArchiveSummary }> {
  const { catalogue, chunkSize, job } = run;
  const file = folder.archive!;
  const writer = new ObjectWriter(catalogue.nc, catalogue.js, catalogue.bucket, name, chunkSize);
  const inspector = new ArchiveInspector();
  try {
    let summary: ArchiveSummary;
    try {
      for await (const chunk of createReadStream(file, { highWaterMark: chunkSize }) as AsyncIterable<Buffer>) {
        job.signal.throwIfAborted();
        inspector.push(chunk); // before it is stored: a bad archive stops here
        await writer.write(chunk);
        run.progress(chunk.length);
      }
      summary = await inspector.finish();
    } catch (err) {
      if (err instanceof ArchiveError) throw BackupError.badRequest(`${file} is not a valid snapshot archive: ${err.message}`);
      throw err;
    }
    const named = summary.stream ?? (summary.config?.name as string | undefined);
    if (named !== undefined && named !== folder.stream) {
      throw BackupError.badRequest(`${file} is a snapshot of stream ${named}, but ${join(folder.dir, BackupJsonFile)} is of stream ${folder.stream}`);
    }
    // A v2 archive names no stream; its state.json is the state the snapshot's answer gave (backup.json's).
    const differs = summary.state && (["messages", "first_seq", "last_seq"] as const).find((k) => summary.state![k] !== folder.backup!.state[k]);
    if (differs) {
      throw BackupError.badRequest(
        `${file} is not the snapshot ${join(folder.dir, BackupJsonFile)} describes: its state.json has ${differs} ${String(summary.state![differs])}, backup.json ${folder.backup!.state[differs]}`,
      );
    }
    if (summary.errorsTxt !== undefined) {
      throw BackupError.badRequest(`${file} holds errors.txt: the server failed while building the snapshot (${summary.errorsTxt.trim().slice(0, 300)})`);
    }
    return { meta: await writer.commit(), summary };
  } catch (err) {
    await writer.abort().catch(() => {});
    throw err;
  }
}

/** What a manifest records of an imported snapshot: the archive as stored, the stream's state as backup.json says. */
function snapshotFacts(backup: BackupJson, meta: ObjectMetaRecord, summary: ArchiveSummary) {
  // A v1 archive's meta.inf carries the stream's creation time, which a restore keeps (the mark of its own stream).
  const created = summary.created;
  return {
    ...(typeof created === "string" ? { stream_created: created } : {}),
    size: meta.size,
    chunks: meta.chunks,
    sha256: meta.digest,
    ...backup.state,
    archive_format: summary.format,
    uncompressed_bytes: summary.uncompressedBytes,
  };
}

/** The server the backup came from, where backup.json says (2.11+ put their version in the configuration's metadata). */
function serverOf(backup: BackupJson | undefined): StreamManifest["server"] {
  const metadata = backup?.config.metadata as Record<string, unknown> | undefined;
  const version = metadata?.["_nats.ver"];
  return typeof version === "string" ? { version } : {};
}

function imported(backup: BackupJson, meta: ObjectMetaRecord, summary: ArchiveSummary): ImportedStream {
  return { stream: backup.stream, format: summary.format, size: meta.size, messages: backup.state.messages, consumers: summary.consumers };
}

async function exists(path: string): Promise<boolean> {
  return (await stat(path).catch(() => null)) !== null;
}
