/** Checks an object's chunks, in order, against its recorded chunk count, size and digest. */
import { BackupError, ErrorCode } from "../protocol/errors.ts";
import { ObjectDigest, type ObjectMetaRecord } from "./object-format.ts";

export type CheckedObject = Pick<ObjectMetaRecord, "bucket" | "name" | "size" | "chunks" | "digest">;

export class ObjectCheck {
  #digest = new ObjectDigest();
  #chunks = 0;
  #size = 0;

  constructor(readonly info: CheckedObject) {}

  get chunks(): number {
    return this.#chunks;
  }

  add(chunk: Uint8Array): void {
    this.#digest.update(chunk);
    this.#chunks++;
    this.#size += chunk.length;
  }

  /** Every recorded chunk was added. */
  get complete(): boolean {
    return this.#chunks >= this.info.chunks;
  }

  /** Throws (500, "damaged") unless what was added is the recorded object. */
  verify(): void {
    const { info } = this;
    if (this.#chunks !== info.chunks) throw damaged(info, `only ${this.#chunks} of its ${info.chunks} chunks are in the bucket`);
    if (this.#size !== info.size) throw damaged(info, `read ${this.#size} bytes, its metadata says ${info.size}`);
    const computed = this.#digest.digest();
    if (computed !== info.digest) throw damaged(info, `digest ${computed} does not match the recorded ${info.digest}`);
  }
}

export function damaged(info: { bucket: string; name: string }, why: string): BackupError {
  return new BackupError(ErrorCode.Internal, `object ${info.name} in bucket ${info.bucket} is damaged: ${why}`);
}
