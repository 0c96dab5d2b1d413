/**
 * Checks an archive as the bucket delivers it to a server's restore: a subscription on the
 * restore's subject, on a bulk connection, sees every chunk the restore is given, in order, and
 * checks their count, size and digest against the object's metadata. So what is checked is what
 * the restore received, and the archive crosses the socket once instead of being read again.
 *
 * Nothing slows the delivery for the watcher (the restore's answers are the acks), so a watcher
 * that falls too far behind is dropped as a slow consumer: `ended` then rejects with `WatchLost`
 * and the caller checks the archive by reading it (object-reader.ts). A damaged archive rejects
 * with the check's error (500, damaged).
 */
import type { BulkConnection } from "../bulk/bulk-connection.ts";
import { watchSubject, type Watch } from "../bulk/watch.ts";
import { DeliveryOrder, isAckSubject } from "./delivery-order.ts";
import { ObjectCheck, type CheckedObject } from "./object-check.ts";

/** Subscribes to `subject` (before the delivery starts); `ended` resolves once every chunk was seen and found to be the recorded object. */
export function watchDelivery(bulk: BulkConnection, info: CheckedObject, subject: string, opts: { idleMs: number }): Promise<Watch> {
  const check = new ObjectCheck(info);
  const order = new DeliveryOrder(`delivering ${info.name}`);
  // Only the consumer's deliveries carry an ack subject; the restore's own requests (its end, an abort) do not.
  let chunk: { pending: number } | null = null;
  return watchSubject(
    bulk,
    subject,
    {
      begin: (msg) => {
        chunk = isAckSubject(msg.reply) ? order.next(msg.reply) : null;
      },
      part: (bytes) => {
        if (chunk) check.part(bytes);
      },
      end: () => (chunk ? check.endChunk(chunk.pending) : "more"),
    },
    { what: `the delivery of ${info.name} to the restore`, idleMs: opts.idleMs },
  );
}
