/**
 * The v1 archive's tar (servers up to 2.14: Go's archive/tar, PAX format), read with tar-stream as
 * it goes by: entries' data is drained as it comes, keeping only meta.inf (up to 1 MiB),
 * errors.txt (its first 4 KiB) and names.
 *
 * `push` is synchronous for callers that cannot wait (a snapshot watched on its way into the
 * bucket): it hands tar-stream a copy of the block, and tar-stream (streamx) parses on microtasks,
 * so what it holds is at most what the current I/O event decoded; nothing waits on an entry's
 * reader, since each is drained at once. Callers that can wait read from the bucket with
 * backpressure anyway.
 */
import { extract, type Extract, type Header } from "tar-stream";
import { Capture, FormatError } from "./format-error.ts";

export const MaxMetaInf = 1 << 20;
export const MaxErrorsTxt = 4096;
/** More consumer names than this is refused: memory stays bounded whatever the input. */
export const MaxConsumers = 100_000;

const Block = 512;
/** The end-of-archive marker Go's writer (and every tar writer) ends with: two zero blocks. */
const EndMarker = 2 * Block;

export interface TarContents {
  entries: number;
  blocks: number;
  consumers: string[];
  /** meta.inf, when present and at most 1 MiB. */
  metaInf?: Uint8Array;
  metaInfTooLarge?: boolean;
  errorsTxt?: string;
}

export class TarReader {
  readonly #extract: Extract;
  readonly #read: Promise<void>;
  #failure: FormatError | null = null;
  /** The last bytes given, to check that the tar ended with its end-of-archive marker. */
  #tail: Uint8Array = new Uint8Array(0);
  #entries = 0;
  #blocks = 0;
  readonly #consumers = new Set<string>();
  #metaInf: Capture | null = null;
  #errorsTxt: Capture | null = null;

  constructor() {
    this.#extract = extract();
    this.#read = this.#readEntries();
    this.#read.catch(() => {});
  }

  /** The structure problem found so far, if any. */
  get failure(): FormatError | null {
    return this.#failure;
  }

  /** Gives tar-stream a copy of `block` (the caller may reuse it). */
  push(block: Uint8Array): void {
    if (this.#failure || block.length === 0) return;
    const copy = Buffer.from(block);
    this.#keepTail(copy);
    this.#extract.write(copy);
  }

  /** The input ended: the tar must have ended too. */
  async finish(): Promise<TarContents> {
    if (!this.#failure) this.#extract.end(undefined);
    await this.#read;
    if (this.#failure) throw this.#failure;
    if (this.#tail.length < EndMarker || this.#tail.some((b) => b !== 0)) {
      throw new FormatError("the tar is truncated: it ends without its end-of-archive blocks");
    }
    return {
      entries: this.#entries,
      blocks: this.#blocks,
      consumers: [...this.#consumers],
      ...(this.#metaInf && !this.#metaInf.truncated ? { metaInf: this.#metaInf.bytes() } : {}),
      ...(this.#metaInf?.truncated ? { metaInfTooLarge: true } : {}),
      ...(this.#errorsTxt ? { errorsTxt: this.#errorsTxt.text() } : {}),
    };
  }

  async #readEntries(): Promise<void> {
    try {
      for await (const entry of this.#extract) {
        const capture = this.#classify(entry.header);
        for await (const chunk of entry as AsyncIterable<Buffer>) capture?.add(chunk, 0, chunk.length);
      }
    } catch (err) {
      this.#failure ??= err instanceof FormatError ? err : new FormatError(tarStreamWords((err as Error).message));
      this.#extract.destroy();
    }
  }

  #keepTail(bytes: Uint8Array): void {
    if (bytes.length >= EndMarker) {
      this.#tail = bytes.subarray(bytes.length - EndMarker);
      return;
    }
    const joined = new Uint8Array(Math.min(EndMarker, this.#tail.length + bytes.length));
    const fromTail = joined.length - bytes.length;
    joined.set(this.#tail.subarray(this.#tail.length - fromTail));
    joined.set(bytes, fromTail);
    this.#tail = joined;
  }

  /** Notes what the server's layout says about the entry; returns a capture when its data is wanted. */
  #classify(header: Header): Capture | null {
    this.#entries++;
    const { name } = header;
    if (name === "meta.inf") return (this.#metaInf = new Capture(MaxMetaInf));
    if (name === "errors.txt") return (this.#errorsTxt = new Capture(MaxErrorsTxt));
    if (name.startsWith("msgs/") && name.endsWith(".blk")) this.#blocks++;
    else if (name.startsWith("obs/")) {
      const consumer = name.slice(4).split("/")[0];
      if (consumer && !this.#consumers.has(consumer)) {
        if (this.#consumers.size >= MaxConsumers) throw new FormatError(`more than ${MaxConsumers} consumers`);
        this.#consumers.add(consumer);
      }
    }
    return null;
  }
}

/** tar-stream's words, said of this archive. */
function tarStreamWords(message: string): string {
  if (/Unexpected end of data/i.test(message)) return "the tar is truncated: it ends inside an entry";
  if (/Invalid tar header/i.test(message)) return "a tar header is not valid (its checksum does not match)";
  return message;
}
