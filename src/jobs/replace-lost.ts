/**
 * `replace_lost` on `$RESTORE.stream.<stream>`: a stream whose every replica is on a server that
 * is gone keeps its name in the meta group, so a restore would be refused ("already exist").
 * Here its assignment is deleted through the meta leader first, and only when no replica of it
 * is online: every peer STREAM.LIST names for it answers no `$SYS.REQ.ACCOUNT.PING.CONNZ`. A
 * stream the server lists only as `missing` (no peers given: 2.9.10 until it notices the
 * servers are gone) is refused, as one whose replicas cannot be told. Every refusal happens
 * before anything changes.
 */
import type { NatsConnection } from "@nats-io/nats-core";
import type { Logger } from "pino";
import { jsApiRequest, JetStreamApiError, JsErrCode } from "../jetstream/jsapi.ts";
import { BackupError } from "../protocol/errors.ts";
import { peersOf, type StreamListing } from "../readiness/assess.ts";
import { clusterServers } from "../readiness/cluster-servers.ts";
import { listStreams } from "../readiness/report.ts";
import { deleteUntilGone } from "./unanswered-restore.ts";

const untouched = "nothing was changed";

/** Removes `stream` when every replica of it is gone: what was done (for the job's warnings) and where it was; null when there is no such stream. */
export async function removeLostStream(nc: NatsConnection, stream: string, log: Logger): Promise<{ note: string; peers: string[] } | null> {
  try {
    const info = JSON.parse(await jsApiRequest(nc, `STREAM.INFO.${stream}`, "", 3000)) as StreamListing;
    throw BackupError.conflict(
      `stream ${stream} is not lost: ${info.cluster?.leader ?? "a server"} leads it; replace_lost only replaces a stream whose every replica is gone; ${untouched}`,
    );
  } catch (err) {
    if (err instanceof JetStreamApiError && err.errCode === JsErrCode.StreamNotFound) return null;
    // No leader: 10118 (the stream is offline), or no answer at all.
    const leaderless = err instanceof JetStreamApiError || (err instanceof BackupError && err.description.startsWith("JetStream did not answer"));
    if (!leaderless) throw err;
  }
  const { listed, missing } = await listStreams(nc);
  const listing = listed.find((l) => l.config.name === stream);
  const peers = listing ? peersOf(listing).map((p) => p.name) : [];
  if (!listing || peers.length === 0) {
    throw BackupError.conflict(
      `stream ${stream} has no leader, but the server does not say where its replicas are${missing.includes(stream) ? " (it lists the stream as missing)" : ""}, so whether one is still online cannot be told: ` +
        `try again once the server has noticed its servers are gone (about 2.5 min after they stopped answering), or bring them back; ${untouched}`,
    );
  }
  const servers = await clusterServers(nc);
  if (!servers.known) throw BackupError.conflict(`which servers are online cannot be told (${servers.note}); ${untouched}`);
  const online = peers.filter((p) => servers.servers.some((s) => s.name === p));
  if (online.length) {
    throw BackupError.conflict(
      `replica${online.length > 1 ? "s" : ""} of stream ${stream} on ${online.join(", ")} ${online.length > 1 ? "are" : "is"} online: replace_lost only replaces a stream whose every replica is gone (bring its quorum back, or remove the lost peers with $RESTORE.peer-remove); ${untouched}`,
    );
  }
  const failed = await deleteUntilGone(nc, stream);
  if (failed !== null) throw new BackupError(503, `stream ${stream}, lost on ${peers.join(", ")}, could not be removed${failed}; nothing was restored`);
  log.warn({ stream, peers }, "removed a stream whose every replica was gone, to restore it");
  return { note: `stream ${stream}, whose every replica was on a server that is gone (${peers.join(", ")}), was removed before the restore`, peers };
}
