/** S2 in, raw bytes out, as a node Transform with backpressure (export --tgz, file reads). */
import { Transform, type TransformCallback, type TransformOptions } from "node:stream";
import { S2Decoder } from "./s2-decoder.ts";

export interface S2DecompressOptions extends Pick<TransformOptions, "readableHighWaterMark" | "writableHighWaterMark"> {
  /** Largest decoded block accepted; default and cap 4 MiB. */
  maxBlockSize?: number;
}

/**
 * A Transform that decodes an S2 (or Snappy) framed stream; it fails with ArchiveError on bad
 * input and at the end when the stream stopped inside a frame or held no stream identifier.
 */
export function s2Decompress(opts: S2DecompressOptions = {}): Transform {
  const { maxBlockSize, ...streamOpts } = opts;
  const decoder = new S2Decoder(maxBlockSize === undefined ? {} : { maxBlockSize });
  return new Transform({
    ...streamOpts,
    transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback) {
      try {
        decoder.push(chunk, (block) => this.push(block));
      } catch (err) {
        done(err as Error);
        return;
      }
      done();
    },
    flush(done: TransformCallback) {
      try {
        decoder.end();
      } catch (err) {
        done(err as Error);
        return;
      }
      done();
    },
  });
}
