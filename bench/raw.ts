/**
 * The nats CLI's `stream backup` and `stream restore`, written with the raw JetStream API: the
 * baselines the service is measured against.
 */
import { closeSync, createWriteStream, openSync, readFileSync, readSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createInbox, type NatsConnection } from "@nats-io/nats-core";
import { rawMembers } from "../src/jetstream/raw-json.ts";
import { jsApi } from "./jsapi.ts";

export const ArchiveFile = "stream.tar.s2";
export const ConfigFile = "backup.json";

export interface RawSnapshotResult {
  seconds: number;
  bytes: number;
  chunks: number;
}

/**
 * Subscribe to an inbox, ask for the snapshot, write every chunk to the file and ack it once
 * written, stop at the empty end message, then write backup.json.
 */
export async function rawSnapshot(
  nc: NatsConnection,
  stream: string,
  dir: string,
  chunkSize = 128 * 1024,
  idleMs = 30_000,
): Promise<RawSnapshotResult> {
  const started = performance.now();
  const inbox = createInbox();
  const file = createWriteStream(join(dir, ArchiveFile));
  const fileError = new Promise<never>((_, reject) => file.once("error", reject));
  let bytes = 0;
  let chunks = 0;
  let idle: NodeJS.Timeout | null = null;
  let fail!: (err: Error) => void;
  const ended = new Promise<void>((resolve, reject) => {
    fail = reject;
    const arm = () => {
      if (idle) clearTimeout(idle);
      idle = setTimeout(() => reject(new Error(`snapshot of ${stream}: no data for ${idleMs / 1000}s`)), idleMs);
    };
    arm();
    const sub = nc.subscribe(inbox, {
      callback: (err, msg) => {
        if (err) return reject(err);
        arm();
        if (msg.data.length === 0) {
          if (idle) clearTimeout(idle);
          sub.unsubscribe();
          const status = msg.headers?.code ?? 0;
          if (status !== 0 && status !== 204) reject(new Error(`snapshot of ${stream} ended with ${status}`));
          else resolve();
          return;
        }
        bytes += msg.data.length;
        chunks++;
        const reply = msg.reply;
        file.write(msg.data, (e) => {
          if (e) reject(e);
          else if (reply) nc.publish(reply);
        });
      },
    });
  });
  let response: { config: unknown; state: unknown };
  let text: string;
  try {
    const reply = await nc.request(
      `$JS.API.STREAM.SNAPSHOT.${stream}`,
      JSON.stringify({ deliver_subject: inbox, chunk_size: chunkSize }),
      { timeout: 10_000 },
    );
    text = reply.string();
    response = JSON.parse(text);
    if ((response as { error?: unknown }).error) throw new Error(`snapshot of ${stream} refused: ${text}`);
  } catch (err) {
    fail(err as Error);
    await ended.catch(() => undefined);
    file.destroy();
    throw err;
  }
  await Promise.race([ended, fileError]);
  await new Promise<void>((resolve, reject) => file.end((err?: Error | null) => (err ? reject(err) : resolve())));
  // backup.json: the server's config and state, their text untouched (the CLI indents it; no matter).
  const members = rawMembers(text);
  writeFileSync(join(dir, ConfigFile), `{"config":${members.get("config")},"state":${members.get("state")}}\n`);
  return { seconds: (performance.now() - started) / 1000, bytes, chunks };
}

export interface RawRestoreResult {
  seconds: number;
  /** Until the last chunk was answered; the rest is the server building the stream. */
  uploadSeconds: number;
  bytes: number;
  chunks: number;
  state: { messages: number; last_seq: number; first_seq: number; bytes: number };
}

/**
 * The CLI's restore: STREAM.RESTORE with backup.json, then the archive in `chunk`-byte requests
 * to the deliver subject, one in flight, then an empty request whose reply is the new stream.
 * The stream must not exist.
 */
export async function rawRestore(
  nc: NatsConnection,
  stream: string,
  dir: string,
  chunk = 64 * 1024,
  onUploaded?: () => void,
): Promise<RawRestoreResult> {
  const backupJson = readFileSync(join(dir, ConfigFile), "utf8");
  const fd = openSync(join(dir, ArchiveFile), "r");
  const started = performance.now();
  let bytes = 0;
  let chunks = 0;
  try {
    const start = await jsApi<{ deliver_subject: string }>(nc, `STREAM.RESTORE.${stream}`, backupJson, 10_000);
    const deliver = start!.deliver_subject;
    for (;;) {
      const buf = Buffer.allocUnsafe(chunk);
      const n = readSync(fd, buf, 0, chunk, null);
      if (n === 0) break;
      const reply = await nc.request(deliver, buf.subarray(0, n), { timeout: 10_000 });
      if (reply.data.length > 0) throw new Error(`restore of ${stream}: chunk ${chunks} answered ${reply.string()}`);
      bytes += n;
      chunks++;
    }
    const uploadSeconds = (performance.now() - started) / 1000;
    onUploaded?.();
    const done = await nc.request(deliver, new Uint8Array(0), { timeout: 600_000 });
    const text = done.string();
    const body = JSON.parse(text) as { error?: unknown; state?: RawRestoreResult["state"] };
    if (body.error || !body.state) throw new Error(`restore of ${stream} failed: ${text}`);
    return { seconds: (performance.now() - started) / 1000, uploadSeconds, bytes, chunks, state: body.state };
  } finally {
    closeSync(fd);
  }
}
