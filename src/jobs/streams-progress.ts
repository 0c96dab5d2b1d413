/**
 * An account job's progress over its streams: which run, how many ended, and the bytes and chunks
 * each moved, summed into the job's record whenever one of them changes.
 */
import type { Job } from "./job.ts";

export class StreamsProgress {
  readonly #moved = new Map<string, { bytes: number; chunks: number }>();
  readonly #running = new Set<string>();
  #done = 0;

  constructor(
    private readonly job: Pick<Job, "streams" | "progress">,
    private readonly total: number,
    /** Bytes the job expects to move (restores), if known. */
    private expected?: number,
  ) {
    this.#report();
  }

  started(stream: string): void {
    this.#running.add(stream);
    this.#report();
  }

  /** What a stream's snapshot or restore moved so far. */
  moved(stream: string, bytes: number, chunks: number): void {
    this.#moved.set(stream, { bytes, chunks });
  }

  /** A stream ended; `unmoved` bytes it was expected to move and did not (a restore that did not restore its data). */
  ended(stream: string, unmoved = 0): void {
    this.#running.delete(stream);
    this.#done++;
    if (unmoved > 0) {
      this.#moved.delete(stream);
      if (this.expected !== undefined) this.expected -= unmoved;
    }
    this.#report();
  }

  #report(): void {
    this.job.streams(this.#done, this.total, this.#running);
    let bytes = 0;
    let chunks = 0;
    for (const m of this.#moved.values()) {
      bytes += m.bytes;
      chunks += m.chunks;
    }
    this.job.progress(bytes, chunks, this.expected);
  }
}
