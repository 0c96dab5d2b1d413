/** One page of a newest-first list of backups, cut to a count and to what fits a `$BACKUP.list` reply (reply-size.ts). */
import { countFitting } from "../protocol/reply-size.ts";
import type { BackupManifest } from "../protocol/schemas.ts";

export interface ListPage {
  backups: BackupManifest[];
  /** The last id of this page, present only when more remain: the next page is `after` it. */
  next?: string;
}

/** The reply's JSON around its manifests, with a `next`. */
const Envelope = Buffer.byteLength(JSON.stringify({ backups: [], next: "0".repeat(26) }));

/**
 * The first `limit` of `newestFirst`, fewer when their JSON reply would pass `maxBytes`. Always at
 * least one when there is one: a manifest was stored in a message of the bucket, so it fits.
 */
export function cutPage(newestFirst: readonly BackupManifest[], limit: number, maxBytes: number): ListPage {
  const backups = newestFirst.slice(0, countFitting(newestFirst, 0, Envelope, maxBytes, limit));
  const last = backups.at(-1);
  return last && backups.length < newestFirst.length ? { backups, next: last.id } : { backups };
}
