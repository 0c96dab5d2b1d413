/**
 * The S2 framing format (klauspost/compress s2, reader.go; Snappy's framing_format.txt): a stream
 * identifier chunk, then chunks of a type byte and a 3-byte length: 0x00 a compressed block and
 * 0x01 an uncompressed one, each after the masked CRC-32C of its uncompressed bytes; 0x80-0xfe
 * skippable; 0x02-0x7f reserved, which a reader must refuse. Push-based and synchronous: bytes
 * go in as they arrive, decoded blocks come out as soon as a chunk is whole.
 */
import { crc32c } from "@node-rs/crc32";
import { ArchiveError } from "./errors.ts";
import { blockHeader, decodeBlock } from "./s2-block.ts";

/** S2's largest block (maxBlockSize). */
export const MaxBlockSize = 4 << 20;
/** Snappy framing allows 64 KiB blocks (maxSnappyBlockSize). */
const MaxSnappyBlockSize = 1 << 16;
const ChecksumSize = 4;
const HeaderSize = 4;

const Identifier = 0xff;
const Compressed = 0x00;
const Uncompressed = 0x01;
const S2Magic = "S2sTwO";
const SnappyMagic = "sNaPpY";

export interface S2DecoderOptions {
  /** Largest decoded block accepted; default and cap 4 MiB, S2's maximum. */
  maxBlockSize?: number;
  /**
   * Decode every block into one reused buffer: `out` must be done with the array when it
   * returns. Saves an allocation per block where the reader only looks at the bytes.
   */
  reuseOutput?: boolean;
}

/** The largest encoded form of `n` bytes (s2.MaxEncodedLen): the varint, literal headers, the bytes. */
function maxEncodedLen(n: number): number {
  const varint = Math.floor((32 - Math.clz32(n) + 7) / 7);
  const literalExtra = n === 0 ? 0 : n < 60 ? 1 : n < 1 << 8 ? 2 : n < 1 << 16 ? 3 : n < 1 << 24 ? 4 : 5;
  return n + varint + literalExtra;
}

/** What Snappy and S2 write as a frame's checksum: CRC-32C, rotated and offset. */
export function maskedCrc(data: Uint8Array): number {
  const c = crc32c(data);
  return ((((c >>> 15) | (c << 17)) >>> 0) + 0xa282ead8) >>> 0;
}

/** Streaming S2 (klauspost/compress S2, a Snappy superset) framed-stream decoder. Sync, push-based. */
export class S2Decoder {
  readonly #maxBlock: number;
  readonly #maxChunk: number;
  readonly #reuse: boolean;
  #shared: Uint8Array | null = null;

  #compressed = 0;
  #uncompressed = 0;
  #frames = 0;
  #sawIdentifier = false;
  #snappy = false;
  #error: ArchiveError | null = null;

  /** The chunk being read: its header (4 bytes, kept across pushes), type, body length. */
  readonly #header = new Uint8Array(HeaderSize);
  #headerFill = 0;
  #type = -1;
  #length = 0;
  /** Where the current chunk began in the compressed stream. */
  #frameStart = 0;
  /** A body split across pushes is gathered here; a skippable one is only counted. */
  #body: Uint8Array | null = null;
  #bodyFill = 0;
  #skip = 0;

  constructor(opts: S2DecoderOptions = {}) {
    const max = opts.maxBlockSize ?? MaxBlockSize;
    if (!Number.isInteger(max) || max <= 0 || max > MaxBlockSize) throw new RangeError(`maxBlockSize must be 1 to ${MaxBlockSize}`);
    this.#maxBlock = max;
    this.#maxChunk = maxEncodedLen(max) + ChecksumSize;
    this.#reuse = opts.reuseOutput ?? false;
  }

  get compressedBytes(): number {
    return this.#compressed;
  }
  get uncompressedBytes(): number {
    return this.#uncompressed;
  }
  /** Data chunks (compressed or uncompressed blocks) decoded. */
  get frames(): number {
    return this.#frames;
  }
  /** The compressed offset where the chunk being read (or the last one read) began. */
  get frameOffset(): number {
    return this.#frameStart;
  }

  /** Decodes what it can of `chunk`; calls `out` with each decoded block (out may keep the array unless reuseOutput). Throws ArchiveError. */
  push(chunk: Uint8Array, out: (decoded: Uint8Array) => void): void {
    if (this.#error) throw this.#error;
    try {
      this.#push(chunk, out);
    } catch (err) {
      if (err instanceof ArchiveError) this.#error = err;
      throw err;
    }
  }

  /** Input ended: throws ArchiveError when it stopped inside a frame or never saw the stream identifier. */
  end(): void {
    if (this.#error) throw this.#error;
    if (this.#headerFill > 0 || this.#type >= 0) {
      const have = this.#type < 0 ? this.#headerFill : HeaderSize + (this.#skip > 0 ? this.#length - this.#skip : this.#bodyFill);
      this.#fail(`S2 stream ends inside a frame (${have} of its ${this.#type < 0 ? "header's 4" : HeaderSize + this.#length} bytes)`);
    }
    if (!this.#sawIdentifier) this.#fail("not an S2 stream: it ends before the stream identifier");
  }

  #fail(message: string): never {
    throw (this.#error = new ArchiveError(message, this.#frameStart));
  }

  #push(chunk: Uint8Array, out: (decoded: Uint8Array) => void): void {
    let p = 0;
    const n = chunk.length;
    while (p < n) {
      if (this.#type < 0) {
        // A header: usually whole in this push.
        if (this.#headerFill === 0 && n - p >= HeaderSize) {
          this.#frameStart = this.#compressed;
          this.#startChunk(chunk[p]!, chunk[p + 1]! | (chunk[p + 2]! << 8) | (chunk[p + 3]! << 16));
          p += HeaderSize;
          this.#compressed += HeaderSize;
        } else {
          if (this.#headerFill === 0) this.#frameStart = this.#compressed;
          this.#header[this.#headerFill++] = chunk[p++]!;
          this.#compressed++;
          if (this.#headerFill < HeaderSize) continue;
          const h = this.#header;
          this.#headerFill = 0;
          this.#startChunk(h[0]!, h[1]! | (h[2]! << 8) | (h[3]! << 16));
        }
        continue;
      }
      if (this.#skip > 0) {
        const take = Math.min(this.#skip, n - p);
        this.#skip -= take;
        p += take;
        this.#compressed += take;
        if (this.#skip === 0) this.#type = -1;
        continue;
      }
      // A body: decoded in place when whole in this push, else gathered.
      if (this.#bodyFill === 0 && n - p >= this.#length) {
        const start = p;
        p += this.#length;
        this.#compressed += this.#length;
        this.#endChunk(chunk, start, p, out);
        continue;
      }
      const body = (this.#body && this.#body.length >= this.#length ? this.#body : (this.#body = new Uint8Array(Math.max(this.#length, 64 * 1024))));
      const take = Math.min(this.#length - this.#bodyFill, n - p);
      body.set(chunk.subarray(p, p + take), this.#bodyFill);
      this.#bodyFill += take;
      p += take;
      this.#compressed += take;
      if (this.#bodyFill === this.#length) {
        this.#bodyFill = 0;
        this.#endChunk(body, 0, this.#length, out);
      }
    }
  }

  /** Checks a chunk's header before its body is read (so a huge length is refused at once). */
  #startChunk(type: number, length: number): void {
    if (!this.#sawIdentifier && type !== Identifier) {
      this.#fail(`not an S2 stream: it starts with a chunk of type 0x${hex(type)}, not the stream identifier`);
    }
    if (type === Identifier) {
      if (length !== S2Magic.length) this.#fail(`the stream identifier's length is ${length}, not 6`);
    } else if (type === Compressed) {
      if (length < ChecksumSize) this.#fail(`a compressed chunk of ${length} bytes cannot hold its checksum`);
      if (length > this.#maxChunk) this.#fail(`a compressed chunk of ${length} bytes is larger than a ${this.#maxBlock}-byte block can encode to`);
    } else if (type === Uncompressed) {
      if (length < ChecksumSize) this.#fail(`an uncompressed chunk of ${length} bytes cannot hold its checksum`);
      this.#checkBlockLength(length - ChecksumSize);
    } else if (type <= 0x7f) {
      this.#fail(`reserved unskippable chunk type 0x${hex(type)}`);
    } else {
      // 0x80-0xfe: padding or reserved skippable.
      this.#skip = length;
      this.#length = length;
      this.#type = length > 0 ? type : -1;
      return;
    }
    this.#type = type;
    this.#length = length;
  }

  #checkBlockLength(length: number): void {
    if (length > this.#maxBlock) this.#fail(`a block declares ${length} bytes, more than the largest block (${this.#maxBlock})`);
    if (this.#snappy && length > MaxSnappyBlockSize) this.#fail(`a Snappy-framed block declares ${length} bytes, more than 64 KiB`);
  }

  #output(length: number): Uint8Array {
    if (!this.#reuse) return Buffer.allocUnsafe(length);
    if (!this.#shared || this.#shared.length < length) this.#shared = new Uint8Array(Math.max(length, 1 << 20));
    return this.#shared.subarray(0, length);
  }

  /** A chunk's body is `src[start, end)`. */
  #endChunk(src: Uint8Array, start: number, end: number, out: (decoded: Uint8Array) => void): void {
    const type = this.#type;
    this.#type = -1;
    if (type === Identifier) {
      const magic = String.fromCharCode(...src.subarray(start, end));
      if (magic === S2Magic) this.#snappy = false;
      else if (magic === SnappyMagic) this.#snappy = true;
      else this.#fail(`bad stream identifier ${JSON.stringify(magic)}`);
      this.#sawIdentifier = true;
      return;
    }
    const checksum = (src[start]! | (src[start + 1]! << 8) | (src[start + 2]! << 16) | (src[start + 3]! << 24)) >>> 0;
    start += ChecksumSize;
    let decoded: Uint8Array;
    if (type === Compressed) {
      const header = blockHeader(src, start, end);
      if (!header) this.#fail("a compressed block's length is not a valid uvarint");
      this.#checkBlockLength(header.length);
      decoded = this.#output(header.length);
      const problem = decodeBlock(plain(src), header.elements, end, plain(decoded));
      if (problem) this.#fail(`corrupt S2 block: ${problem}`);
    } else if (this.#reuse) {
      // `out` is done with it when it returns: the chunk's own bytes will do, uncopied.
      decoded = src.subarray(start, end);
    } else {
      decoded = this.#output(end - start);
      decoded.set(src.subarray(start, end));
    }
    if (maskedCrc(decoded) !== checksum) this.#fail(`CRC mismatch in a ${type === Compressed ? "compressed" : "uncompressed"} block of ${decoded.length} bytes`);
    this.#frames++;
    this.#uncompressed += decoded.length;
    if (decoded.length > 0) out(decoded);
  }
}

/**
 * The same bytes as a plain Uint8Array: the block decoder then sees one kind of array (a Buffer is
 * a subclass), which keeps its element accesses monomorphic.
 */
function plain(a: Uint8Array): Uint8Array {
  return Object.getPrototypeOf(a) === Uint8Array.prototype ? a : new Uint8Array(a.buffer, a.byteOffset, a.length);
}

function hex(n: number): string {
  return n.toString(16).padStart(2, "0");
}
