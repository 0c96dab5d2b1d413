/**
 * What a nats-server release can do around snapshots and restores, read from its version (the
 * `version` of the connection's INFO). Each rule names the releases it was read from in the
 * server's source and confirmed by the tests (`npm run test:servers`); see protocol/README.md.
 */

export interface ServerVersion {
  major: number;
  minor: number;
  patch: number;
  /** As the server wrote it, e.g. "2.15.3". */
  text: string;
}

/** "2.10.27", "2.11.0-RC.1", "v2.9.10": the release; null when unreadable. */
export function parseServerVersion(text: string | undefined): ServerVersion | null {
  const m = /^v?(\d+)\.(\d+)\.(\d+)/.exec(text ?? "");
  if (!m) return null;
  return { major: Number(m[1]), minor: Number(m[2]), patch: Number(m[3]), text: text!.replace(/^v/, "") };
}

/** `v` is at least major.minor.patch. */
export function atLeast(v: ServerVersion, major: number, minor: number, patch = 0): boolean {
  if (v.major !== major) return v.major > major;
  if (v.minor !== minor) return v.minor > minor;
  return v.patch >= patch;
}

/**
 * From `since` of each release line on (a line not listed: from its first release if it is newer
 * than every listed line, never if it is older).
 */
function fromPatches(v: ServerVersion, since: Record<string, number>): boolean {
  const line = since[`${v.major}.${v.minor}`];
  if (line !== undefined) return v.patch >= line;
  const newest = Object.keys(since)
    .map((k) => k.split(".").map(Number) as [number, number])
    .sort((a, b) => a[0] - b[0] || a[1] - b[1])
    .at(-1)!;
  return v.major > newest[0] || (v.major === newest[0] && v.minor > newest[1]);
}

export const Capabilities = {
  /**
   * The snapshot request takes `window_size` (2.12.5+). Older servers ignore it (2.10), log it
   * (2.11) or refuse it as an unknown field (2.12.0 to 2.12.4, strict JSON).
   */
  snapshotWindowSize: (v: ServerVersion) => atLeast(v, 2, 12, 5),

  /**
   * The server waits for the snapshot's acks: past its window it stops, and ends with 408 when
   * they do not come (2.10.12+). Before, it waited 10 ms and sent on, so a receiver could not slow it.
   */
  snapshotFlowControl: (v: ServerVersion) => atLeast(v, 2, 10, 12),

  /**
   * A stream acks a message whose reply is a JetStream subject, such as a snapshot chunk's
   * `$JS.SNAPSHOT.ACK.…`, and a push consumer may deliver to one, such as a restore's
   * `$JS.SNAPSHOT.RESTORE.…`. 2.14.10 and 2.15.3 stopped both (a JetStream subject is never
   * answered or delivered to on a user's behalf): the server can no longer write its snapshot
   * into a bucket itself, since it would wait for acks that never come.
   */
  answersJetStreamReplies: (v: ServerVersion) => !fromPatches(v, { "2.14": 10, "2.15": 3 }),

  /** Memory-storage streams can be snapshotted (2.15+; before, "snapshot failed: no impl"). */
  snapshotsMemoryStreams: (v: ServerVersion) => atLeast(v, 2, 15),

  /**
   * The restore stages the upload in a file and builds the stream at the end (before 2.12.6).
   * Its chunk handler runs on the sender's connection and hands a failure (a write error, the
   * account's storage limit) to a one-slot channel that is read once: a third failing chunk, or
   * an `abort` after a failed one, blocks that connection on the server for good (its inbound
   * messages, acks included, are never read again). So at most two chunks may be in flight, and
   * nothing is sent after the restore refused a chunk.
   */
  stagesRestores: (v: ServerVersion) => !atLeast(v, 2, 12, 6),

  /**
   * A restore reads the account's streams without the lock that guards them: since account
   * limits are checked while unpacking (2.10.27, 2.11.1), `RestoreStream` (and 2.15's
   * `RestoreStreamV2`) call `tieredReservation` unlocked, so a stream created or deleted in the
   * account meanwhile, another restore's included, is a concurrent map write that ends the server
   * (seen on 2.15.3 and 2.12.15, restoring several streams of an account at once). So the service
   * runs restores one at a time per connection, and an account restore's steps one at a time.
   * Every release from those on, until one is seen to be fixed.
   */
  restoresRaceStreamChanges: (v: ServerVersion) => fromPatches(v, { "2.10": 27, "2.11": 1 }),

  /** The snapshot's archive format: v2 (`NATSARC1` in S2) from 2.15, a tar in S2 before. */
  archiveFormat: (v: ServerVersion): ArchiveFormat => (atLeast(v, 2, 15) ? "v2" : "v1"),
} as const;

/** v1: an S2-compressed tar of the stream's store folder (up to 2.14); v2: `NATSARC1` entries in S2 (2.15+). */
export type ArchiveFormat = "v1" | "v2";

/** Servers restore the archive formats of their own and older releases, never a newer one. */
export function canRestoreFormat(v: ServerVersion, format: ArchiveFormat): boolean {
  return format === "v1" || Capabilities.archiveFormat(v) === "v2";
}
