/**
 * An ArchiveInspector on a worker thread, for large archives checked as they go by: `push` hands
 * a copy of the bytes to the worker and returns, so decoding runs beside the caller's own work (a
 * snapshot's network reads and hashing) on another core. Memory is bounded: when the worker is
 * `MaxPendingBytes` behind, `push` blocks until it caught up some (Atomics.wait), which slows the
 * caller as decoding in place would, never more. Workers are kept between archives (their
 * compiled decoder stays warm); when all are busy, the archive is read in this thread.
 */
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { ArchiveError } from "./errors.ts";
import { ArchiveInspector, type ArchiveSummary } from "./inspector.ts";
import type { FromWorker, ToWorker, WorkerShared } from "./worker-messages.ts";

/** Workers at most (the machines this runs on have a few cores; the server wants some). */
const MaxWorkers = 2;
/** Bytes handed to a worker and not yet read, at most: a few of the server's chunks (up to 1 MiB each). */
const MaxPendingBytes = 8 * 1024 * 1024;
/**
 * Bytes gathered before they are handed over: one message per this many rather than per socket
 * read (64 KiB or less), as each message and its copy cost the caller about the same whatever its size.
 */
const BatchBytes = 1024 * 1024;
/** A worker that reads nothing for this long is taken as stuck: the check fails, the caller goes on. */
const StallMs = 30_000;

/** The same contract as ArchiveInspector's push / uncompressedBytes / failed / finish. */
export interface ArchiveReader {
  push(chunk: Uint8Array): void;
  readonly uncompressedBytes: number;
  readonly failed: ArchiveError | undefined;
  finish(): Promise<ArchiveSummary>;
}

/** An inspector on a worker when `offThread` and one is free, else in this thread. */
export function archiveReader(offThread: boolean): ArchiveReader {
  const worker = offThread ? InspectorWorker.acquire() : null;
  return worker ? new OffThreadInspector(worker) : new ArchiveInspector();
}

class InspectorWorker {
  static readonly #idle: InspectorWorker[] = [];
  static #started = 0;

  readonly pending: Int32Array;
  readonly decoded: Float64Array;
  /** Batch buffers the worker gave back, to be filled again. */
  readonly #spare: ArrayBuffer[] = [];
  /** The current archive's listener. */
  onReport: ((report: Exclude<FromWorker, { kind: "spent" }>) => void) | null = null;
  onFailure: ((err: Error) => void) | null = null;

  private constructor(readonly thread: Worker, shared: WorkerShared) {
    this.pending = new Int32Array(shared.pending);
    this.decoded = new Float64Array(shared.decoded);
    thread.on("message", (report: FromWorker) => {
      if (report.kind !== "spent") return this.onReport?.(report);
      if (this.#spare.length < MaxPendingBytes / BatchBytes) this.#spare.push(report.buffer);
    });
    const lost = (err: Error) => {
      InspectorWorker.#started--;
      this.onFailure?.(err);
    };
    thread.on("error", lost);
    thread.on("exit", (code) => lost(new Error(`the archive reader's worker exited (${code})`)));
    // After the listeners (adding one refs it again): an idle worker never holds the process.
    thread.unref();
  }

  static acquire(): InspectorWorker | null {
    const idle = this.#idle.pop();
    if (idle) return idle;
    if (this.#started >= MaxWorkers) return null;
    const script = workerScript();
    if (!script) return null;
    const shared: WorkerShared = { pending: new SharedArrayBuffer(4), decoded: new SharedArrayBuffer(8) };
    this.#started++;
    return new InspectorWorker(startWorker(script, shared), shared);
  }

  /** An empty batch: one the worker gave back, else a new one. */
  batch(): Uint8Array {
    const spare = this.#spare.pop();
    return spare ? new Uint8Array(spare) : Buffer.allocUnsafeSlow(BatchBytes);
  }

  post(message: ToWorker, transfer?: ArrayBuffer[]): void {
    this.thread.postMessage(message, transfer);
  }

  release(): void {
    this.onReport = null;
    this.onFailure = null;
    this.thread.unref();
    InspectorWorker.#idle.push(this);
  }
}

/** The worker's script beside this one, as run (.ts under tsx, .js when built); null when absent (a bundle). */
function workerScript(): URL | null {
  const self = import.meta.url;
  const url = new URL(self.endsWith(".ts") ? "./inspector-worker.ts" : "./inspector-worker.js", self);
  return existsSync(fileURLToPath(url)) ? url : null;
}

/**
 * Starts a worker. Run from TypeScript sources (tests, the bench's child), a worker is not given
 * tsx's loader by its parent's flags, so it registers it before loading the script.
 */
function startWorker(script: URL, shared: WorkerShared): Worker {
  // Its garbage is the blocks it decodes (the bytes it is given are transferred, outside the heap):
  // a small young generation keeps its memory near its live set.
  const options = { workerData: shared, resourceLimits: { maxYoungGenerationSizeMb: 4 } };
  if (!script.pathname.endsWith(".ts")) return new Worker(script, options);
  const boot = `import("tsx/esm/api").then((tsx) => { tsx.register(); return import(${JSON.stringify(script.href)}); });`;
  return new Worker(boot, { ...options, eval: true });
}

export class OffThreadInspector implements ArchiveReader {
  readonly #worker: InspectorWorker;
  #failed: ArchiveError | undefined;
  #stalled = false;
  #ended = false;
  /** Bytes pushed and not yet handed over. */
  #batch: Uint8Array | null = null;
  #batchFill = 0;
  readonly #outcome: Promise<ArchiveSummary>;

  constructor(worker: InspectorWorker) {
    this.#worker = worker;
    this.#outcome = new Promise<ArchiveSummary>((resolve, reject) => {
      worker.onReport = (report) => {
        if (report.kind === "summary") return resolve(report.summary);
        this.#failed ??= new ArchiveError(report.message);
        if (report.final) reject(this.#failed);
      };
      worker.onFailure = reject;
    });
    this.#outcome.then(
      () => worker.release(),
      () => {
        // A worker that failed outside an archive's own problems is not reused.
        if (this.#failed && !this.#stalled) worker.release();
        else void worker.thread.terminate();
      },
    );
    worker.post({ kind: "start" });
  }

  get uncompressedBytes(): number {
    return this.#worker.decoded[0]!;
  }

  get failed(): ArchiveError | undefined {
    return this.#failed;
  }

  push(chunk: Uint8Array): void {
    if (this.#failed || this.#ended) return;
    // Copied into a batch of its own to transfer (the caller's bytes are the caller's).
    for (let p = 0; p < chunk.length; ) {
      const batch = (this.#batch ??= this.#worker.batch());
      const take = Math.min(chunk.length - p, BatchBytes - this.#batchFill);
      batch.set(chunk.subarray(p, p + take), this.#batchFill);
      this.#batchFill += take;
      p += take;
      if (this.#batchFill === BatchBytes) {
        this.#send();
        if (this.#failed) return;
      }
    }
  }

  /** Hands the batch to the worker, once it is less than MaxPendingBytes behind. */
  #send(): void {
    const bytes = this.#batch!.subarray(0, this.#batchFill);
    this.#batch = null;
    this.#batchFill = 0;
    if (bytes.length === 0) return;
    const { pending } = this.#worker;
    for (;;) {
      const behind = Atomics.load(pending, 0);
      if (behind + bytes.length <= MaxPendingBytes || behind === 0) break;
      if (Atomics.wait(pending, 0, behind, StallMs) === "timed-out") {
        this.#stalled = true;
        this.#failed = new ArchiveError(`the archive reader fell ${behind} bytes behind and read nothing for ${StallMs / 1000}s`);
        return;
      }
    }
    Atomics.add(pending, 0, bytes.length);
    this.#worker.post({ kind: "bytes", bytes }, [bytes.buffer as ArrayBuffer]);
  }

  async finish(): Promise<ArchiveSummary> {
    if (!this.#ended) {
      if (this.#batch && !this.#failed) this.#send();
      this.#ended = true;
      this.#batch = null;
      this.#worker.post({ kind: "end" });
    }
    if (this.#stalled) {
      void this.#worker.thread.terminate();
      throw this.#failed!;
    }
    // Awaited now: the worker holds the process until it reported.
    this.#worker.thread.ref();
    return this.#outcome;
  }
}
