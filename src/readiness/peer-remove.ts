/**
 * `$RESTORE.peer-remove.<stream>`: takes an offline peer out of a stream's RAFT group
 * (`$JS.API.STREAM.PEER.REMOVE.<stream>`) so that the cluster places a new replica, then waits
 * until that replica is current. Every refusal happens before anything is sent to the server:
 * no confirm, a peer that is online and current, a removal that would leave fewer healthy peers
 * than the quorum, no spare node. The last matters on 2.9.10, which removes the peer even when it
 * cannot place a replacement (the group shrinks, the API answers "peer remap failed"), where
 * 2.15.3 refuses and keeps it.
 */
import type { NatsConnection } from "@nats-io/nats-core";
import { jsApiRequest, JetStreamApiError } from "../jetstream/jsapi.ts";
import { BackupError, ErrorCode } from "../protocol/errors.ts";
import type { PeerRemoveReply, PeerRemoveRequest, PeerState } from "../protocol/readiness.ts";
import { healthyPeer, isClustered, peersOf, type StreamListing } from "./assess.ts";
import { quorumOf } from "../jetstream/raft-groups.ts";
import { clusterServers } from "./cluster-servers.ts";
import { listStreams } from "./report.ts";

const StreamOffline = 10118;
const StreamNotFound = 10059;

export interface PeerRemoveOptions {
  /** How long the new replica may take to be placed and current. */
  timeoutMs?: number;
  pollMs?: number;
}

/** The stream as STREAM.INFO says; a stream without a leader as STREAM.LIST still describes it. */
async function describe(nc: NatsConnection, stream: string): Promise<StreamListing> {
  try {
    return JSON.parse(await jsApiRequest(nc, `STREAM.INFO.${stream}`)) as StreamListing;
  } catch (err) {
    if (err instanceof JetStreamApiError && err.errCode === StreamNotFound) throw BackupError.notFound(`stream ${stream} not found`);
    // No leader: the server says so (10118, after about 0.5 s), or no one answers at all.
    const leaderless = (err instanceof JetStreamApiError && err.errCode === StreamOffline) || (err instanceof BackupError && err.code === ErrorCode.Unavailable);
    if (!leaderless) throw err;
    const listed = (await listStreams(nc)).listed.find((l) => l.config.name === stream);
    return listed ?? { config: { name: stream }, cluster: {} };
  }
}

export async function removePeer(nc: NatsConnection, stream: string, req: PeerRemoveRequest, opts: PeerRemoveOptions = {}): Promise<PeerRemoveReply> {
  const untouched = "nothing was changed";
  if (req.confirm !== true) {
    throw BackupError.badRequest(`removing peer ${req.peer} from stream ${stream} changes the cluster: send "confirm":true; ${untouched}`);
  }
  const before = await describe(nc, stream);
  if (!before.cluster || !isClustered(before)) throw BackupError.badRequest(`stream ${stream} is not clustered: it has no peers to remove; ${untouched}`);
  const peers = peersOf(before);
  const target = peers.find((p) => p.name === req.peer);
  if (!target) {
    throw BackupError.notFound(`${req.peer} is not a peer of stream ${stream} (its peers: ${peers.map((p) => p.name).join(", ") || "none known"}); ${untouched}`);
  }
  if (target.leader || (!target.offline && target.current)) {
    throw BackupError.conflict(`peer ${req.peer} of stream ${stream} is online and current${target.leader ? " (its leader)" : ""}: only an offline or lagging peer is removed; ${untouched}`);
  }
  const size = Math.max(peers.length, 1);
  const needed = quorumOf(size);
  const left = peers.filter((p) => p !== target && healthyPeer(p)).length;
  if (!before.cluster.leader || left < needed) {
    throw BackupError.conflict(
      `removing peer ${req.peer} would break the quorum of stream ${stream}: ${left} healthy peer${left === 1 ? "" : "s"} would remain of ${size}, ${needed} needed${
        before.cluster.leader ? "" : " (it has no leader: the stream is lost, restore it from a backup)"
      }; ${untouched}`,
    );
  }
  const servers = await clusterServers(nc);
  if (servers.known) {
    const members = new Set(peers.map((p) => p.name));
    const tags = before.config.placement?.tags ?? [];
    const spare = servers.servers.filter((s) => s.jetstream && s.cluster === (before.cluster?.name ?? null) && !members.has(s.name) && tags.every((t) => s.tags.includes(t)));
    if (spare.length === 0) {
      throw BackupError.conflict(
        `no spare node exists in cluster ${before.cluster.name} for a new replica of stream ${stream}${tags.length ? ` (placement tags ${tags.join(", ")})` : ""}: bring ${req.peer} back, or add a server first; ${untouched}`,
      );
    }
  }

  const started = Date.now();
  try {
    await jsApiRequest(nc, `STREAM.PEER.REMOVE.${stream}`, JSON.stringify({ peer: req.peer }));
  } catch (err) {
    if (err instanceof JetStreamApiError && err.errCode === 10075) {
      throw new BackupError(
        ErrorCode.Conflict,
        `the server could not place a new replica of stream ${stream} (${err.serverDescription}): no spare node exists; nats-server before 2.10 may have removed ${req.peer} from its group anyway`,
      );
    }
    throw err;
  }
  const after = await waitForReplacement(nc, stream, req.peer, size, opts);
  const added = after.peers.map((p) => p.name).filter((n) => !peers.some((p) => p.name === n));
  return { stream, removed: req.peer, added, leader: after.leader, peers: after.peers, waited_ms: Date.now() - started };
}

/** Polls the stream's info until `removed` is gone and `size` replicas, the new one included, are current. */
async function waitForReplacement(
  nc: NatsConnection,
  stream: string,
  removed: string,
  size: number,
  { timeoutMs = 60_000, pollMs = 250 }: PeerRemoveOptions,
): Promise<{ leader: string | null; peers: PeerState[] }> {
  const deadline = Date.now() + timeoutMs;
  let last = "no answer yet";
  for (;;) {
    try {
      const info = JSON.parse(await jsApiRequest(nc, `STREAM.INFO.${stream}`)) as StreamListing;
      const peers = peersOf(info);
      last = peers.map((p) => `${p.name}${p.leader ? " (leader)" : ""}${p.offline ? " offline" : p.current ? " current" : ` lag ${p.lag ?? "?"}`}`).join(", ");
      const placed = !peers.some((p) => p.name === removed) && peers.length === size;
      if (placed && info.cluster?.leader && peers.every((p) => !p.offline && (p.leader || p.current))) {
        return { leader: info.cluster.leader, peers };
      }
    } catch (err) {
      last = (err as Error).message;
    }
    if (Date.now() > deadline) {
      throw new BackupError(
        ErrorCode.Unavailable,
        `peer ${removed} was removed from stream ${stream}, but no new replica was placed and current within ${Math.round(timeoutMs / 1000)} s; last seen: ${last}`,
      );
    }
    await new Promise((r) => setTimeout(r, pollMs));
  }
}
