/**
 * Streams one object into the object store: each chunk is published as it comes, several in
 * flight (bounded by bytes), hashed natively, and the metadata that makes the object visible is
 * written only after every chunk is stored and counted.
 */
import { headers, nuid, type NatsConnection } from "@nats-io/nats-core";
import type { JetStreamClient } from "@nats-io/jetstream";
import { BackupError, ErrorCode } from "../protocol/errors.ts";
import { PipelinedRequests } from "../flow/pipelined-requests.ts";
import { jsApiRequest } from "../snapshot/jsapi.ts";
import {
  ObjectDigest,
  chunkSubject,
  metaSubject,
  streamOf,
  type ObjectMetaRecord,
} from "./object-format.ts";

export interface ObjectWriterOptions {
  /** Largest chunk the writer will be given (recorded as the object's max_chunk_size). */
  maxChunkSize: number;
  /** Bytes published but not yet acknowledged by the stream. */
  windowBytes: number;
  metadata?: Record<string, string>;
  timeoutMs?: number;
}

export class ObjectWriter {
  readonly nuid = nuid.next();
  #size = 0;
  #chunks = 0;
  #digest = new ObjectDigest();
  #inFlight = new Set<Promise<void>>();
  #inFlightBytes = 0;
  #failure: Error | null = null;
  readonly #requests: PipelinedRequests;

  constructor(
    private readonly nc: NatsConnection,
    private readonly js: JetStreamClient,
    readonly bucket: string,
    readonly name: string,
    private readonly opts: ObjectWriterOptions,
  ) {
    this.#requests = new PipelinedRequests(nc, opts.timeoutMs ?? 10_000);
  }

  get size(): number {
    return this.#size;
  }
  get chunks(): number {
    return this.#chunks;
  }
  get inFlightBytes(): number {
    return this.#inFlightBytes;
  }

  /**
   * Publishes one chunk. `onStored` runs once the stream has acknowledged it. Resolves when the
   * window has room for another chunk.
   */
  async write(chunk: Uint8Array, onStored?: () => void): Promise<void> {
    this.#throwIfFailed();
    if (chunk.length > this.opts.maxChunkSize) {
      throw new BackupError(ErrorCode.Internal, `chunk of ${chunk.length} bytes exceeds the object's ${this.opts.maxChunkSize}`);
    }
    this.#digest.update(chunk);
    this.#size += chunk.length;
    this.#chunks++;
    this.#inFlightBytes += chunk.length;
    // The bucket's stream owns `$O.<bucket>.C.>` (streams cannot overlap), so no expected-stream
    // header is needed, and a chunk may be as large as max_payload.
    const stored = this.#requests
      .request(chunkSubject(this.bucket, this.nuid), chunk)
      .then((reply) => {
        const ack = JSON.parse(reply.string()) as { error?: { description?: string } };
        if (ack.error) throw new Error(ack.error.description ?? "the stream refused the chunk");
        onStored?.();
      })
      .catch((err: unknown) => {
        this.#failure ??= new BackupError(
          ErrorCode.Unavailable,
          `storing a chunk of ${this.name} in bucket ${this.bucket} failed: ${(err as Error).message}`,
          { cause: err },
        );
      })
      .finally(() => {
        this.#inFlight.delete(stored);
        this.#inFlightBytes -= chunk.length;
      });
    this.#inFlight.add(stored);
    while (this.#inFlightBytes >= this.opts.windowBytes) await Promise.race(this.#inFlight);
    this.#throwIfFailed();
  }

  /** Waits for every chunk, checks the stream holds them all, then publishes the metadata. */
  async finish(): Promise<ObjectMetaRecord> {
    await Promise.all(this.#inFlight);
    this.#requests.close();
    this.#throwIfFailed();
    await this.#checkStored();
    const meta: ObjectMetaRecord = {
      name: this.name,
      description: "",
      options: { max_chunk_size: this.opts.maxChunkSize },
      ...(this.opts.metadata ? { metadata: this.opts.metadata } : {}),
      bucket: this.bucket,
      nuid: this.nuid,
      size: this.#size,
      chunks: this.#chunks,
      mtime: new Date().toISOString(),
      digest: this.#digest.digest(),
      deleted: false,
    };
    const h = headers();
    h.set("Nats-Rollup", "sub");
    await this.js.publish(metaSubject(this.bucket, this.name), JSON.stringify(meta), {
      headers: h,
      expect: { streamName: streamOf(this.bucket) },
      timeout: this.opts.timeoutMs ?? 10_000,
    });
    return meta;
  }

  /** Removes whatever chunks were stored. The object never became visible. */
  async abort(): Promise<void> {
    await Promise.allSettled(this.#inFlight);
    this.#requests.close();
    await purgeChunks(this.nc, this.bucket, this.nuid);
  }

  async #checkStored(): Promise<void> {
    const subject = chunkSubject(this.bucket, this.nuid);
    const text = await jsApiRequest(
      this.nc,
      `STREAM.INFO.${streamOf(this.bucket)}`,
      JSON.stringify({ subjects_filter: subject }),
    );
    const stored = (JSON.parse(text) as { state?: { subjects?: Record<string, number> } }).state?.subjects?.[subject] ?? 0;
    if (stored !== this.#chunks) {
      throw new BackupError(ErrorCode.Internal, `bucket ${this.bucket} holds ${stored} of the ${this.#chunks} chunks of ${this.name}`);
    }
  }

  #throwIfFailed(): void {
    if (this.#failure) throw this.#failure;
  }
}

export async function purgeChunks(nc: NatsConnection, bucket: string, id: string): Promise<void> {
  await jsApiRequest(nc, `STREAM.PURGE.${streamOf(bucket)}`, JSON.stringify({ filter: chunkSubject(bucket, id) }));
}
