/**
 * The account bench's streams: a set of N streams built like the stream bench's (fill.ts), the
 * account's streams apart from the service's own buckets, deleting them, and checking a restore.
 */
import type { NatsConnection } from "@nats-io/nats-core";
import { Defaults } from "../src/mod.ts";
import type { AccountSet } from "./args.ts";
import { buildStream, deleteStream, streamInfo, type PayloadKind, type StreamState } from "./fill.ts";
import { jsApi } from "./jsapi.ts";

/** The service's own streams: never in its account backups, and left alone by the bench. */
export const ServiceStreams = [`OBJ_${Defaults.bucket}`, `KV_${Defaults.bucket}-jobs`, `KV_${Defaults.bucket}-locks`];

export function setStreamNames(set: AccountSet, count: number): string[] {
  const prefix = set === "data" ? "ACCT_DATA" : "ACCT_EMPTY";
  const width = Math.max(3, String(count - 1).length);
  return Array.from({ length: count }, (_, i) => `${prefix}_${String(i).padStart(width, "0")}`);
}

/** Runs `fn` over `items`, at most `limit` at once; the first failure is thrown once all started ones end. */
export async function eachLimited<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++] as T);
  };
  const results = await Promise.allSettled(Array.from({ length: Math.min(limit, items.length) }, worker));
  const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failed) throw failed.reason;
}

/** (Re)creates the streams, each with `messages` 1 KiB messages of `kind` (file storage); their states. */
export async function buildSet(
  nc: NatsConnection,
  names: string[],
  kind: PayloadKind,
  messages: number,
  window: number,
  onBuilt?: (done: number) => void,
): Promise<Map<string, StreamState>> {
  const states = new Map<string, StreamState>();
  await eachLimited(names, 4, async (name) => {
    const built = await buildStream(nc, name, kind, messages, window);
    states.set(name, built.state);
    onBuilt?.(states.size);
  });
  return new Map(names.map((n) => [n, states.get(n)!]));
}

/** Every stream of the account but the service's own. */
export async function accountStreams(nc: NatsConnection): Promise<string[]> {
  const names: string[] = [];
  for (;;) {
    const page = await jsApi<{ total: number; streams: string[] | null }>(nc, "STREAM.NAMES", JSON.stringify({ offset: names.length }));
    const got = page?.streams ?? [];
    names.push(...got);
    if (got.length === 0 || names.length >= (page?.total ?? 0)) break;
  }
  return names.filter((n) => !ServiceStreams.includes(n)).sort();
}

/** Deletes every stream of the account but the service's own; how many it deleted. */
export async function deleteAccountStreams(nc: NatsConnection): Promise<number> {
  const names = await accountStreams(nc);
  await eachLimited(names, 8, (name) => deleteStream(nc, name));
  const left = await accountStreams(nc);
  if (left.length) throw new Error(`streams left after deleting the account's: ${left.slice(0, 10).join(", ")}`);
  return names.length;
}

export interface SetCheck {
  ok: boolean;
  streams: number;
  messages: number;
  /** What differs, at most 10 lines. */
  problems: string[];
}

/**
 * The account holds exactly the set's streams, each with the original message count and last
 * sequence, and first sequence where it holds messages (an empty stream's first sequence is 0
 * when made, 1 when restored).
 */
export async function checkSet(nc: NatsConnection, original: Map<string, StreamState>): Promise<SetCheck> {
  const problems: string[] = [];
  const present = await accountStreams(nc);
  const extra = present.filter((n) => !original.has(n));
  if (extra.length) problems.push(`streams not in the set: ${extra.slice(0, 5).join(", ")}${extra.length > 5 ? ` and ${extra.length - 5} more` : ""}`);
  let messages = 0;
  let streams = 0;
  await eachLimited([...original.keys()], 8, async (name) => {
    const want = original.get(name)!;
    const got = await streamInfo(nc, name);
    if (!got) {
      problems.push(`${name}: missing`);
      return;
    }
    streams++;
    messages += got.messages;
    const firstOk = want.messages === 0 || got.first_seq === want.first_seq;
    if (got.messages !== want.messages || got.last_seq !== want.last_seq || !firstOk) {
      problems.push(
        `${name}: ${got.messages} messages ${got.first_seq}..${got.last_seq}, was ${want.messages} ${want.first_seq}..${want.last_seq}`,
      );
    }
  });
  return { ok: problems.length === 0, streams, messages, problems: problems.slice(0, 10) };
}
