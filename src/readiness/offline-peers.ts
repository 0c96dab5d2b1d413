/**
 * Which servers of the cluster are gone, as an account without system rights can tell: every
 * peer any stream names (STREAM.LIST describes leaderless streams too, or names them `missing`)
 * that does not answer `$SYS.REQ.ACCOUNT.PING.CONNZ` (cluster-servers.ts). A peer the server
 * itself calls `offline` is one it noticed: it shut down cleanly, or the server has not heard
 * from it for about 150 s (its orphan sweep, 5 × 30 s, on 2.9.10 to 2.14). A killed server is
 * unnoticed until then, and the meta group of 2.9.10 still places new streams on it. A server
 * that holds no stream at all is not known here.
 */
import type { NatsConnection } from "@nats-io/nats-core";
import { peersOf } from "./assess.ts";
import { clusterServers, type ServerSeen } from "./cluster-servers.ts";
import { listStreams } from "./report.ts";

export interface ClusterHealth {
  /** False: no server answered the ping, so nothing is known (the account may not reach it). */
  known: boolean;
  /** The JetStream servers of the connection's cluster that answered. */
  online: ServerSeen[];
  /** Peers of some stream that did not answer and that the server has not called offline. */
  unnoticed: string[];
  /** Peers of some stream that did not answer and that the server calls offline. */
  noticed: string[];
}

/**
 * Servers this process removed from their cluster's meta group (`$RESTORE.server-remove`), by
 * `cluster/name`: no longer a place for new streams, though 2.15 keeps naming them among the peers
 * of a stream it could not re-place. Forgotten once one answers again.
 */
const removedServers = new Set<string>();

let removals = 0;

export function serverRemoved(cluster: string | undefined, name: string): void {
  removedServers.add(`${cluster ?? ""}/${name}`);
  removals++;
}

/** How many servers this process removed so far: a look at the cluster from before a removal is stale. */
export const serverRemovals = () => removals;

export async function clusterHealth(nc: NatsConnection): Promise<ClusterHealth> {
  const cluster = nc.info?.cluster;
  const [servers, { listed }] = await Promise.all([clusterServers(nc), listStreams(nc)]);
  const online = servers.servers.filter((s) => s.jetstream && (cluster === undefined || s.cluster === cluster));
  if (!servers.known) return { known: false, online, unnoticed: [], noticed: [] };
  const answered = new Set(servers.servers.map((s) => s.name));
  for (const name of answered) removedServers.delete(`${cluster ?? ""}/${name}`);
  const silent = new Map<string, boolean>(); // name → the server calls it offline
  for (const listing of listed) {
    if (cluster !== undefined && listing.cluster?.name !== undefined && listing.cluster.name !== cluster) continue;
    for (const peer of peersOf(listing)) {
      if (answered.has(peer.name) || removedServers.has(`${cluster ?? ""}/${peer.name}`)) continue;
      silent.set(peer.name, (silent.get(peer.name) ?? false) || peer.offline);
    }
  }
  const names = (offline: boolean) => [...silent].filter(([, o]) => o === offline).map(([n]) => n).sort();
  return { known: true, online, unnoticed: names(false), noticed: names(true) };
}
