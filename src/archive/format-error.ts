/**
 * A problem in the structure inside the S2 stream (tar or NATSARC1), found at an uncompressed
 * offset. The inspector turns it into an ArchiveError at the compressed offset of its frame.
 */
export class FormatError extends Error {
  constructor(
    message: string,
    readonly uncompressedOffset?: number,
  ) {
    super(uncompressedOffset === undefined ? message : `${message} (at uncompressed offset ${uncompressedOffset})`);
  }
}

/** A bounded copy of the first `limit` bytes of something that arrives in pieces. */
export class Capture {
  #buf = new Uint8Array(0);
  #fill = 0;
  /** Bytes offered, kept or not. */
  total = 0;

  constructor(readonly limit: number) {}

  add(src: Uint8Array, start: number, end: number): void {
    this.total += end - start;
    const take = Math.min(end - start, this.limit - this.#fill);
    if (take > 0) {
      if (this.#fill + take > this.#buf.length) {
        // Grown as the bytes come, so a large limit costs nothing for a small entry.
        const grown = new Uint8Array(Math.min(this.limit, Math.max(this.#fill + take, this.#buf.length * 2, 256)));
        grown.set(this.#buf.subarray(0, this.#fill));
        this.#buf = grown;
      }
      this.#buf.set(src.subarray(start, start + take), this.#fill);
      this.#fill += take;
    }
  }

  get truncated(): boolean {
    return this.total > this.limit;
  }

  bytes(): Uint8Array {
    return this.#buf.subarray(0, this.#fill);
  }

  text(): string {
    return new TextDecoder().decode(this.bytes());
  }
}
