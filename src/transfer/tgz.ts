/**
 * A backup as a gzipped tar of its streams' storage folders: each entry of the snapshot's tar put
 * under `<stream>/`, so that `tar xzf FILE` inside `<store_dir>/jetstream/<account>/streams/` of
 * a stopped nats-server lays the stream down as the server keeps it (the snapshot's tar is the
 * stream's folder). Only archives of nats-server up to 2.14 are tars; a 2.15 archive (NATSARC1
 * records) is refused before anything is written. Streamed through: bucket → S2 decoder → tar
 * reader → tar writer → gzip → file, each step waiting for the next; written under a temporary
 * name and renamed at the end, so a failure leaves no file.
 */
import { createWriteStream } from "node:fs";
import { rename, rm, stat } from "node:fs/promises";
import { once } from "node:events";
import { basename, dirname, join } from "node:path";
import { Readable, type Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGzip } from "node:zlib";
import tar from "tar-stream";
import type { NatsConnection } from "@nats-io/nats-core";
import { s2Decompress } from "../archive/mod.ts";
import { Catalogue, objectNames } from "../catalogue/catalogue.ts";
import { BackupError } from "../protocol/errors.ts";
import { archiveMeta, counted, type SnapshotObjects } from "./export.ts";
import { readObject } from "../catalogue/object-stream.ts";

const V2Magic = "NATSARC1";

export interface TgzResult {
  id: string;
  file: string;
  streams: string[];
  /** Tar entries written. */
  entries: number;
  /** Bytes of the gzipped file. */
  bytes: number;
}

export async function exportTgz(
  nc: NatsConnection,
  bucket: string,
  id: string,
  file: string,
  opts: { onProgress?(bytes: number, total: number): void } = {},
): Promise<TgzResult> {
  const catalogue = await Catalogue.open(nc, { bucket, existing: true });
  try {
    const manifest = await catalogue.info(id);
    const snapshots: { stream: string; snap: SnapshotObjects; format: string | undefined }[] =
      manifest.scope === "stream"
        ? [{ stream: manifest.stream, snap: { ...manifest, objects: objectNames(id) }, format: manifest.archive_format }]
        : (await catalogue.readContents(id)).streams
            .filter((s) => s.state === "completed" && s.data)
            .map((s) => ({ stream: s.name, snap: s.data!, format: s.data!.archive_format }));
    if (snapshots.length === 0) throw BackupError.badRequest(`backup ${id} holds no stream's data: there is nothing to put in a tgz`);
    const v2 = snapshots.filter((s) => s.format === "v2").map((s) => s.stream);
    if (v2.length > 0) throw notATar(id, v2);
    if (await stat(file).catch(() => null)) throw BackupError.conflict(`${file} exists: export writes a new file only`);

    const temporary = join(dirname(file), `.${basename(file)}.${process.pid}.partial`);
    const pack = tar.pack();
    const written = pipeline(Readable.from(pack), createGzip(), createWriteStream(temporary, { flags: "wx" }));
    written.catch(() => {});
    let entries = 0;
    let read = 0;
    const total = snapshots.reduce((n, s) => n + s.snap.size, 0);
    try {
      for (const { stream, snap } of snapshots) {
        const meta = await archiveMeta(nc, bucket, snap);
        const decoder = s2Decompress();
        const fetched = pipeline(readObject(nc, meta), counted((n) => opts.onProgress?.((read += n), total)), decoder);
        fetched.catch(() => {});
        try {
          entries += await repack(decoder, pack, stream, () => notATar(id, [stream]));
        } catch (err) {
          decoder.destroy();
          throw err;
        }
        await fetched;
      }
      pack.finalize();
      await written;
      await rename(temporary, file);
    } catch (err) {
      pack.destroy();
      await written.catch(() => {});
      await rm(temporary, { force: true });
      throw err;
    }
    return { id, file, streams: snapshots.map((s) => s.stream), entries, bytes: (await stat(file)).size };
  } finally {
    catalogue.close();
  }
}

function notATar(id: string, streams: string[]): BackupError {
  return BackupError.badRequest(
    `backup ${id} was taken on nats-server 2.15 or later (archive format v2, NATSARC1 records, not a tar) for stream ${streams.join(", ")}: ` +
      `it cannot be a tgz of the stream's folder; export it as a folder and restore it with nats stream restore instead`,
  );
}

/** Reads one snapshot's tar and writes each entry into `pack` under `<stream>/`; returns how many. */
async function repack(tarBytes: AsyncIterable<Buffer>, pack: tar.Pack, stream: string, v2: () => Error): Promise<number> {
  const extract = tar.extract();
  // Feeds the tar reader, waiting for it; the first bytes tell a NATSARC1 archive from a tar.
  const fed = (async () => {
    let head = Buffer.alloc(0);
    for await (const chunk of tarBytes) {
      if (head.length < V2Magic.length) {
        head = Buffer.concat([head, chunk]).subarray(0, V2Magic.length);
        if (head.length === V2Magic.length && head.toString("latin1") === V2Magic) throw v2();
      }
      if (!extract.write(chunk)) await once(extract as unknown as NodeJS.EventEmitter, "drain");
    }
    (extract as unknown as Writable).end();
  })();
  fed.catch((err: unknown) => extract.destroy(err as Error));
  let entries = 0;
  for await (const entry of extract) {
    const h = entry.header;
    if (h.name === "errors.txt") {
      // Up to 2.10 the server reports failures while building a snapshot only inside it.
      let text = "";
      for await (const chunk of entry as AsyncIterable<Buffer>) text += chunk.toString();
      throw new BackupError(500, `the snapshot of stream ${stream} holds errors.txt (the server failed while building it): ${text.trim().slice(0, 500)}`);
    }
    const sink = pack.entry({
      name: `${stream}/${h.name.replace(/^\.\//, "")}`,
      size: h.size ?? 0,
      mode: h.mode ?? 0o644,
      mtime: h.mtime ?? new Date(),
      type: h.type ?? "file",
      ...(h.linkname ? { linkname: h.linkname } : {}),
      uid: h.uid ?? 0,
      gid: h.gid ?? 0,
    }) as unknown as Writable;
    const done = new Promise<void>((resolve, reject) => {
      sink.once("finish", () => resolve());
      sink.once("error", reject);
    });
    for await (const chunk of entry) {
      if (!sink.write(chunk)) await once(sink, "drain");
    }
    sink.end();
    await done;
    entries++;
  }
  await fed;
  return entries;
}
