/**
 * Large objects (archives) moved between the bucket and a file without holding them whole: read
 * chunk by chunk with direct gets (each asked for only when the reader wants more, so a slow disk
 * slows the reads), checked against the object's metadata as they pass; written chunk by chunk
 * with a bounded number of publishes awaiting their ack, hashed as they go, the metadata
 * published last without a rollup (see catalogue/object-writes.ts for why none).
 */
import { Readable } from "node:stream";
import { nuid, type NatsConnection } from "@nats-io/nats-core";
import type { JetStreamClient, PubAck } from "@nats-io/jetstream";
import { apiPrefix } from "../jetstream/jsapi.ts";
import { BackupError, ErrorCode } from "../protocol/errors.ts";
import { ObjectCheck } from "./object-check.ts";
import { ChunkTally, chunkSubject, streamOf, tallyMeta, type ObjectMetaRecord } from "./object-format.ts";
import { publishMeta, readMeta } from "./object-writes.ts";
import { BucketWriteTimeoutMs, purgeChunks } from "./bucket-stream.ts";

/** Object `name`'s live metadata; 404 when there is none. */
export async function objectMeta(nc: NatsConnection, bucket: string, name: string): Promise<ObjectMetaRecord> {
  const stored = await readMeta(nc, bucket, name);
  if (!stored || stored.meta.deleted) throw BackupError.notFound(`${name} is not in bucket ${bucket}`);
  return stored.meta;
}

/**
 * The object's bytes as a stream, one chunk per read: each chunk is fetched when the consumer of
 * the stream asks for more. Errors (a chunk missing, the digest not the recorded one) end the
 * stream with a 500 "damaged"; the last bytes are only given out once the whole object checked.
 */
export function readObject(nc: NatsConnection, meta: ObjectMetaRecord): Readable {
  const check = new ObjectCheck(meta);
  const subject = chunkSubject(meta.bucket, meta.nuid);
  const directGet = `${apiPrefix(nc)}.DIRECT.GET.${streamOf(meta.bucket)}`;
  let seq = 0;
  let read = 0;
  /** The next chunk's bytes, or null after the last (once the whole object checked). */
  const next = async (): Promise<Uint8Array | null> => {
    if (read === meta.chunks) {
      // (endChunk verified the whole object at its last chunk.)
      if (meta.chunks === 0) check.verify();
      return null;
    }
    let reply;
    try {
      reply = await nc.request(directGet, JSON.stringify({ next_by_subj: subject, seq: seq + 1 }), { timeout: 10_000 });
    } catch (err) {
      throw new BackupError(ErrorCode.Unavailable, `could not read ${meta.name} from bucket ${meta.bucket}: ${(err as Error).message}`, { cause: err });
    }
    const status = reply.headers?.code ?? 0;
    if (status === 404) {
      check.verify(); // fewer chunks than recorded: names it damaged
      throw new BackupError(ErrorCode.Internal, `object ${meta.name} in bucket ${meta.bucket} is damaged: chunk ${read + 1} is missing`);
    }
    if (status >= 300) {
      throw new BackupError(ErrorCode.Unavailable, `could not read ${meta.name} from bucket ${meta.bucket}: ${status} ${reply.headers?.description ?? ""}`.trim());
    }
    seq = Number(reply.headers?.get("Nats-Sequence"));
    read++;
    check.part(reply.data);
    check.endChunk(meta.chunks - read);
    return reply.data;
  };
  return new Readable({
    // One chunk buffered ahead at most: the default 16 KiB mark is below a chunk's size.
    highWaterMark: 1,
    async read() {
      try {
        let chunk = await next();
        // (An empty push would not ask for more: skip empty chunks, which add no bytes.)
        while (chunk !== null && chunk.length === 0) chunk = await next();
        this.push(chunk);
      } catch (err) {
        this.destroy(err as Error);
      }
    },
  });
}

/** Publishes awaiting their ack at once, at most: bounds what is in flight to the bucket. */
const WriteWindow = 8;

/**
 * A new object written chunk by chunk: `write` resolves once the chunk may be followed by another
 * (at most `WriteWindow` unacknowledged), `commit` publishes its metadata once every chunk is
 * stored, `abort` removes what was stored. The name must be new (or deleted).
 */
export class ObjectWriter {
  readonly nuid = nuid.next();
  readonly subject: string;
  readonly tally = new ChunkTally();
  #inFlight = new Set<Promise<PubAck>>();
  #failure: unknown = null;

  constructor(
    private readonly nc: NatsConnection,
    private readonly js: JetStreamClient,
    readonly bucket: string,
    readonly name: string,
    readonly chunkSize: number,
  ) {
    this.subject = chunkSubject(bucket, this.nuid);
  }

  async write(chunk: Uint8Array): Promise<void> {
    if (this.#failure) throw this.#failure;
    this.tally.part(chunk);
    this.tally.endChunk();
    const ack = this.js.publish(this.subject, chunk, { timeout: BucketWriteTimeoutMs });
    this.#inFlight.add(ack);
    ack.then(
      () => this.#inFlight.delete(ack),
      (err: unknown) => {
        this.#inFlight.delete(ack);
        this.#failure ??= new BackupError(ErrorCode.Unavailable, `bucket ${this.bucket} did not store a chunk of ${this.name}: ${(err as Error).message}`, { cause: err });
      },
    );
    while (this.#inFlight.size >= WriteWindow) await Promise.race(this.#inFlight).catch(() => {});
    if (this.#failure) throw this.#failure;
  }

  /** Waits for every chunk's ack, then makes the object visible. */
  async commit(): Promise<ObjectMetaRecord> {
    await Promise.allSettled([...this.#inFlight]);
    if (this.#failure) throw this.#failure;
    const meta = tallyMeta(this, this.chunkSize, this.tally);
    const replaced = await readMeta(this.nc, this.bucket, this.name);
    if (replaced && !replaced.meta.deleted) throw new BackupError(ErrorCode.Conflict, `${this.name} is already in bucket ${this.bucket}`);
    await publishMeta(this.js, meta, replaced?.seq ?? 0);
    return meta;
  }

  /** Removes the chunks stored so far (after the ones in flight landed): the object never became visible. */
  async abort(): Promise<void> {
    await Promise.allSettled([...this.#inFlight]);
    await purgeChunks(this.nc, this.bucket, this.nuid);
  }
}
