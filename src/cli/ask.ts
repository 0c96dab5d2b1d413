/** Request-reply with the service for the client subcommands: an error reply or no answer becomes a CliError. */
import { NoRespondersError, RequestError, TimeoutError, type NatsConnection } from "@nats-io/nats-core";
import { JobHeader } from "../protocol/errors.ts";

/** How long a request waits for the service, unless a caller says otherwise. */
export const RequestTimeoutMs = 30_000;

/** A failure to report on stderr as it is, with the exit status to end with. */
export class CliError extends Error {
  override readonly name = "CliError";
  constructor(
    message: string,
    readonly exitCode = 1,
    /** The service's error code, when the service refused. */
    readonly code?: number,
    /** The job the error is about (the Nats-Backup-Job header), when there is one. */
    readonly job?: string,
  ) {
    super(message);
  }
}

/** Sends `body` (an object, JSON encoded) to `subject` and returns the reply's JSON, or throws a CliError in the service's words. */
export async function ask<T>(nc: NatsConnection, subject: string, body: object = {}, timeoutMs = RequestTimeoutMs): Promise<T> {
  let reply;
  try {
    reply = await nc.request(subject, JSON.stringify(body), { timeout: timeoutMs });
  } catch (err) {
    throw unanswered(err, subject, timeoutMs);
  }
  const text = reply.string();
  const code = reply.headers?.get("Nats-Service-Error-Code");
  let parsed: unknown;
  try {
    parsed = text.length ? JSON.parse(text) : undefined;
  } catch {
    throw new CliError(`the reply on ${subject} is not JSON: ${text.slice(0, 200)}`);
  }
  const error = (parsed as { error?: { code?: number; description?: string } } | undefined)?.error;
  if (code || error) {
    const description = error?.description ?? reply.headers?.get("Nats-Service-Error") ?? text;
    const errorCode = Number(code ?? error?.code ?? 500);
    throw new CliError(description, 1, errorCode, reply.headers?.get(JobHeader) || undefined);
  }
  return parsed as T;
}

/** What the client says when a request got no reply. */
function unanswered(err: unknown, subject: string, timeoutMs: number): Error {
  const cause = err instanceof Error ? (err.cause as Error | undefined) : undefined;
  if (err instanceof NoRespondersError || cause instanceof NoRespondersError || (err instanceof RequestError && err.isNoResponders())) {
    return new CliError(`no backup service answered on ${subject} (is \`nats-backup serve\` running?)`);
  }
  if (err instanceof TimeoutError || cause instanceof TimeoutError) {
    return new CliError(`no reply on ${subject} within ${timeoutMs / 1000}s (is the backup service overloaded, or the server unreachable?)`);
  }
  return new CliError(`${subject}: ${err instanceof Error ? err.message : String(err)}`);
}
