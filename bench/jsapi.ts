/** Raw JetStream API and service requests for the benchmark. */
import type { NatsConnection } from "@nats-io/nats-core";

export class ApiError extends Error {
  constructor(
    readonly subject: string,
    readonly code: number,
    readonly errCode: number,
    description: string,
  ) {
    super(`${subject}: ${code}/${errCode} ${description}`);
  }
}

/**
 * `$JS.API.<subject>`; throws ApiError on an error reply. With `missingOk`, a 404 (stream not
 * found) resolves to null instead.
 */
export async function jsApi<T = unknown>(
  nc: NatsConnection,
  subject: string,
  body: string | Uint8Array = "",
  timeout = 10_000,
  missingOk = false,
): Promise<T | null> {
  const full = `$JS.API.${subject}`;
  const reply = await nc.request(full, body, { timeout });
  const parsed = JSON.parse(reply.string()) as T & { error?: { code: number; err_code?: number; description?: string } };
  if (parsed.error) {
    if (missingOk && parsed.error.code === 404) return null;
    throw new ApiError(full, parsed.error.code, parsed.error.err_code ?? 0, parsed.error.description ?? "");
  }
  return parsed;
}

/** A request to the backup service; throws when it answers with a micro service error. */
export async function serviceRequest<T = unknown>(
  nc: NatsConnection,
  subject: string,
  body: unknown = "",
  timeout = 30_000,
): Promise<T> {
  const payload = typeof body === "string" ? body : JSON.stringify(body);
  const msg = await nc.request(subject, payload, { timeout });
  const code = msg.headers?.get("Nats-Service-Error-Code");
  if (code) throw new Error(`${subject}: ${code} ${msg.headers?.get("Nats-Service-Error") ?? ""} ${msg.string()}`);
  return JSON.parse(msg.string()) as T;
}
