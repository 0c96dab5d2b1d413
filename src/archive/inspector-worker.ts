/**
 * The worker side of OffThreadInspector (off-thread.ts): inspects the archives the main thread
 * posts, one at a time, and counts down the bytes it was given as it reads them. It lives on
 * between archives, so its compiled decoder stays warm.
 */
import { parentPort, workerData } from "node:worker_threads";
import { ArchiveError } from "./errors.ts";
import { ArchiveInspector } from "./inspector.ts";
import type { FromWorker, ToWorker, WorkerShared } from "./worker-messages.ts";

const shared = workerData as WorkerShared;
const pending = new Int32Array(shared.pending);
const decoded = new Float64Array(shared.decoded);
const report = (message: FromWorker) => parentPort!.postMessage(message);

let inspector: ArchiveInspector | null = null;
let failure: ArchiveError | null = null;

parentPort!.on("message", (message: ToWorker) => {
  if (message.kind === "start") {
    inspector = new ArchiveInspector();
    failure = null;
    decoded[0] = 0;
  } else if (message.kind === "bytes") {
    if (inspector && !failure) {
      try {
        inspector.push(message.bytes);
        decoded[0] = inspector.uncompressedBytes;
      } catch (err) {
        if (!(err instanceof ArchiveError)) throw err;
        failure = err;
        report({ kind: "failed", message: err.message });
      }
    }
    Atomics.sub(pending, 0, message.bytes.length);
    Atomics.notify(pending, 0);
    // Nothing holds the bytes once read: back to the main thread for the next batch, rather than
    // kept here until a collection frees them. The detach costs the decoder here a check per
    // typed-array access (about 10% on a compressible archive); shared slots would not, but
    // copies into and out of shared memory run about 10 times slower (V8 copies them by bytes).
    const buffer = message.bytes.buffer as ArrayBuffer;
    parentPort!.postMessage({ kind: "spent", buffer } satisfies FromWorker, [buffer]);
  } else {
    void end(inspector!);
    inspector = null;
  }
});

async function end(ended: ArchiveInspector): Promise<void> {
  if (failure) return report({ kind: "failed", message: failure.message, final: true });
  try {
    report({ kind: "summary", summary: await ended.finish() });
  } catch (err) {
    if (!(err instanceof ArchiveError)) throw err;
    report({ kind: "failed", message: err.message, final: true });
  }
}
