/**
 * A folder's backup.json, as `nats stream backup` writes it: the stream's `{config, state}` from
 * the server's snapshot answer. Checked before anything is stored; its text is kept as it is.
 */
import { rawMembers } from "../jetstream/raw-json.ts";
import { BackupError } from "../protocol/errors.ts";
import { isValidStreamName } from "../protocol/subjects.ts";

export interface BackupJson {
  /** The file's text, stored unchanged. */
  text: string;
  stream: string;
  /** The `config` member's text, as the server wrote it (an account backup's stream_<S>.json). */
  configText: string;
  config: Record<string, unknown>;
  state: { messages: number; bytes: number; first_seq: number; last_seq: number };
}

/** `where` names the file in errors. Throws 400 unless it is a stream's `{config, state}`. */
export function parseBackupJson(text: string, where: string): BackupJson {
  const refuse = (why: string) => BackupError.badRequest(`${where} is not a stream's backup.json ({"config": …, "state": …}): ${why}`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw refuse(`not JSON (${(err as Error).message})`);
  }
  if (!isObject(parsed)) throw refuse("not a JSON object");
  const { config, state } = parsed;
  if (!isObject(config)) throw refuse("no config object");
  if (!isObject(state)) throw refuse("no state object");
  if (typeof config.name !== "string" || !isValidStreamName(config.name)) {
    throw refuse(`config.name ${JSON.stringify(config.name)} is not a valid stream name`);
  }
  const counts = ["messages", "bytes", "first_seq", "last_seq"] as const;
  for (const key of counts) {
    if (typeof state[key] !== "number" || !Number.isInteger(state[key]) || (state[key] as number) < 0) {
      throw refuse(`state.${key} is not a count`);
    }
  }
  const configText = rawMembers(text).get("config")!;
  const s = state as Record<(typeof counts)[number], number>;
  return {
    text,
    stream: config.name,
    configText,
    config,
    state: { messages: s.messages, bytes: s.bytes, first_seq: s.first_seq, last_seq: s.last_seq },
  };
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
