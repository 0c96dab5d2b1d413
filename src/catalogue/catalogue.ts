/**
 * The bucket of backups. A stream backup `<id>` is the objects `<id>/backup.json` (the stream's
 * `{config, state}` as the server gave them), `<id>/stream.tar.s2` (the snapshot's bytes as
 * sent) and `<id>/manifest.json`. An account backup holds, under `<id>/`, one object per stream
 * and consumer configuration, with data the same pair per stream under `<id>/<stream>/`, the
 * list of what it holds (`account.json`) and its manifest (see `accountObjectNames`). The
 * manifest is written last, after every other part is stored and checked: a backup without one
 * is not a backup and is never listed.
 */
import type { NatsConnection } from "@nats-io/nats-core";
import { pino, type Logger } from "pino";
import { jetstream, type JetStreamClient } from "@nats-io/jetstream";
import { Objm, type ObjectInfo, type ObjectStore } from "@nats-io/obj";
import { BackupError, ErrorCode } from "../protocol/errors.ts";
import { AccountContents, BackupManifest, type AccountManifest, type StreamManifest } from "../protocol/schemas.ts";
import { ArchiveUpload, dropRevivedEnd } from "./archive-upload.ts";
import { purgeChunks, storedMessage, subjectCounts } from "./bucket-stream.ts";
import { deleteObject, MetaChanged, publishDeleted, putSmallObject, readMeta, readMetaFromLeader } from "./object-writes.ts";
import { deliverArchive, type DeliveryOptions } from "./archive-delivery.ts";
import { chunkSubject, metaSubject, nameOfMetaSubject, streamOf, type ObjectMetaRecord } from "./object-format.ts";
import type { BulkConnection } from "../bulk/bulk-connection.ts";
import { ManifestIndex } from "./manifest-index.ts";
import { readSmallObject } from "./object-reads.ts";
import { apiPrefix, streamExists } from "../jetstream/jsapi.ts";
import { cutPage, type ListPage } from "./list-page.ts";

export interface CatalogueOptions {
  bucket: string;
  /** Replicas of the bucket's stream when it is created. */
  replicas?: number;
  /** Open the bucket only if it exists (404 when it does not), never creating it: for readers such as export. */
  existing?: boolean;
  /** Keep the manifests in memory (see manifest-index.ts), for lists that do not read each one from the server. */
  index?: boolean;
  /** Where the index reports its failures and rebuilds. */
  log?: Logger;
}

export const objectNames = (id: string) => ({
  config: `${id}/backup.json`,
  archive: `${id}/stream.tar.s2`,
  manifest: `${id}/manifest.json`,
});

/**
 * An account backup's objects. Stream and consumer names have no `.` (the server refuses one), so
 * a stream's folder `<id>/<stream>/` never meets the `.json` objects beside it; the folders are
 * what `nats account backup DIR` writes as `DIR/<stream>/`, and the configuration objects are
 * named as the NATS disaster-recovery guide's account backups named them.
 */
export const accountObjectNames = (id: string) => ({
  manifest: `${id}/manifest.json`,
  contents: `${id}/account.json`,
  streamConfig: (stream: string) => `${id}/stream_${stream}.json`,
  consumerConfig: (stream: string, consumer: string) => `${id}/stream_${stream}_consumer_${consumer}.json`,
  data: (stream: string) => ({ config: `${id}/${stream}/backup.json`, archive: `${id}/${stream}/stream.tar.s2` }),
});

/** A part a manifest's commit checks: stored whole, and for an archive the one recorded. */
export interface ManifestPart {
  name: string;
  archive?: { sha256: string; size: number };
  /**
   * Count its stored chunks against its metadata (default true). A small object this service
   * wrote itself, each chunk acked before its metadata, may skip the count: one STREAM.INFO
   * fewer per object, for an account backup of hundreds.
   */
  countChunks?: boolean;
}

/** Which backups a list holds: one stream's stream backups, or every backup of one scope. */
export interface ListFilter {
  stream?: string;
  scope?: BackupManifest["scope"];
}

const ManifestSuffix = "/manifest.json";
/** The object metadata key that carries a manifest object's JSON, so that listing reads no object bodies. */
export const ManifestMetadataKey = "nats-backup-manifest";
/** Manifests read at once while listing. */
const ListBatch = 64;

/** A commit whose answer was lost, and whether its manifest landed could not be found out: the backup's parts must stay. */
export class ManifestUnsettled extends BackupError {}

export class Catalogue {
  #index: ManifestIndex | null = null;

  private constructor(
    readonly nc: NatsConnection,
    readonly js: JetStreamClient,
    readonly bucket: string,
    private readonly store: ObjectStore,
  ) {}

  /** Opens the bucket, creating it on first use unless `existing` says it must be there. */
  static async open(nc: NatsConnection, opts: CatalogueOptions): Promise<Catalogue> {
    const js = jetstream(nc, { apiPrefix: apiPrefix(nc) });
    if (opts.existing && !(await streamExists(nc, streamOf(opts.bucket)))) {
      throw BackupError.notFound(`bucket ${opts.bucket} not found (no stream ${streamOf(opts.bucket)})`);
    }
    const store = opts.existing
      ? await new Objm(js).open(opts.bucket, false)
      : await new Objm(js).create(opts.bucket, {
          replicas: opts.replicas ?? 1,
          description: "nats-backup: stream snapshots",
        });
    const catalogue = new Catalogue(nc, js, opts.bucket, store);
    if (opts.index) catalogue.#index = await ManifestIndex.start(nc, opts.bucket, manifestOf, opts.log ?? pino({ level: "silent" }));
    return catalogue;
  }

  close(): void {
    this.#index?.stop();
  }

  /** Stores a snapshot's backup.json as object `name`. */
  putConfig(name: string, backupJson: string): Promise<void> {
    return this.putText(name, backupJson);
  }

  /** Stores a small object; a retried backup replaces the deleted record of its first try. */
  async putText(name: string, text: string): Promise<void> {
    const replaced = await readMeta(this.nc, this.bucket, name);
    if (replaced && !replaced.meta.deleted) throw new BackupError(ErrorCode.Internal, `${name} is already in bucket ${this.bucket}`);
    await putSmallObject(this.js, this.bucket, name, new TextEncoder().encode(text), { replaces: replaced?.seq ?? 0 });
  }

  /** A small object's text (backup.json, a configuration), read whole and checked (object-reads.ts). */
  async readText(name: string): Promise<string> {
    const bytes = await readSmallObject(this.nc, this.bucket, name);
    if (!bytes) throw BackupError.notFound(`${name} is not in bucket ${this.bucket}`);
    return new TextDecoder().decode(bytes);
  }

  /** What account backup `id` holds (its account.json). */
  async readContents(id: string): Promise<AccountContents> {
    const text = await this.readText(accountObjectNames(id).contents);
    const parsed = AccountContents.safeParse(JSON.parse(text));
    if (!parsed.success) throw new BackupError(ErrorCode.Internal, `backup ${id} is damaged: its account.json cannot be read (${parsed.error.message})`);
    return parsed.data;
  }

  /**
   * An archive object `name` the server writes into the bucket by delivering its snapshot to
   * `upload.subject`; `observe` sees its bytes, in order, as they are hashed.
   */
  archiveUpload(name: string, maxChunkSize: number, observe?: (bytes: Uint8Array) => void): ArchiveUpload {
    return new ArchiveUpload(this.nc, this.js, this.bucket, name, maxChunkSize, observe);
  }

  async archiveInfo(name: string): Promise<ObjectInfo> {
    const info = await this.store.info(name);
    if (!info || info.deleted) throw BackupError.notFound(`${name} is not in bucket ${this.bucket}`);
    return info;
  }

  /** Repairs what a server crash can undo in a committed archive (see `dropRevivedEnd`); true when it had to. */
  repairArchive(info: ObjectInfo): Promise<boolean> {
    return dropRevivedEnd(this.nc, this.bucket, info.nuid);
  }

  /**
   * Sends the archive, read on `bulk`, to a restore's subject, checking it as it goes (see
   * archive-delivery.ts); resolves once the restore took every chunk of the recorded archive.
   */
  deliverArchive(bulk: BulkConnection, info: ObjectInfo, subject: string, opts: DeliveryOptions): Promise<void> {
    return deliverArchive(this.nc, bulk, info as unknown as ObjectMetaRecord, subject, opts);
  }

  /**
   * Makes a backup visible as completed: checks that its parts are in the bucket as written, then
   * stores its manifest, which can be written once only. When the write's answer is lost, it finds
   * out whether the manifest landed (`settleManifest`): resolves if it did, throws if it did not.
   */
  async commit(manifest: BackupManifest, parts: ManifestPart[] = streamParts(manifest)): Promise<void> {
    await this.#checkParts(manifest.id, parts);
    const json = JSON.stringify(manifest);
    const name = `${manifest.id}${ManifestSuffix}`;
    try {
      await putSmallObject(this.js, this.bucket, name, new TextEncoder().encode(json), { metadata: { [ManifestMetadataKey]: json } });
    } catch (err) {
      const landed = await this.settleManifest(manifest.id);
      // Read back through the schema, whose field order is not the writer's: compared the same way.
      if (landed && JSON.stringify(landed) === JSON.stringify(BackupManifest.parse(manifest))) return;
      if (err instanceof MetaChanged || landed) {
        throw BackupError.conflict(`backup ${manifest.id} can no longer be committed: its job was judged abandoned and taken over`);
      }
      throw err;
    }
  }

  /**
   * Settles whether backup `id` has a manifest, for good: the manifest, or null once none can be
   * written any more (a deleted record takes the name first). For a commit whose answer was lost,
   * and for the sweeper before it removes the parts of a backup whose job is gone.
   */
  async settleManifest(id: string, attempts = 6): Promise<BackupManifest | null> {
    const name = objectNames(id).manifest;
    let lastError: unknown;
    for (let attempt = 1; attempt <= attempts; attempt++) {
      try {
        await publishDeleted(this.js, this.bucket, name, 0);
        return null;
      } catch (err) {
        lastError = err;
        if (err instanceof MetaChanged) {
          const current = await readMeta(this.nc, this.bucket, name).catch(() => null);
          if (current) return current.meta.deleted ? null : parseManifest(current.meta.metadata?.[ManifestMetadataKey]);
        }
      }
      await new Promise((resolve) => setTimeout(resolve, 500 * attempt));
    }
    throw new ManifestUnsettled(ErrorCode.Unavailable, `could not tell whether backup ${id} has a manifest: ${(lastError as Error).message}`, {
      cause: lastError,
    });
  }

  /** A backup's parts are in the bucket and whole: live, every chunk stored, each archive the one the manifest records. */
  async #checkParts(id: string, parts: ManifestPart[]): Promise<void> {
    const notWhole = (why: string) => new BackupError(ErrorCode.Internal, `backup ${id} is not whole: ${why} (bucket ${this.bucket})`);
    for (let i = 0; i < parts.length; i += ListBatch) {
      await Promise.all(
        parts.slice(i, i + ListBatch).map(async ({ name, archive, countChunks = true }) => {
          const stored = await readMetaFromLeader(this.nc, this.bucket, name);
          if (!stored || stored.meta.deleted) throw notWhole(`${name} is missing`);
          const { meta } = stored;
          // (Chunk boundaries may differ: a copy made with another chunk size is the same archive.)
          if (archive && (meta.digest !== archive.sha256 || meta.size !== archive.size)) {
            throw notWhole(`${name} is not the archive the manifest records`);
          }
          if (!countChunks) return;
          const subject = chunkSubject(this.bucket, meta.nuid);
          const chunks = meta.chunks === 0 ? 0 : ((await subjectCounts(this.nc, this.bucket, subject))[subject] ?? 0);
          if (chunks !== meta.chunks) throw notWhole(`${chunks} of the ${meta.chunks} chunks of ${name} are stored`);
        }),
      );
    }
  }

  /** Completed backups, newest first: from the index when it can tell, else read from the bucket. */
  async list(filter: ListFilter = {}): Promise<BackupManifest[]> {
    return newestFirst(await this.#manifests(), filter);
  }

  /**
   * One page of `list`: the backups older than `after` (ids are ULIDs, so older means a lower id),
   * at most `limit` of them and no more than `maxBytes` of JSON; `next` when more remain. Pages
   * are cut by id, not by position: a backup removed between two requests shifts nothing.
   */
  async page(opts: ListFilter & { after?: string; limit: number; maxBytes: number }): Promise<ListPage> {
    const { after } = opts;
    const older = (await this.#manifests()).filter((m) => after === undefined || m.id < after);
    return cutPage(newestFirst(older, opts), opts.limit, opts.maxBytes);
  }

  async #manifests(): Promise<BackupManifest[]> {
    return (await this.#index?.manifests()) ?? (await this.#readManifests());
  }

  /** Every completed backup, read from the bucket: its manifests' metadata messages by direct get, no consumer. */
  async #readManifests(): Promise<BackupManifest[]> {
    const subjects = await this.#subjects(metaSubject(this.bucket, "") + ">");
    const manifestSubjects = subjects.filter((s) => nameOfMetaSubject(this.bucket, s).endsWith(ManifestSuffix));
    const manifests: BackupManifest[] = [];
    for (const meta of await this.#lastMetas(manifestSubjects)) {
      const manifest = meta ? manifestOf(meta) : null;
      if (manifest) manifests.push(manifest);
    }
    return manifests;
  }

  /** The subjects of the bucket's stream that match `filter`. */
  async #subjects(filter: string): Promise<string[]> {
    return Object.keys(await subjectCounts(this.nc, this.bucket, filter));
  }

  /** The last metadata message of each subject (null where there is none), `ListBatch` requests at a time. */
  async #lastMetas(subjects: string[]): Promise<(ObjectMetaRecord | null)[]> {
    const metas: (ObjectMetaRecord | null)[] = [];
    for (let i = 0; i < subjects.length; i += ListBatch) {
      metas.push(...(await Promise.all(subjects.slice(i, i + ListBatch).map((s) => this.#lastMeta(s)))));
    }
    return metas;
  }

  async #lastMeta(subject: string): Promise<ObjectMetaRecord | null> {
    const reply = await this.nc.request(`${apiPrefix(this.nc)}.DIRECT.GET.${streamOf(this.bucket)}`, JSON.stringify({ last_by_subj: subject }), {
      timeout: 5000,
    });
    if (reply.headers?.code && reply.headers.code >= 300) return null;
    return JSON.parse(reply.string()) as ObjectMetaRecord;
  }

  async info(id: string): Promise<BackupManifest> {
    const info = await this.store.info(objectNames(id).manifest);
    const manifest = info && !info.deleted ? parseManifest(info.metadata?.[ManifestMetadataKey]) : null;
    if (!manifest) throw BackupError.notFound(`backup ${id} not found in bucket ${this.bucket}`);
    return manifest;
  }

  /** The newest stream backup of `stream`. */
  async latest(stream: string): Promise<StreamManifest> {
    const [newest] = (await this.list({ stream })) as StreamManifest[];
    if (!newest) throw BackupError.notFound(`no completed backup of stream ${stream} in bucket ${this.bucket}`);
    return newest;
  }

  /** The newest account backup that saved every stream it was asked for. */
  async latestAccount(): Promise<AccountManifest> {
    const whole = ((await this.list({ scope: "account" })) as AccountManifest[]).find((m) => m.failed.length === 0);
    if (!whole) throw BackupError.notFound(`no account backup without failed streams in bucket ${this.bucket}; name one with "backup"`);
    return whole;
  }

  /**
   * Removes every object of a backup, the manifest first so it stops being listed at once; an
   * account backup's other objects are found by their `<id>/` prefix.
   */
  async delete(id: string): Promise<number> {
    const manifest = await this.info(id);
    const names =
      manifest.scope === "stream"
        ? [objectNames(id).archive, objectNames(id).config]
        : (await this.objects()).map((o) => o.name).filter((name) => name.startsWith(`${id}/`) && !name.endsWith(ManifestSuffix));
    let removed = 0;
    for (const name of [`${id}${ManifestSuffix}`, ...names]) {
      if (await deleteObject(this.nc, this.js, this.bucket, name)) removed++;
    }
    return removed;
  }

  /**
   * Every live object of the bucket, complete backups or not, read as one metadata message per
   * subject. It throws rather than return a short list, since the sweeper removes what no object
   * references (the library's list can end early when the server restarts during it).
   */
  async objects(): Promise<ObjectMetaRecord[]> {
    const subjects = await this.#subjects(metaSubject(this.bucket, "") + ">");
    const metas = await this.#lastMetas(subjects);
    const live: ObjectMetaRecord[] = [];
    metas.forEach((meta, i) => {
      if (!meta) throw new BackupError(ErrorCode.Unavailable, `listing bucket ${this.bucket}: no metadata on ${subjects[i]}`);
      if (!meta.deleted) live.push(meta);
    });
    return live;
  }

  async deleteObject(name: string): Promise<void> {
    await deleteObject(this.nc, this.js, this.bucket, name);
  }

  /** The upload ids (nuids) that have chunks in the bucket's stream. */
  async chunkUploads(): Promise<string[]> {
    const prefix = chunkSubject(this.bucket, "");
    return (await this.#subjects(`${prefix}>`)).map((subject) => subject.slice(prefix.length));
  }

  /**
   * When the newest chunk of an upload was stored. A 2.9 server answers 404 to `last_by_subj`
   * once the subject's last message was deleted, which is what committing an upload does to its
   * end message; an upload whose writer died right then is dated by its first chunk instead.
   */
  async lastChunkTime(nuid: string): Promise<Date | null> {
    const subject = chunkSubject(this.bucket, nuid);
    for (const query of [{ last_by_subj: subject }, { next_by_subj: subject, seq: 1 }]) {
      // Any failure: try the next way.
      const found = await storedMessage(this.nc, this.bucket, query).catch(() => null);
      if (found) return new Date(found.time);
    }
    return null;
  }

  purgeUpload(nuid: string): Promise<void> {
    return purgeChunks(this.nc, this.bucket, nuid);
  }

  /** Drops the pieces of a backup that never completed: chunks of an unfinished upload, and the objects `names` if written. */
  async discard(names: string[], upload?: ArchiveUpload, untilQuietMs = 0): Promise<void> {
    if (upload) await upload.abort(untilQuietMs);
    for (const name of names) await deleteObject(this.nc, this.js, this.bucket, name);
  }

  /** Drops every object under `<id>/` (a backup that will not be committed). */
  async discardAll(id: string): Promise<void> {
    const names = (await this.objects()).map((o) => o.name).filter((name) => name.startsWith(`${id}/`));
    await this.discard(names);
  }
}

/** A stream backup's parts; an account backup's are named by its job, which knows what it wrote. */
function streamParts(manifest: BackupManifest): ManifestPart[] {
  if (manifest.scope !== "stream") throw new BackupError(ErrorCode.Internal, `account backup ${manifest.id} is committed with the list of its parts`);
  const names = objectNames(manifest.id);
  return [{ name: names.config }, { name: names.archive, archive: { sha256: manifest.sha256, size: manifest.size } }];
}

/** The manifest an object's metadata record carries: null for any other object, or a deleted one. */
export function manifestOf(meta: ObjectMetaRecord): BackupManifest | null {
  return meta.name.endsWith(ManifestSuffix) && !meta.deleted ? parseManifest(meta.metadata?.[ManifestMetadataKey]) : null;
}

function newestFirst(manifests: BackupManifest[], filter: ListFilter): BackupManifest[] {
  const { stream, scope } = filter;
  return manifests
    .filter((m) => (scope === undefined || m.scope === scope) && (stream === undefined || (m.scope === "stream" && m.stream === stream)))
    .sort((a, b) => (a.id < b.id ? 1 : a.id > b.id ? -1 : 0));
}

function parseManifest(json: string | undefined): BackupManifest | null {
  if (!json) return null;
  try {
    return BackupManifest.parse(JSON.parse(json));
  } catch {
    return null;
  }
}
