/**
 * The server's side of a backup: `$JS.API.STREAM.SNAPSHOT.<stream>` and the messages it sends.
 * The chunks go to a deliver subject the caller chose; when that subject belongs to a stream
 * (the bucket's chunk subject), the stream stores each chunk as it comes, and its publish ack is
 * the ack the snapshot's flow control waits for. The last message is empty: on 2.9 without
 * headers, from 2.10 with a status, 204 on success, 408/500 on failure.
 */
import type { MsgHdrs, NatsConnection } from "@nats-io/nats-core";
import { BackupError, ErrorCode } from "../protocol/errors.ts";
import { JetStreamApiError, JsErrCode, jsApiRequest } from "../jetstream/jsapi.ts";
import { rawMembers } from "../jetstream/raw-json.ts";

export interface SnapshotOptions {
  /** Where the server sends the chunks. Something must listen there before the snapshot starts. */
  deliverSubject: string;
  chunkSize: number;
  /** Bytes in flight (2.12.5+ only: older servers ignore or refuse the field). */
  windowSize?: number;
  consumers: boolean;
  check: boolean;
}

/** What the server says of the stream when it starts a snapshot. */
export interface StreamStateSummary {
  messages: number;
  bytes: number;
  first_seq: number;
  last_seq: number;
  consumer_count: number;
}

/** A snapshot the server accepted and is now sending. */
export interface StartedSnapshot {
  stream: string;
  /** `{"config":…,"state":…}` exactly as the server sent them: the nats CLI's backup.json. */
  backupJson: string;
  state: StreamStateSummary;
}

/**
 * What a message on the deliver subject means: `chunk`, or `end` (the snapshot is complete).
 * Throws when the server ended the snapshot with a failure status.
 */
export function snapshotMessage(stream: string, msg: { size: number; headers?: MsgHdrs }): "chunk" | "end" {
  if (msg.size > 0) return "chunk";
  const status = msg.headers?.code ?? 0;
  const text = msg.headers?.description ?? "";
  // nats-server 2.12.5 to 2.14.x (2.14.10 included) end a snapshot whose last chunk is full with a
  // bare "500" when no ack slot is free at that moment: they take the archive builder's error
  // channel, closed once it finished, for an error. The archive is whole; every real failure,
  // on every version, carries its error's words.
  if (status === 500 && text === "") return "end";
  if (status !== 0 && status !== 204) {
    throw new BackupError(ErrorCode.Internal, `server ended the snapshot of ${stream} with ${status} ${text || "snapshot failed"}`);
  }
  return "end";
}

/**
 * Asks the server for a snapshot of `stream`. Resolves once the server accepted it; server
 * errors at the start (no such stream, a snapshot already running, memory storage) reject.
 */
export async function openSnapshot(nc: NatsConnection, stream: string, opts: SnapshotOptions): Promise<StartedSnapshot> {
  const request = JSON.stringify({
    deliver_subject: opts.deliverSubject,
    chunk_size: opts.chunkSize,
    ...(opts.windowSize !== undefined ? { window_size: opts.windowSize } : {}),
    no_consumers: !opts.consumers,
    jsck: opts.check,
  });
  let response: string;
  try {
    // A checked snapshot verifies every message before answering.
    response = await jsApiRequest(nc, `STREAM.SNAPSHOT.${stream}`, request, opts.check ? 120_000 : 10_000);
  } catch (err) {
    throw describeSnapshotError(stream, err);
  }
  const members = rawMembers(response);
  const config = members.get("config");
  const state = members.get("state");
  if (!config || !state) throw new BackupError(ErrorCode.Internal, `snapshot response for ${stream} lacks config or state`);
  const s = JSON.parse(state) as Partial<StreamStateSummary>;
  return {
    stream,
    backupJson: `{"config":${config},"state":${state}}`,
    state: {
      messages: s.messages ?? 0,
      bytes: s.bytes ?? 0,
      first_seq: s.first_seq ?? 0,
      last_seq: s.last_seq ?? 0,
      consumer_count: s.consumer_count ?? 0,
    },
  };
}

function describeSnapshotError(stream: string, err: unknown): BackupError {
  if (!(err instanceof JetStreamApiError)) return BackupError.from(err);
  if (err.errCode === JsErrCode.StreamNotFound) return BackupError.notFound(`stream ${stream} not found`);
  const text = err.serverDescription;
  if (/in progress/i.test(text)) {
    return BackupError.conflict(`the server is already taking a snapshot of stream ${stream} (${text})`);
  }
  if (/no impl/i.test(text)) {
    return BackupError.badRequest(`stream ${stream} uses memory storage, which the server cannot snapshot (${text})`);
  }
  return err;
}
