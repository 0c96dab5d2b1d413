/**
 * Looking at what the service left behind, through the JetStream API directly: stream states,
 * the bucket's stream, job records, status events. Every wait is bounded.
 */
import type { NatsConnection, Subscription } from "@nats-io/nats-core";
import type { JobRecord } from "../../src/mod.ts";

export interface ApiReplyError {
  error?: { code: number; err_code?: number; description?: string };
}

/** A `$JS.API.<subject>` request; the reply parsed (errors included, not thrown). */
export async function jsApi<T = Record<string, unknown>>(
  nc: NatsConnection,
  subject: string,
  body: unknown = "",
  timeout = 10_000,
): Promise<T & ApiReplyError> {
  const payload = typeof body === "string" ? body : JSON.stringify(body);
  const reply = await nc.request(`$JS.API.${subject}`, payload, { timeout });
  return JSON.parse(reply.string()) as T & ApiReplyError;
}

/** The reply text of a `$JS.API.<subject>` request, untouched. */
export async function jsApiRaw(nc: NatsConnection, subject: string, body = "", timeout = 10_000): Promise<string> {
  const reply = await nc.request(`$JS.API.${subject}`, body, { timeout });
  return reply.string();
}

export interface StreamStateLite {
  messages: number;
  bytes: number;
  first_seq: number;
  last_seq: number;
  consumer_count: number;
}

/** The state of a stream, or null when the server says it does not exist (err_code 10059). */
export async function streamState(nc: NatsConnection, stream: string): Promise<StreamStateLite | null> {
  const info = await jsApi<{ state: StreamStateLite }>(nc, `STREAM.INFO.${stream}`);
  if (info.error) {
    if (info.error.err_code === 10059) return null;
    throw new Error(`STREAM.INFO.${stream}: ${JSON.stringify(info.error)}`);
  }
  const s = info.state;
  return { messages: s.messages, bytes: s.bytes, first_seq: s.first_seq, last_seq: s.last_seq, consumer_count: s.consumer_count };
}

/** Every stream's name and state, by name: a fingerprint of the whole JetStream account. */
export async function allStreams(nc: NatsConnection): Promise<Record<string, StreamStateLite>> {
  const out: Record<string, StreamStateLite> = {};
  for (let offset = 0; ; ) {
    const page = await jsApi<{ streams: { config: { name: string }; state: StreamStateLite }[] | null; total: number }>(
      nc,
      "STREAM.LIST",
      { offset },
    );
    if (page.error) throw new Error(`STREAM.LIST: ${JSON.stringify(page.error)}`);
    const streams = page.streams ?? [];
    for (const s of streams) {
      const st = s.state;
      out[s.config.name] = {
        messages: st.messages,
        bytes: st.bytes,
        first_seq: st.first_seq,
        last_seq: st.last_seq,
        consumer_count: st.consumer_count,
      };
    }
    offset += streams.length;
    if (streams.length === 0 || offset >= page.total) break;
  }
  return out;
}

/** Messages per subject of a stream, for subjects matching `filter`. */
export async function subjectCounts(nc: NatsConnection, stream: string, filter: string): Promise<Record<string, number>> {
  const info = await jsApi<{ state: { subjects?: Record<string, number> } }>(nc, `STREAM.INFO.${stream}`, {
    subjects_filter: filter,
  });
  if (info.error) throw new Error(`STREAM.INFO.${stream}: ${JSON.stringify(info.error)}`);
  return info.state.subjects ?? {};
}

export interface StoredRawMessage {
  subject: string;
  seq: number;
  data: Buffer;
  hdrs?: string;
}

/** Every message on `subject` in stream order, read with `$JS.API.STREAM.MSG.GET` (next_by_subj). */
export async function readSubject(nc: NatsConnection, stream: string, subject: string): Promise<StoredRawMessage[]> {
  const out: StoredRawMessage[] = [];
  for (let seq = 1; ; ) {
    const r = await jsApi<{ message?: { subject: string; seq: number; data?: string; hdrs?: string } }>(
      nc,
      `STREAM.MSG.GET.${stream}`,
      { seq, next_by_subj: subject },
    );
    if (r.error) {
      if (r.error.err_code === 10037) return out; // no message found
      throw new Error(`STREAM.MSG.GET.${stream}: ${JSON.stringify(r.error)}`);
    }
    const m = r.message!;
    out.push({ subject: m.subject, seq: m.seq, data: Buffer.from(m.data ?? "", "base64"), ...(m.hdrs ? { hdrs: m.hdrs } : {}) });
    seq = m.seq + 1;
  }
}

/** Waits until `check` returns a value other than undefined/false, or throws after `timeoutMs`. */
export async function waitUntil<T>(
  what: string,
  check: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs = 60_000,
  pollMs = 100,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value as T;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, pollMs));
  }
}

/** Collects the JSON messages of a subscription (e.g. `$BACKUP.status.>`), in arrival order. */
export class Collector<T = JobRecord> {
  readonly messages: { subject: string; body: T }[] = [];
  readonly #sub: Subscription;

  private constructor(sub: Subscription) {
    this.#sub = sub;
  }

  /** Subscribes and makes sure the server knows of the interest before returning. */
  static async start<T = JobRecord>(nc: NatsConnection, subject: string): Promise<Collector<T>> {
    let collector: Collector<T> | null = null;
    const early: { subject: string; body: T }[] = [];
    const sub = nc.subscribe(subject, {
      callback: (err, msg) => {
        if (err) return;
        const entry = { subject: msg.subject, body: JSON.parse(msg.string()) as T };
        if (collector) collector.messages.push(entry);
        else early.push(entry);
      },
    });
    collector = new Collector<T>(sub);
    collector.messages.push(...early);
    await nc.flush();
    return collector;
  }

  bodies(pred: (body: T, subject: string) => boolean = () => true): T[] {
    return this.messages.filter((m) => pred(m.body, m.subject)).map((m) => m.body);
  }

  waitFor(what: string, pred: (body: T, subject: string) => boolean, timeoutMs = 120_000): Promise<T> {
    return waitUntil(what, () => this.messages.find((m) => pred(m.body, m.subject))?.body, timeoutMs, 50);
  }

  stop(): void {
    this.#sub.unsubscribe();
  }
}

/** The JSON text of the member `name` of the top-level object in `json`, found by a plain scan (not raw-json.ts). */
export function memberText(json: string, name: string): string | undefined {
  const key = `"${name}":`;
  let depth = 0;
  let inString = false;
  for (let i = 0; i < json.length; i++) {
    const c = json[i];
    if (inString) {
      if (c === "\\") i++;
      else if (c === '"') inString = false;
      continue;
    }
    if (c === '"') {
      if (depth === 1 && json.startsWith(key, i)) return valueAt(json, i + key.length);
      inString = true;
    } else if (c === "{" || c === "[") depth++;
    else if (c === "}" || c === "]") depth--;
  }
  return undefined;
}

function valueAt(json: string, start: number): string {
  let depth = 0;
  let inString = false;
  for (let i = start; i < json.length; i++) {
    const c = json[i];
    if (inString) {
      if (c === "\\") i++;
      else if (c === '"') {
        inString = false;
        if (depth === 0) return json.slice(start, i + 1);
      }
      continue;
    }
    if (c === '"') inString = true;
    else if (c === "{" || c === "[") depth++;
    else if (c === "}" || c === "]") {
      if (depth === 0) return json.slice(start, i);
      depth--;
      if (depth === 0) return json.slice(start, i + 1);
    } else if (c === "," && depth === 0) return json.slice(start, i);
  }
  return json.slice(start);
}
