/** Requests to the JetStream API ($JS.API.>) that keep the reply's raw text. */
import type { NatsConnection } from "@nats-io/nats-core";
import { BackupError, ErrorCode } from "../protocol/errors.ts";

export const JsApiPrefix = "$JS.API";

/** Connections whose JetStream is in another domain, with the prefix that addresses it. */
const domainPrefixes = new WeakMap<NatsConnection, string>();

/**
 * From now on, every JetStream API request this service sends on `nc` goes to `domain`'s
 * JetStream (`$JS.<domain>.API`: a leaf node's or a hub's, from a server of the other), or,
 * without a domain, to the connected server's. One domain per connection: the last service
 * started on it decides.
 */
export function useDomain(nc: NatsConnection, domain: string | undefined): void {
  if (domain) domainPrefixes.set(nc, `$JS.${domain}.API`);
  else domainPrefixes.delete(nc);
}

/** The JetStream API prefix of `nc`: `$JS.API`, or its domain's. */
export function apiPrefix(nc: NatsConnection): string {
  return domainPrefixes.get(nc) ?? JsApiPrefix;
}

/** An error the JetStream API answered with, keeping the server's codes. */
export class JetStreamApiError extends BackupError {
  constructor(
    code: number,
    readonly errCode: number,
    readonly serverDescription: string,
    description = serverDescription,
  ) {
    super(code, description);
  }
}

/** Known JetStream API error codes (err_code) this service reacts to. */
export const JsErrCode = {
  StreamNotFound: 10059,
  StreamSnapshot: 10064,
  StreamRestore: 10062,
  StreamNameInUse: 10130,
  ConsumerNotFound: 10014,
  NoMessageFound: 10037,
  InvalidJson: 10025,
} as const;

interface ApiReply {
  error?: { code: number; err_code?: number; description?: string };
}

/** Sends a JetStream API request and returns the reply text; throws JetStreamApiError on an API error. */
export async function jsApiRequest(
  nc: NatsConnection,
  subject: string,
  body: string | Uint8Array = "",
  timeout = 5000,
): Promise<string> {
  let text: string;
  try {
    const reply = await nc.request(`${apiPrefix(nc)}.${subject}`, body, { timeout });
    text = reply.string();
  } catch (err) {
    throw new BackupError(
      ErrorCode.Unavailable,
      `JetStream did not answer ${apiPrefix(nc)}.${subject}: ${(err as Error).message}`,
      { cause: err },
    );
  }
  const parsed = JSON.parse(text) as ApiReply;
  if (parsed.error) {
    const { code, err_code = 0, description = "unknown error" } = parsed.error;
    throw new JetStreamApiError(code, err_code, description);
  }
  return text;
}

export async function streamExists(nc: NatsConnection, stream: string): Promise<boolean> {
  try {
    await jsApiRequest(nc, `STREAM.INFO.${stream}`);
    return true;
  } catch (err) {
    if (err instanceof JetStreamApiError && err.errCode === JsErrCode.StreamNotFound) return false;
    throw err;
  }
}

/**
 * What STREAM.INFO says of a stream: when it was created (a restored stream keeps its
 * original's), its storage and its bytes; null when there is no such stream.
 */
export async function streamSummary(nc: NatsConnection, stream: string): Promise<{ created: string; storage: string; bytes: number } | null> {
  try {
    const info = JSON.parse(await jsApiRequest(nc, `STREAM.INFO.${stream}`)) as { created: string; config: { storage?: string }; state?: { bytes?: number } };
    return { created: info.created, storage: info.config.storage ?? "file", bytes: info.state?.bytes ?? 0 };
  } catch (err) {
    if (err instanceof JetStreamApiError && err.errCode === JsErrCode.StreamNotFound) return null;
    throw err;
  }
}

export async function deleteStream(nc: NatsConnection, stream: string): Promise<void> {
  await jsApiRequest(nc, `STREAM.DELETE.${stream}`);
}

/**
 * Every name a paged NAMES request lists (`STREAM.NAMES`, `CONSUMER.NAMES.<stream>`): the API
 * answers at most a page (256 names) at a time, so ask from each offset until the total.
 */
export async function listNames(nc: NatsConnection, subject: string, member: "streams" | "consumers"): Promise<string[]> {
  const names: string[] = [];
  for (let offset = 0; ; ) {
    const page = JSON.parse(await jsApiRequest(nc, subject, JSON.stringify({ offset }))) as Record<string, unknown> & { total?: number };
    const batch = (page[member] as string[] | null | undefined) ?? [];
    names.push(...batch);
    offset += batch.length;
    if (batch.length === 0 || offset >= (page.total ?? 0)) break;
  }
  return names.sort();
}
