/**
 * A restore request the server never answered: 2.9.10 places a restore on a server it has not
 * noticed is dead, gives no answer, and keeps the stream's assignment, so the name stays taken
 * ("stream name already in use") by a stream that will never hold anything (nats-server #4270).
 * This finds out what the server made of the request and removes it, when it is this restore's:
 * the name was free just before the request (the restore checked, and the lock keeps this
 * service's other jobs off it), and what is there now is leaderless (STREAM.LIST names it
 * `missing`) or was created since the request (or keeps the backed-up stream's creation time).
 * On 2.9.10 the meta leader removes such a stream's assignment when asked to delete it, but the
 * answer, which the stream's leader would send, never comes: the list says when it is gone.
 */
import type { NatsConnection } from "@nats-io/nats-core";
import type { Logger } from "pino";
import { jsApiRequest } from "../jetstream/jsapi.ts";
import { peersOf, type StreamListing } from "../readiness/assess.ts";
import { listStreams } from "../readiness/report.ts";
import { sameCreation } from "./stream-identity.ts";

/** Clocks of the service and the server may differ: a stream created this long before the request still counts as the restore's. */
const ClockSlackMs = 5 * 60_000;

export interface LeftBehind {
  /** A sentence for the job's error: what was found, and what was done about it. */
  outcome: string;
  /** Whether a stream of the name remains. */
  remains: boolean;
}

async function find(nc: NatsConnection, stream: string): Promise<{ kind: "none" } | { kind: "missing" } | { kind: "listed"; created?: string; peers: string[] }> {
  const { listed, missing } = await listStreams(nc);
  const hit = listed.find((l) => l.config.name === stream) as (StreamListing & { created?: string }) | undefined;
  if (hit) return { kind: "listed", ...(hit.created ? { created: hit.created } : {}), peers: peersOf(hit).map((p) => p.name) };
  return missing.includes(stream) ? { kind: "missing" } : { kind: "none" };
}

export async function removeUnansweredRestore(
  nc: NatsConnection,
  stream: string,
  restore: { requestedAt: number; streamCreated: string | undefined; waitMs?: number },
  log: Logger,
): Promise<LeftBehind> {
  let seen = await find(nc, stream);
  // The assignment may still be on its way through the meta group: look once more.
  if (seen.kind === "none") {
    await new Promise((r) => setTimeout(r, 500));
    seen = await find(nc, stream);
  }
  if (seen.kind === "none") return { outcome: "the server created no stream", remains: false };
  const where = seen.kind === "listed" && seen.peers.length ? ` on ${seen.peers.join(", ")}` : "";
  if (seen.kind === "listed") {
    const created = seen.created ? Date.parse(seen.created) : NaN;
    const ours = sameCreation(seen.created, restore.streamCreated) || (!Number.isNaN(created) && created >= restore.requestedAt - ClockSlackMs);
    if (!ours) {
      log.warn({ stream, created: seen.created }, "a stream of that name, created before this restore, is left alone");
      return { outcome: `a stream ${stream} created before this restore (${seen.created}) was left alone`, remains: true };
    }
  }
  const what = `the stream the server created for it${where}${seen.kind === "missing" ? " (no leader answers for it)" : ""}`;
  const failed = await deleteUntilGone(nc, stream, restore.waitMs);
  if (failed === null) {
    log.warn({ stream }, "removed the stream an unanswered restore left");
    return { outcome: `${what} was deleted`, remains: false };
  }
  return { outcome: `${what} could not be deleted${failed}: it holds the name; delete it (nats stream rm ${stream}) before restoring again`, remains: true };
}

/**
 * Deletes a stream that may have no leader, and waits until STREAM.LIST no longer names it.
 * Null once it is gone; else why not (the delete's own answer, if it gave none).
 */
export async function deleteUntilGone(nc: NatsConnection, stream: string, waitMs = 30_000): Promise<string | null> {
  let asked = "";
  try {
    await jsApiRequest(nc, `STREAM.DELETE.${stream}`, "", 10_000);
  } catch (err) {
    asked = ` (the delete was not answered: ${(err as Error).message})`;
  }
  return (await goneWithin(nc, stream, waitMs)) ? null : asked || " (it is still listed)";
}

/** Whether STREAM.LIST stops naming `stream` (it also lists one without a leader) within `waitMs`, asked every 0.5 s. */
export async function goneWithin(nc: NatsConnection, stream: string, waitMs: number): Promise<boolean> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    if ((await find(nc, stream)).kind === "none") return true;
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 500));
  }
}
