/** The benchmark's streams: 1 KiB messages, random or text-like, published with a bounded pipeline. */
import { randomBytes } from "node:crypto";
import type { NatsConnection } from "@nats-io/nats-core";
import { jetstream } from "@nats-io/jetstream";
import { jsApi } from "./jsapi.ts";
import { prng } from "../test/harness/prng.ts";

export type PayloadKind = "random" | "compressible";

export const MessageSize = 1024;

export interface StreamState {
  messages: number;
  bytes: number;
  first_seq: number;
  last_seq: number;
  consumer_count: number;
}

export function streamName(kind: PayloadKind): string {
  return kind === "random" ? "BENCH_RANDOM" : "BENCH_TEXT";
}

const Words = (
  "order customer invoice payment shipped pending delivered warehouse item quantity price total " +
  "account user session login logout request response status error warning info debug latency " +
  "the a of to and in is for on with as by at from this that region eu us west east north south " +
  "created updated deleted processed retry timeout accepted rejected queued batch stream consumer"
).split(" ");
const Levels = ["info", "info", "info", "debug", "warn", "error"];
const Services = ["orders", "billing", "shipping", "auth", "search", "inventory"];

/** Text-ish 1 KiB: JSON log lines with words from a small vocabulary and varying numbers. */
function textPayloads(count: number, rnd: () => number, seqBase: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let i = 0; i < count; i++) {
    let s = "";
    let line = 0;
    while (s.length < MessageSize) {
      const words: string[] = [];
      const n = 6 + (rnd() % 10);
      for (let w = 0; w < n; w++) words.push(Words[rnd() % Words.length] as string);
      s +=
        `{"ts":"2025-11-26T01:${String(rnd() % 60).padStart(2, "0")}:${String(rnd() % 60).padStart(2, "0")}.${rnd() % 1000}Z",` +
        `"seq":${seqBase + i},"line":${line++},"level":"${Levels[rnd() % Levels.length]}",` +
        `"svc":"${Services[rnd() % Services.length]}","user":"user-${rnd() % 5000}","amount":${(rnd() % 100000) / 100},` +
        `"msg":"${words.join(" ")}"}\n`;
    }
    out.push(Buffer.from(s.slice(0, MessageSize)));
  }
  return out;
}

function randomPayloads(count: number): Uint8Array[] {
  const block = randomBytes(count * MessageSize);
  const out: Uint8Array[] = [];
  for (let i = 0; i < count; i++) out.push(block.subarray(i * MessageSize, (i + 1) * MessageSize));
  return out;
}

export async function streamInfo(nc: NatsConnection, stream: string): Promise<StreamState | null> {
  const reply = await jsApi<{ state: StreamState }>(nc, `STREAM.INFO.${stream}`, "", 10_000, true);
  return reply ? reply.state : null;
}

export async function deleteStream(nc: NatsConnection, stream: string): Promise<void> {
  await jsApi(nc, `STREAM.DELETE.${stream}`, "", 30_000, true);
}

/**
 * (Re)creates `stream` with `messages` messages of `kind`, `window` publishes in flight.
 * Returns the state and the publish rate.
 */
export async function buildStream(
  nc: NatsConnection,
  stream: string,
  kind: PayloadKind,
  messages: number,
  window = 2000,
  onProgress?: (done: number) => void,
): Promise<{ state: StreamState; seconds: number }> {
  await deleteStream(nc, stream);
  await jsApi(
    nc,
    `STREAM.CREATE.${stream}`,
    JSON.stringify({ name: stream, subjects: [`${stream}.>`], storage: "file", retention: "limits", num_replicas: 1 }),
  );
  const js = jetstream(nc);
  const rnd = prng(0x9e3779b9 ^ messages);
  const started = performance.now();
  const inFlight = new Set<Promise<unknown>>();
  let failure: unknown = null;
  const batch = 1024;
  for (let base = 0; base < messages; base += batch) {
    const n = Math.min(batch, messages - base);
    const payloads = kind === "random" ? randomPayloads(n) : textPayloads(n, rnd, base + 1);
    for (let i = 0; i < n; i++) {
      const p: Promise<unknown> = js
        .publish(`${stream}.${(base + i) % 16}`, payloads[i], { timeout: 30_000 })
        .catch((err: unknown) => (failure ??= err))
        .finally(() => inFlight.delete(p));
      inFlight.add(p);
      while (inFlight.size >= window) await Promise.race(inFlight);
      if (failure) throw failure;
    }
    onProgress?.(base + n);
  }
  await Promise.all(inFlight);
  if (failure) throw failure;
  const seconds = (performance.now() - started) / 1000;
  const state = await streamInfo(nc, stream);
  if (!state || state.messages !== messages) {
    throw new Error(`stream ${stream} holds ${state?.messages} messages after publishing ${messages}`);
  }
  return { state, seconds };
}
