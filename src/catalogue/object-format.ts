/**
 * The object store's layout, as @nats-io/obj and the Go client write it, for the streaming
 * writer and reader that move large archives faster than the library does.
 */
import { createHash, type Hash } from "node:crypto";
import type { ChunkSink } from "../snapshot/watch.ts";

export const streamOf = (bucket: string) => `OBJ_${bucket}`;
export const chunkSubject = (bucket: string, nuid: string) => `$O.${bucket}.C.${nuid}`;
export const metaSubject = (bucket: string, name: string) => `$O.${bucket}.M.${base64UrlPadded(Buffer.from(name))}`;
/** The object name a metadata subject stands for. */
export const nameOfMetaSubject = (bucket: string, subject: string) =>
  Buffer.from(subject.slice(metaSubject(bucket, "").length), "base64url").toString();

/** base64url with its padding kept, as the object store encodes names and digests. */
export function base64UrlPadded(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString("base64").replace(/\+/g, "-").replace(/\//g, "_");
}

export const DigestPrefix = "SHA-256=";

/** Counts an object's chunks and bytes and hashes them (SHA-256, natively) in the object store's digest notation. */
export class ChunkTally implements ChunkSink {
  #hash: Hash = createHash("sha256");
  #size = 0;
  #chunks = 0;

  /** `observe`: sees every byte hashed, in order (a backup checks its archive on the same pass). */
  constructor(private readonly observe?: (bytes: Uint8Array) => void) {}

  get size(): number {
    return this.#size;
  }
  get chunks(): number {
    return this.#chunks;
  }
  part(bytes: Uint8Array): void {
    this.#hash.update(bytes);
    this.#size += bytes.length;
    this.observe?.(bytes);
  }
  endChunk(): void {
    this.#chunks++;
  }
  digest(): string {
    return DigestPrefix + base64UrlPadded(this.#hash.digest());
  }
}

/** The metadata of an object whose chunks `tally` counted and hashed as they were written. */
export function tallyMeta(object: { name: string; bucket: string; nuid: string }, maxChunkSize: number, tally: ChunkTally): ObjectMetaRecord {
  return {
    name: object.name,
    description: "",
    options: { max_chunk_size: maxChunkSize },
    bucket: object.bucket,
    nuid: object.nuid,
    size: tally.size,
    chunks: tally.chunks,
    mtime: new Date().toISOString(),
    digest: tally.digest(),
    deleted: false,
  };
}

/** The JSON an object's metadata message holds (what ObjectInfo is read from). */
export interface ObjectMetaRecord {
  name: string;
  description: string;
  headers?: Record<string, string[]>;
  options: { max_chunk_size: number };
  metadata?: Record<string, string>;
  bucket: string;
  nuid: string;
  size: number;
  chunks: number;
  mtime: string;
  digest: string;
  deleted: boolean;
}
