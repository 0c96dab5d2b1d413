/** What a job's pipeline is given (a way to hold locks) and how it ends well or not. */
import { BackupError } from "../protocol/errors.ts";
import type { JobResult } from "./job.ts";
import type { Lockable } from "./locks.ts";

/** Takes a lock, held until the job ends or the returned function frees it sooner. */
export type Hold = (what: Lockable) => Promise<() => Promise<void>>;

/** How a job ended well: with its result, `partial` when some of an account job's items failed. */
export interface Finished {
  result: JobResult;
  state?: "completed" | "partial";
}

/** An account job none of whose items succeeded: it fails, and keeps what it did as its result. */
export class JobFailed extends BackupError {
  constructor(
    error: BackupError,
    readonly result: JobResult,
  ) {
    super(error.code, error.description, { cause: error });
  }
}
