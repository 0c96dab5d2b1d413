/**
 * One stream's readiness from what the server said of it (STREAM.LIST's `config` and `cluster`),
 * the servers online, and its newest backup: no I/O, so that every rule here is plain to read
 * and test. The rules (issue 15): a cluster brings a stream back by itself only with 3 or more
 * replicas, a quorum (floor(R/2)+1) among the healthy ones, a spare node in its cluster for the
 * new replica, and the failed peer removed from its group.
 */
import { Verdict, type PeerState, type StreamReadiness } from "../protocol/readiness.ts";
import type { HeldBackup } from "./newest-backups.ts";
import type { ClusterServers } from "./cluster-servers.ts";
import { isClusteredGroup, quorumOf } from "../jetstream/raft-groups.ts";

/** What STREAM.LIST (or STREAM.INFO) says of a stream, the members the report reads. */
export interface StreamListing {
  config: { name: string; storage?: string; num_replicas?: number; placement?: { cluster?: string; tags?: string[] } | null };
  cluster?: {
    name?: string;
    leader?: string;
    replicas?: { name: string; current?: boolean; offline?: boolean; lag?: number; active?: number }[] | null;
  };
}

export interface AssessInput {
  listing: StreamListing;
  servers: ClusterServers;
  backup: HeldBackup | undefined;
  now: Date;
  recentMs: number;
  /** Set when the stream is one of the service's own buckets: which one. */
  serviceBucket?: string;
}

/** Whether the stream lives in a JetStream cluster (isClusteredGroup). */
export function isClustered(listing: StreamListing): boolean {
  return isClusteredGroup(listing.cluster);
}

/** The stream's replicas, the leader first, as the report's `peers` shows them. */
export function peersOf(listing: StreamListing): PeerState[] {
  const cluster = listing.cluster;
  if (!cluster || !isClustered(listing)) return [];
  const peers: PeerState[] = [];
  if (cluster.leader) peers.push({ name: cluster.leader, leader: true, current: true, offline: false });
  for (const r of cluster.replicas ?? []) {
    peers.push({
      name: r.name,
      leader: false,
      current: r.current === true,
      offline: r.offline === true,
      ...(r.lag !== undefined ? { lag: r.lag } : {}),
      // The server reports nanoseconds.
      ...(r.active !== undefined ? { active_ms: Math.round(r.active / 1e6) } : {}),
    });
  }
  return peers;
}

/** A peer that counts toward the quorum now. */
export const healthyPeer = (p: PeerState) => p.leader || (!p.offline && p.current);

export function kindOf(stream: string): StreamReadiness["kind"] {
  if (stream.startsWith("KV_")) return "kv";
  if (stream.startsWith("OBJ_")) return "object_store";
  return "stream";
}

export function assessStream(input: AssessInput): StreamReadiness {
  const { listing, servers, now, recentMs } = input;
  const name = listing.config.name;
  const clustered = isClustered(listing);
  const replicas = listing.config.num_replicas ?? 1;
  const peers = peersOf(listing);
  // The group as it is (2.9 can leave a group smaller than num_replicas); not clustered: one copy, always there.
  const size = clustered ? Math.max(peers.length, 1) : 1;
  const needed = quorumOf(size);
  const healthy = clustered ? peers.filter(healthyPeer).length : 1;
  const leader = clustered ? (listing.cluster?.leader ?? null) : null;
  const holds = clustered ? leader !== null && healthy >= needed : true;
  const offline = peers.filter((p) => p.offline).map((p) => p.name);
  const clusterName = listing.cluster?.name ?? null;

  const spare = spareNodes(listing, peers, servers);
  const recovery = automaticRecovery(size, healthy, needed, spare, clustered, clusterName);

  const backup = input.backup
    ? (() => {
        const ageMs = Math.max(0, now.getTime() - Date.parse(input.backup.completed));
        return { ...input.backup, age_seconds: Math.round(ageMs / 1000), recent: ageMs <= recentMs };
      })()
    : null;

  const { verdict, reason, action } = judge({
    name,
    size,
    holds,
    healthy,
    needed,
    offline,
    spare,
    clusterName,
    backup,
    recoveryReason: recovery.reason,
    automatic: recovery.automatic,
    serviceBucket: input.serviceBucket,
  });

  return {
    stream: name,
    kind: kindOf(name),
    ...(input.serviceBucket !== undefined ? { service_bucket: input.serviceBucket } : {}),
    storage: listing.config.storage ?? "file",
    replicas,
    cluster: clusterName,
    leader,
    peers,
    quorum: { needed, healthy, holds },
    recovery,
    backup,
    verdict,
    reason,
    action,
  };
}

/**
 * Servers of the stream's cluster that could take a new replica: online (they answered), running
 * JetStream, holding none of its replicas, carrying every placement tag. null: not known.
 */
function spareNodes(listing: StreamListing, peers: PeerState[], servers: ClusterServers): string[] | null {
  if (!servers.known || !listing.cluster || !isClustered(listing)) return null;
  const members = new Set(peers.map((p) => p.name));
  const tags = listing.config.placement?.tags ?? [];
  return servers.servers
    .filter((s) => s.jetstream && s.cluster === (listing.cluster?.name ?? null) && !members.has(s.name) && tags.every((t) => s.tags.includes(t)))
    .map((s) => s.name);
}

function automaticRecovery(
  size: number,
  healthy: number,
  needed: number,
  spare: string[] | null,
  clustered: boolean,
  cluster: string | null,
): StreamReadiness["recovery"] {
  if (!clustered) return { automatic: false, spare_nodes: spare, reason: "not clustered: the server holds its only copy" };
  if (size < 3) return { automatic: false, spare_nodes: spare, reason: `${size} replica${size === 1 ? "" : "s"}: losing one node ${size === 1 ? "loses the stream" : "loses its quorum"}` };
  if (healthy - 1 < needed) return { automatic: false, spare_nodes: spare, reason: `${healthy} healthy of ${size}: losing one more breaks the quorum of ${needed}` };
  if (spare === null) return { automatic: null, spare_nodes: null, reason: `the servers of cluster ${cluster} could not be counted: whether a spare node exists is not known` };
  if (spare.length === 0) return { automatic: false, spare_nodes: spare, reason: `no spare node in cluster ${cluster} for a new replica (every online JetStream server with its placement tags holds one)` };
  return { automatic: true, spare_nodes: spare, reason: `the quorum holds without any one node, and ${spare.join(", ")} can take a new replica` };
}

interface Judged {
  verdict: StreamReadiness["verdict"];
  reason: string;
  action: string;
}

function judge(f: {
  name: string;
  size: number;
  holds: boolean;
  healthy: number;
  needed: number;
  offline: string[];
  spare: string[] | null;
  clusterName: string | null;
  backup: StreamReadiness["backup"];
  recoveryReason: string;
  automatic: boolean | null;
  serviceBucket: string | undefined;
}): Judged {
  const { name, backup } = f;
  const offlineText = f.offline.join(", ");
  const backupText = backup ? `backup ${backup.id} (completed ${ago(backup.age_seconds)} ago)` : null;
  const backUpCall = `$BACKUP.stream.${name}`;

  if (!f.holds) {
    const why =
      f.size === 1 ? `its only replica${offlineText ? ` (${offlineText})` : ""} is offline` : `quorum gone: ${f.healthy} healthy of ${f.size}, ${f.needed} needed${offlineText ? `; offline: ${offlineText}` : ""}`;
    const bringBack = offlineText ? `bring ${offlineText} back with ${f.offline.length === 1 ? "its" : "their"} storage` : "bring its nodes back";
    return {
      verdict: Verdict.lost,
      reason: why,
      action: backupText
        ? `restore from ${backupText}: $RESTORE.stream.${name} {"replace_lost":true}; or ${bringBack}${serverRemoveHint(f.offline)}`
        : `no backup holds it: only if you ${bringBack} does it come back${serverRemoveHint(f.offline)}`,
    };
  }
  if (f.offline.length > 0) {
    const first = f.offline[0] as string;
    // (The server stays in the meta group, where new streams may still be placed: see serverRemoveHint.)
    const remove = `$RESTORE.peer-remove.${name} {"peer":"${first}","confirm":true}`;
    const action =
      f.spare === null
        ? `remove peer ${first} to re-replicate (${remove}), if cluster ${f.clusterName} has a spare node: its servers could not be counted`
        : f.spare.length > 0
          ? `remove peer ${first} to re-replicate onto ${f.spare.join(" or ")}: ${remove}`
          : `no spare node in cluster ${f.clusterName}: bring ${offlineText} back, or add a server and then remove peer ${first}`;
    return { verdict: Verdict.degraded, reason: `quorum holds (${f.healthy} healthy of ${f.size}, ${f.needed} needed); offline: ${offlineText}`, action };
  }
  if (f.size < 3) {
    const copies = f.size === 1 ? "one copy" : "2 replicas: losing either node breaks its quorum";
    const reason = `${copies}; only a backup can recover it${backupText ? `; newest: ${backupText}${backup?.recent ? "" : ", not recent"}` : "; it has none"}`;
    const action = f.serviceBucket
      ? `raise it to 3 replicas (the ${f.serviceBucket}: the service cannot back up its own buckets)`
      : backup?.recent
        ? "keep backing it up; raise it to 3 replicas for automatic recovery"
        : `back it up now (${backUpCall}) and raise it to 3 replicas for automatic recovery`;
    return { verdict: Verdict.singleCopy, reason, action };
  }
  const spareNote = f.automatic === false ? `; ${f.recoveryReason}` : f.automatic === null ? `; ${f.recoveryReason}` : "";
  if (!f.serviceBucket && !backup?.recent) {
    return {
      verdict: Verdict.replicatedNoRecentBackup,
      reason: `${f.size} replicas, quorum holds; ${backupText ? `newest ${backupText}, not recent` : "no backup"}${spareNote}`,
      action: `back it up (${backUpCall}): replication also copies a mistake, a delete or a purge`,
    };
  }
  return {
    verdict: Verdict.protected,
    reason: `${f.size} replicas, quorum holds${f.serviceBucket ? `; ${f.serviceBucket}: backups do not apply` : `; newest ${backupText}`}${spareNote}`,
    action: f.automatic === false ? `nothing urgent; add a server to cluster ${f.clusterName} so that a lost node's replica can be placed again` : "nothing to do",
  };
}

/** A short age for people: 42s, 5m, 3h12m, 2d4h. */
export function ago(seconds: number): string {
  if (seconds < 60) return `${seconds}s`;
  const m = Math.floor(seconds / 60);
  if (m < 60) return `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h${m % 60 ? `${m % 60}m` : ""}`;
  const d = Math.floor(h / 24);
  return `${d}d${h % 24 ? `${h % 24}h` : ""}`;
}

/**
 * A server gone for good stays in the JetStream meta group, which may still place new streams and
 * restores on it: removing it needs a system-account user (`serve --system-context`).
 */
function serverRemoveHint(offline: string[]): string {
  if (offline.length === 0) return "";
  const calls = offline.map((server) => `$RESTORE.server-remove {"server":"${server}","confirm":true}`).join(", ");
  return `; if ${offline.join(", ")} ${offline.length === 1 ? "is" : "are"} gone for good, remove ${offline.length === 1 ? "it" : "them"} from the cluster first (${calls})`;
}
