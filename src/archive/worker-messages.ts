/** What the main thread and an inspector worker say to each other (off-thread.ts, inspector-worker.ts). */
import type { ArchiveSummary } from "./inspector.ts";

/** Shared with each worker: [0] bytes posted and not yet read (Int32), and a Float64 of bytes decoded. */
export interface WorkerShared {
  pending: SharedArrayBuffer;
  decoded: SharedArrayBuffer;
}

/** Main → worker: one archive at a time, its bytes as transferred buffers, then its end. */
export type ToWorker = { kind: "start" } | { kind: "bytes"; bytes: Uint8Array } | { kind: "end" };

/** Worker → main. */
export type FromWorker =
  | { kind: "summary"; summary: ArchiveSummary }
  /** A batch read: its buffer, transferred back to be filled again. */
  | { kind: "spent"; buffer: ArrayBuffer }
  /** `final`: the archive's outcome; otherwise the first malformation, as soon as it was found. */
  | { kind: "failed"; message: string; final?: boolean };
