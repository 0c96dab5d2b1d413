/**
 * The archive of a backup, written into the bucket by the server itself: the snapshot's deliver
 * subject is the object's chunk subject, so the bucket's stream stores every chunk as the server
 * sends it, and its publish acks are the acks the snapshot's flow control waits for. The
 * service only observes the chunks (to hash and count them) and, once the stream is seen to hold
 * all of them, writes the metadata that makes the object visible.
 */
import { headers, nuid, type NatsConnection } from "@nats-io/nats-core";
import type { JetStreamClient } from "@nats-io/jetstream";
import { BackupError, ErrorCode } from "../protocol/errors.ts";
import { jsApiRequest } from "../snapshot/jsapi.ts";
import { readObject } from "./object-reader.ts";
import { ObjectDigest, chunkSubject, metaSubject, streamOf, type ObjectMetaRecord } from "./object-format.ts";

export class ArchiveUpload {
  readonly nuid = nuid.next();
  readonly subject: string;
  #size = 0;
  #chunks = 0;
  #digest = new ObjectDigest();

  constructor(
    private readonly nc: NatsConnection,
    private readonly js: JetStreamClient,
    readonly bucket: string,
    readonly name: string,
    private readonly maxChunkSize: number,
  ) {
    this.subject = chunkSubject(bucket, this.nuid);
  }

  get size(): number {
    return this.#size;
  }
  get chunks(): number {
    return this.#chunks;
  }

  /** A chunk the server delivered (and the stream stored). */
  observe(chunk: Uint8Array): void {
    this.#digest.update(chunk);
    this.#size += chunk.length;
    this.#chunks++;
  }

  /**
   * Checks that the stream holds every message the server sent on the subject, removes the
   * snapshot's empty end message (a restore would take it for its own end), then publishes the
   * metadata.
   */
  async finish(messagesSent: number): Promise<ObjectMetaRecord> {
    let stored = await this.#storedAtLeast(messagesSent);
    if (stored > messagesSent) {
      // The subscription missed chunks (the server drops what a slow subscriber cannot take):
      // once the stream holds the end message, hash what it holds, read back with bounded flow.
      stored = await this.#storedThroughEnd();
      await this.#rehash(stored);
    } else if (stored !== messagesSent) {
      throw new BackupError(
        ErrorCode.Internal,
        `bucket ${this.bucket} holds ${stored} of the ${messagesSent} messages the server sent for ${this.name} (is the bucket full?)`,
      );
    }
    await this.#removeEndMessage();
    const meta: ObjectMetaRecord = {
      name: this.name,
      description: "",
      options: { max_chunk_size: this.maxChunkSize },
      bucket: this.bucket,
      nuid: this.nuid,
      size: this.#size,
      chunks: stored - 1,
      mtime: new Date().toISOString(),
      digest: this.#digest.digest(),
      deleted: false,
    };
    const h = headers();
    h.set("Nats-Rollup", "sub");
    await this.js.publish(metaSubject(this.bucket, this.name), JSON.stringify(meta), { headers: h, timeout: 10_000 });
    return meta;
  }

  /** Removes what the stream stored for this upload. The object never became visible. */
  async abort(): Promise<void> {
    await purgeChunks(this.nc, this.bucket, this.nuid);
  }

  async #storedThroughEnd(timeoutMs = 30_000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const text = await jsApiRequest(this.nc, `STREAM.MSG.GET.${streamOf(this.bucket)}`, JSON.stringify({ last_by_subj: this.subject }));
      if (!(JSON.parse(text) as { message: { data?: string } }).message.data) return this.#stored();
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    throw new BackupError(ErrorCode.Unavailable, `the bucket never stored the end of ${this.name}`);
  }

  async #rehash(messages: number): Promise<void> {
    this.#digest = new ObjectDigest();
    this.#size = 0;
    this.#chunks = 0;
    const info = { bucket: this.bucket, name: this.name, nuid: this.nuid, size: 0, chunks: messages, digest: "", options: { max_chunk_size: this.maxChunkSize } };
    for await (const chunk of readObject(this.js, info, { budgetBytes: 8 * 1024 * 1024, verify: false })) this.observe(chunk);
  }

  async #removeEndMessage(): Promise<void> {
    const text = await jsApiRequest(this.nc, `STREAM.MSG.GET.${streamOf(this.bucket)}`, JSON.stringify({ last_by_subj: this.subject }));
    const last = (JSON.parse(text) as { message: { seq: number; data?: string } }).message;
    if (last.data) throw new BackupError(ErrorCode.Internal, `the last message of ${this.name} is not the snapshot's end`);
    await jsApiRequest(this.nc, `STREAM.MSG.DELETE.${streamOf(this.bucket)}`, JSON.stringify({ seq: last.seq, no_erase: true }));
  }

  /** The stream stores what it is sent a little after we see it: wait, within bounds, for the count. */
  async #storedAtLeast(expected: number, timeoutMs = 10_000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    while (true) {
      const stored = await this.#stored();
      if (stored >= expected || Date.now() > deadline) return stored;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  async #stored(): Promise<number> {
    const text = await jsApiRequest(this.nc, `STREAM.INFO.${streamOf(this.bucket)}`, JSON.stringify({ subjects_filter: this.subject }));
    return (JSON.parse(text) as { state?: { subjects?: Record<string, number> } }).state?.subjects?.[this.subject] ?? 0;
  }
}

export async function purgeChunks(nc: NatsConnection, bucket: string, id: string): Promise<void> {
  await jsApiRequest(nc, `STREAM.PURGE.${streamOf(bucket)}`, JSON.stringify({ filter: chunkSubject(bucket, id) }));
}
