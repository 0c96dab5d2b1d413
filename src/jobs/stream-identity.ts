/** Whether a stream found under a name after a failed restore is the one the restore made. */

/**
 * A stream's replicas each record its creation, a moment apart (1 ms seen on 2.9.10), and a stream
 * restored from a v1 archive keeps the time of the replica whose snapshot it was; STREAM.INFO
 * answers with its leader's. A stream someone else created since is far off.
 */
const ReplicaSkewMs = 1000;

/** Whether creation times `found` and `recorded` (RFC 3339, nanoseconds allowed) are one stream's. */
export function sameCreation(found: string | undefined, recorded: string | undefined): boolean {
  if (found === undefined || recorded === undefined) return false;
  if (found === recorded) return true;
  const a = Date.parse(found);
  const b = Date.parse(recorded);
  return !Number.isNaN(a) && !Number.isNaN(b) && Math.abs(a - b) < ReplicaSkewMs;
}
