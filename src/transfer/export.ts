/**
 * A backup out of the bucket into a folder the nats CLI restores: a stream backup as
 * `DIR/backup.json` and `DIR/stream.tar.s2` (`nats stream restore DIR`); an account backup as one
 * such folder per stream with data, `DIR/<stream>/` (`nats account restore DIR`). Read straight
 * from the bucket, so no service need run; a bucket that does not exist is a 404, never created.
 * The archive is streamed to the file a chunk at a time and checked against its metadata and the
 * manifest on the way; backup.json is written last, so an export cut short looks like an
 * unfinished `nats stream backup`.
 *
 * natscli 0.5.0's `account restore` refuses a folder holding anything but stream folders ("expected
 * a directory"), and each must hold backup.json. So an account backup's configurations go inside
 * each stream's folder (`stream_<S>.json`, `stream_<S>_consumer_<C>.json`, as in the bucket;
 * `nats stream restore` reads only backup.json and the archive), and its account.json is not
 * written (an import builds one again). A stream saved without data gets a folder with its
 * configurations only, which `nats account restore` cannot restore: the result names it.
 */
import { createWriteStream } from "node:fs";
import { writeFile, mkdir } from "node:fs/promises";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import type { NatsConnection } from "@nats-io/nats-core";
import { Catalogue, objectNames } from "../catalogue/catalogue.ts";
import { readSmallObject } from "../catalogue/object-reads.ts";
import { BackupError, ErrorCode } from "../protocol/errors.ts";
import type { BackupManifest } from "../protocol/schemas.ts";
import { ArchiveFile, BackupJsonFile, consumerConfigFile, emptyTarget, streamConfigFile } from "./folder.ts";
import { objectMeta, readObject } from "../catalogue/object-stream.ts";

export interface ExportedStream {
  stream: string;
  /** The stream's folder. */
  dir: string;
  /** Bytes of its archive; absent for a stream saved without data. */
  size?: number;
  messages?: number;
  consumers: number;
}

export interface ExportResult {
  id: string;
  scope: BackupManifest["scope"];
  dir: string;
  streams: ExportedStream[];
  /** Bytes of every archive written. */
  bytes: number;
  /** Streams of an account backup saved without data: `nats account restore` refuses their folders. */
  without_data: string[];
}

export interface ExportOptions {
  /** Archive bytes written so far, of `total` over every stream. */
  onProgress?(bytes: number, total: number): void;
}

/** The snapshot's pair of objects, and what the manifest says the archive is. */
export interface SnapshotObjects {
  objects: { config: string; archive: string };
  sha256: string;
  size: number;
}

export async function exportBackup(nc: NatsConnection, bucket: string, id: string, dir: string, opts: ExportOptions = {}): Promise<ExportResult> {
  const catalogue = await Catalogue.open(nc, { bucket, existing: true });
  try {
    const manifest = await catalogue.info(id);
    const undo = await emptyTarget(dir);
    let written = 0;
    let total = manifest.size;
    const progress = (bytes: number) => opts.onProgress?.((written += bytes), total);
    try {
      if (manifest.scope === "stream") {
        const size = await exportSnapshot(nc, bucket, { ...manifest, objects: objectNames(id) }, dir, progress);
        const streams = [{ stream: manifest.stream, dir, size, messages: manifest.messages, consumers: manifest.consumers.length }];
        return { id, scope: "stream", dir, streams, bytes: size, without_data: [] };
      }
      const contents = await catalogue.readContents(id);
      total = contents.streams.reduce((n, s) => n + (s.state === "completed" ? (s.data?.size ?? 0) : 0), 0);
      const streams: ExportedStream[] = [];
      for (const entry of contents.streams.filter((s) => s.state === "completed")) {
        const folder = join(dir, entry.name);
        await mkdir(folder);
        // Configurations first: the folder's backup.json, written last, says it is complete.
        if (entry.config) await copySmall(nc, bucket, entry.config, join(folder, streamConfigFile(entry.name)));
        for (const c of entry.consumers) await copySmall(nc, bucket, c.config, join(folder, consumerConfigFile(entry.name, c.name)));
        const size = entry.data ? await exportSnapshot(nc, bucket, entry.data, folder, progress) : undefined;
        streams.push({
          stream: entry.name,
          dir: folder,
          ...(size !== undefined ? { size, messages: entry.data!.messages } : {}),
          consumers: entry.consumers.length,
        });
      }
      const bytes = streams.reduce((n, s) => n + (s.size ?? 0), 0);
      return { id, scope: "account", dir, streams, bytes, without_data: streams.filter((s) => s.size === undefined).map((s) => s.stream) };
    } catch (err) {
      await undo().catch(() => {});
      throw err;
    }
  } finally {
    catalogue.close();
  }
}

/** Writes a snapshot's archive, then its backup.json, into `dir`; returns the archive's size. */
async function exportSnapshot(nc: NatsConnection, bucket: string, snap: SnapshotObjects, dir: string, progress: (bytes: number) => void): Promise<number> {
  const meta = await archiveMeta(nc, bucket, snap);
  await pipeline(readObject(nc, meta), counted(progress), createWriteStream(join(dir, ArchiveFile), { flags: "wx" }));
  await copySmall(nc, bucket, snap.objects.config, join(dir, BackupJsonFile));
  return meta.size;
}

/** A pipeline step that reports the bytes passing through it. */
export function counted(progress: (bytes: number) => void) {
  return async function* (source: AsyncIterable<Uint8Array>) {
    for await (const chunk of source) {
      progress(chunk.length);
      yield chunk;
    }
  };
}

/** The archive object's metadata, which must be the archive the manifest recorded. */
export async function archiveMeta(nc: NatsConnection, bucket: string, snap: SnapshotObjects) {
  const meta = await objectMeta(nc, bucket, snap.objects.archive);
  if (meta.digest !== snap.sha256 || meta.size !== snap.size) {
    throw new BackupError(ErrorCode.Internal, `${snap.objects.archive} in bucket ${bucket} is damaged: it is not the archive its manifest recorded`);
  }
  return meta;
}

/** A small object's bytes, as stored, into `file` (never over an existing one). */
async function copySmall(nc: NatsConnection, bucket: string, name: string, file: string): Promise<void> {
  const bytes = await readSmallObject(nc, bucket, name);
  if (!bytes) throw BackupError.notFound(`${name} is not in bucket ${bucket}`);
  await writeFile(file, bytes, { flag: "wx" });
}
