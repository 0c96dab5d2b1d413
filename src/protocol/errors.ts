/** Errors in the JetStream API's style: `{"error":{"code":N,"description":"…"}}`. */

export const ErrorCode = {
  BadRequest: 400,
  NotFound: 404,
  Conflict: 409,
  PayloadTooLarge: 413,
  TooManyRequests: 429,
  Internal: 500,
  Unavailable: 503,
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** Header naming the job an error reply is about. */
export const JobHeader = "Nats-Backup-Job";

export interface ApiErrorBody {
  error: { code: number; description: string; err_code?: number };
}

/** Names of the NATS client's errors for a server that did not answer. */
const Unanswered = new Set([
  "TimeoutError",
  "NoRespondersError",
  "RequestError",
  "ClosedConnectionError",
  "DrainingConnectionError",
  "ConnectionError",
]);

/** An error that is reported to the caller as is: a code and a description to act on. */
export class BackupError extends Error {
  override readonly name = "BackupError";
  /** The job the error ended, when there was one (sent as the Nats-Backup-Job header). */
  job?: string;
  constructor(
    readonly code: number,
    readonly description: string,
    options?: { cause?: unknown },
  ) {
    super(description, options);
  }

  /** The same error, naming the job it ended. */
  ofJob(id: string): BackupError {
    const e = new BackupError(this.code, this.description, { cause: this });
    e.job = id;
    return e;
  }

  static badRequest(description: string): BackupError {
    return new BackupError(ErrorCode.BadRequest, description);
  }
  static notFound(description: string): BackupError {
    return new BackupError(ErrorCode.NotFound, description);
  }
  static conflict(description: string): BackupError {
    return new BackupError(ErrorCode.Conflict, description);
  }

  /**
   * Any thrown value as a BackupError: the client's errors for a server that did not answer
   * (timeout, no responders, connection closed) are 503 and say so; anything else is 500.
   */
  static from(err: unknown): BackupError {
    if (err instanceof BackupError) return err;
    const message = err instanceof Error ? err.message : String(err);
    const name = err instanceof Error ? err.name : "";
    if (Unanswered.has(name) || message === "timeout") {
      return new BackupError(ErrorCode.Unavailable, `NATS did not answer (${message}): server restarted or connection lost?`, {
        cause: err,
      });
    }
    return new BackupError(ErrorCode.Internal, message, { cause: err });
  }

  toJSON(): ApiErrorBody {
    return { error: { code: this.code, description: this.description } };
  }
}
