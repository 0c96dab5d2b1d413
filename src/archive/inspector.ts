/**
 * Reads a snapshot archive as it goes by: the S2 stream (every frame's CRC), then what it holds,
 * told apart by its first bytes as the server's restore does: `NATSARC1` (v2, 2.15+) or a tar
 * (v1). Memory stays bounded whatever the input: one S2 chunk, one reused output block (a tar's
 * blocks are copied for tar-stream, which parses them on microtasks), the parsers' small state and
 * what the summary keeps.
 */
import { ArchiveError } from "./errors.ts";
import { FormatError } from "./format-error.ts";
import { Magic, NatsArcReader } from "./natsarc-reader.ts";
import { S2Decoder, type S2DecoderOptions } from "./s2-decoder.ts";
import { TarReader, MaxErrorsTxt, MaxMetaInf } from "./tar-reader.ts";

/**
 * v1: tar (servers up to 2.14); v2: NATSARC1 (2.15+). The same strings as
 * src/jetstream/server-version.ts's ArchiveFormat, defined again here: this room imports nothing
 * of the project.
 */
export type ArchiveFormat = "v1" | "v2";

export interface ArchiveSummary {
  format: ArchiveFormat;
  compressedBytes: number;
  uncompressedBytes: number;
  frames: number;
  /** v1: tar entries (files); v2: records (state, consumers, messages) */
  entries: number;
  /** v1: msgs/*.blk files; absent for v2 */
  blocks?: number;
  /** v2: message records; absent for v1 */
  messages?: number;
  /** consumer names found (v1: obs/<name>/ folders; v2: consumers/<name> records) */
  consumers: string[];
  /**
   * The stream's name and config as the archive holds them: v1, meta.inf's JSON (a StreamConfig
   * plus `Created`, which is left out of `config` and given as `created`). v2 holds no
   * configuration (state.json is a StreamState): absent.
   */
  stream?: string;
  config?: Record<string, unknown>;
  /** v1: meta.inf's `Created` (when the stream was created). */
  created?: string;
  /** v2: state.json as the archive holds it (messages, bytes, first_seq, last_seq, consumer_count, ...). */
  state?: Record<string, unknown>;
  /** contents (first 4 KiB) of an `errors.txt` entry: servers up to 2.10 report snapshot failures only that way */
  errorsTxt?: string;
}

type Parser = { kind: "v1"; reader: TarReader } | { kind: "v2"; reader: NatsArcReader };

/** Reads an archive as it goes by: push the compressed bytes in any pieces, then finish(). Bounded memory whatever the input. */
export class ArchiveInspector {
  readonly #decoder: S2Decoder;
  /** The first bytes, until there are enough to tell the format. */
  #head: Uint8Array = new Uint8Array(0);
  #parser: Parser | null = null;
  /** The first problem in the structure; S2 decoding goes on so that its own errors still show. */
  #structureError: ArchiveError | null = null;
  readonly #onBlock = (block: Uint8Array) => this.#parse(block);

  constructor(opts: Pick<S2DecoderOptions, "maxBlockSize"> = {}) {
    this.#decoder = new S2Decoder({ ...opts, reuseOutput: true });
  }

  /** The structure problem found so far, if any (finish() rejects with it): a caller may stop early. */
  get failed(): ArchiveError | undefined {
    if (this.#structureError) return this.#structureError;
    const parser = this.#parser;
    const tarFailure = parser?.kind === "v1" ? parser.reader.failure : null;
    return tarFailure ? this.#asArchiveError(tarFailure) : undefined;
  }

  get compressedBytes(): number {
    return this.#decoder.compressedBytes;
  }
  get uncompressedBytes(): number {
    return this.#decoder.uncompressedBytes;
  }

  /** Sync; throws ArchiveError on bad S2 or a CRC mismatch. A bad tar or v2 structure is kept for finish(). */
  push(chunk: Uint8Array): void {
    this.#decoder.push(chunk, this.#onBlock);
  }

  /** Rejects with ArchiveError when truncated or the tar / v2 structure is bad. */
  async finish(): Promise<ArchiveSummary> {
    this.#decoder.end();
    if (this.#structureError) throw this.#structureError;
    const d = this.#decoder;
    const sizes = { compressedBytes: d.compressedBytes, uncompressedBytes: d.uncompressedBytes, frames: d.frames };
    try {
      if (!this.#parser) {
        if (this.#head.length === 0) throw new FormatError("the archive is empty", 0);
        this.#start(this.#head);
      }
      const parser = this.#parser!;
      if (parser.kind === "v2") {
        const v2 = parser.reader.finish();
        return { format: "v2", ...sizes, entries: v2.entries, messages: v2.messages, consumers: v2.consumers, state: v2.state };
      }
      const v1 = await parser.reader.finish();
      return { format: "v1", ...sizes, entries: v1.entries, blocks: v1.blocks, consumers: v1.consumers, ...metaInf(v1.metaInf, v1.metaInfTooLarge), ...(v1.errorsTxt !== undefined ? { errorsTxt: v1.errorsTxt } : {}) };
    } catch (err) {
      throw this.#asArchiveError(err);
    }
  }

  #parse(block: Uint8Array): void {
    if (this.#structureError) return;
    try {
      if (this.#parser) {
        this.#parser.reader.push(block);
        return;
      }
      const need = Magic.length - this.#head.length;
      if (block.length < need) {
        this.#head = concat(this.#head, block);
        return;
      }
      this.#start(concat(this.#head, block.subarray(0, need)));
      this.#head = new Uint8Array(0);
      this.#parser!.reader.push(block.subarray(need));
    } catch (err) {
      this.#structureError = this.#asArchiveError(err);
    }
  }

  /** Picks the parser by the first bytes and gives it them. */
  #start(head: Uint8Array): void {
    const v2 = head.length === Magic.length && String.fromCharCode(...head) === Magic;
    this.#parser = v2 ? { kind: "v2", reader: new NatsArcReader() } : { kind: "v1", reader: new TarReader() };
    this.#parser.reader.push(head);
  }

  #asArchiveError(err: unknown): ArchiveError {
    if (err instanceof ArchiveError) return err;
    // tar-stream parses a little later than the bytes were pushed: where it broke is not known to the frame.
    if (err instanceof FormatError) {
      return this.#parser?.kind === "v2" ? new ArchiveError(`v2 archive: ${err.message}`, this.#decoder.frameOffset) : new ArchiveError(`tar: ${err.message}`);
    }
    throw err;
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/** meta.inf's JSON: the stream's config, its name, and `created` apart. */
function metaInf(bytes: Uint8Array | undefined, tooLarge: boolean | undefined): Pick<ArchiveSummary, "stream" | "config" | "created"> {
  if (tooLarge) throw new FormatError(`meta.inf is larger than ${MaxMetaInf} bytes`);
  if (!bytes) return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    throw new FormatError("meta.inf is not JSON");
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw new FormatError("meta.inf is not a JSON object");
  // FileStreamInfo: `Created` (no JSON tag) beside the embedded StreamConfig.
  const { Created: created, ...config } = parsed as Record<string, unknown>;
  return {
    ...(typeof config.name === "string" ? { stream: config.name } : {}),
    config,
    ...(typeof created === "string" ? { created } : {}),
  };
}

export { MaxErrorsTxt, MaxMetaInf };
