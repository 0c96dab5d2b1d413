/** Checks an object's chunks, in order, against its recorded chunk count, size and digest. */
import { BackupError, ErrorCode } from "../protocol/errors.ts";
import { ChunkTally, type ObjectMetaRecord } from "./object-format.ts";

export type CheckedObject = Pick<ObjectMetaRecord, "bucket" | "name" | "size" | "chunks" | "digest">;

export class ObjectCheck {
  #tally = new ChunkTally();

  constructor(readonly info: CheckedObject) {}

  get chunks(): number {
    return this.#tally.chunks;
  }

  part(bytes: Uint8Array): void {
    this.#tally.part(bytes);
  }

  /**
   * A chunk was read, and its consumer holds `pending` more: checks the count so far, and after
   * the last chunk the whole object (`verify`), so "done" means found whole. Counted as read,
   * since after a restart a 2.9 server can misreport the subject's message count in STREAM.INFO
   * while the consumer's pending count stays right.
   */
  endChunk(pending: number): "more" | "done" {
    this.#tally.endChunk();
    const { info } = this;
    if (pending === 0 && !this.complete) throw damaged(info, `only ${this.chunks} of its ${info.chunks} chunks are in the bucket`);
    if (pending > 0 && this.complete) throw damaged(info, `the bucket holds more than the ${info.chunks} chunks its metadata says`);
    if (!this.complete) return "more";
    this.verify();
    return "done";
  }

  /** Every recorded chunk was read. */
  get complete(): boolean {
    return this.#tally.chunks >= this.info.chunks;
  }

  /** Throws (500, "damaged") unless what was added is the recorded object. Once only: it ends the hash. */
  verify(): void {
    const { info } = this;
    const tally = this.#tally;
    if (tally.chunks !== info.chunks) throw damaged(info, `only ${tally.chunks} of its ${info.chunks} chunks are in the bucket`);
    if (tally.size !== info.size) throw damaged(info, `read ${tally.size} bytes, its metadata says ${info.size}`);
    const computed = tally.digest();
    if (computed !== info.digest) throw damaged(info, `digest ${computed} does not match the recorded ${info.digest}`);
  }
}

function damaged(info: { bucket: string; name: string }, why: string): BackupError {
  return new BackupError(ErrorCode.Internal, `object ${info.name} in bucket ${info.bucket} is damaged: ${why}`);
}
