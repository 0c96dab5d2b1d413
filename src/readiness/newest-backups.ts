/**
 * The newest completed backup that holds each stream's data: its own stream backups, and account
 * backups taken with data (a stream's messages are in those too). Manifests come from the
 * catalogue's index; an account backup whose manifest does not say which streams have data
 * (some of them had none: memory streams before 2.15, failed ones) is read once, its account.json.
 */
import type { Catalogue } from "../catalogue/catalogue.ts";
import type { AccountManifest, BackupManifest } from "../protocol/schemas.ts";

export interface HeldBackup {
  id: string;
  scope: "stream" | "account";
  completed: string;
}

/** Stream name → its newest backup with data, for the streams in `wanted`. */
export async function newestBackups(catalogue: Catalogue, wanted: ReadonlySet<string>): Promise<Map<string, HeldBackup>> {
  const newest = new Map<string, HeldBackup>();
  const take = (stream: string, m: BackupManifest) => {
    if (!wanted.has(stream)) return;
    const held = newest.get(stream);
    // Ids are ULIDs: the higher id was started later. The newest is the one started last, as a restore takes it.
    if (!held || held.id < m.id) newest.set(stream, { id: m.id, scope: m.scope, completed: m.completed });
  };
  for (const m of await catalogue.list()) {
    if (m.scope === "stream") take(m.stream, m);
    // Newest first: an account backup whose streams all have a newer one already need not be read.
    else if (m.data && m.streams_with_data > 0 && m.streams.some((s) => wanted.has(s) && !newest.has(s))) {
      for (const stream of await streamsWithData(catalogue, m, wanted)) take(stream, m);
    }
  }
  return newest;
}

async function streamsWithData(catalogue: Catalogue, m: AccountManifest, wanted: ReadonlySet<string>): Promise<string[]> {
  if (!m.streams.some((s) => wanted.has(s))) return [];
  if (m.streams_with_data === m.streams.length) return m.streams;
  const contents = await catalogue.readContents(m.id);
  return contents.streams.filter((s) => s.state === "completed" && s.data !== undefined).map((s) => s.name);
}
