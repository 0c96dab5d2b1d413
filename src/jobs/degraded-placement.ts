/**
 * Where a restore into a cluster with a dead server may go. nats-server places a new stream on
 * a peer it has not noticed is gone (see readiness/offline-peers.ts), and a restore placed there
 * gets no answer and leaves an empty stream behind (nats-server #4270). Peers are chosen by the
 * server's `offline` flag alone (read in the source up to 2.14), which a killed server gets only
 * after the orphan sweep (5 × 30 s): 2.9.10 placed every such restore on the dead server when it
 * had the most storage; 2.15.3 some (the first new stream right after a kill, one R1 restore in
 * three runs seconds later). So while such a peer exists a restore is placed by the tags of live
 * servers, or refused (503) where the servers have no tags. A
 * placement the request names is kept, unless no live server fits it (503). A peer the server
 * calls offline is left to the server, which never places a stream there while the servers
 * online suffice (2.9.10 skips it; later releases try it last).
 */
import type { NatsConnection } from "@nats-io/nats-core";
import { BackupError, ErrorCode } from "../protocol/errors.ts";
import type { ServerVersion } from "../jetstream/server-version.ts";
import { clusterHealth, serverRemovals } from "../readiness/offline-peers.ts";
import type { ServerSeen } from "../readiness/cluster-servers.ts";

export interface RestorePlacement {
  cluster?: string | undefined;
  tags?: string[] | undefined;
}

export interface PlacementDecision {
  /** The placement to restore with; undefined: as the backup (or the request) has it. */
  placement?: RestorePlacement;
  /** Servers of the cluster that answer nothing (noticed or not): the restore waits longer for a degraded cluster. */
  offline: string[];
  warnings: string[];
}

const fits = (s: ServerSeen, p: RestorePlacement, cluster: string | undefined) =>
  (p.cluster ?? cluster) === (s.cluster ?? undefined) && (p.tags ?? []).every((t) => s.tags.includes(t));

/**
 * The narrowest tag set that `replicas` live servers all hold: the tags those servers share,
 * fewest other live servers matching first, then most tags. Null when no such set exists.
 */
export function liveTags(online: ServerSeen[], replicas: number): string[] | null {
  const tagged = online.filter((s) => s.tags.length > 0).slice(0, 16);
  let best: { tags: string[]; matching: number } | null = null;
  const visit = (start: number, chosen: ServerSeen[]) => {
    if (chosen.length === replicas) {
      const tags = chosen[0]!.tags.filter((t) => chosen.every((s) => s.tags.includes(t))).sort();
      if (tags.length === 0) return;
      const matching = online.filter((s) => tags.every((t) => s.tags.includes(t))).length;
      if (!best || matching < best.matching || (matching === best.matching && tags.length > best.tags.length)) best = { tags, matching };
      return;
    }
    for (let i = start; i < tagged.length; i++) visit(i + 1, [...chosen, tagged[i]!]);
  };
  visit(0, []);
  return (best as { tags: string[] } | null)?.tags ?? null;
}

/** An account restore places many streams one after another: one look at the cluster serves them for a few seconds. */
const looks = new WeakMap<NatsConnection, { at: number; removals: number; health: ReturnType<typeof clusterHealth> }>();

function recentHealth(nc: NatsConnection): ReturnType<typeof clusterHealth> {
  const last = looks.get(nc);
  if (last && Date.now() - last.at < 2000 && last.removals === serverRemovals()) return last.health;
  const health = clusterHealth(nc);
  looks.set(nc, { at: Date.now(), removals: serverRemovals(), health });
  health.catch(() => looks.delete(nc));
  return health;
}

export async function placeRestore(
  nc: NatsConnection,
  stream: string,
  target: ServerVersion | null,
  restore: { replicas: number; requested: RestorePlacement | undefined; saved: RestorePlacement | undefined; gone?: string[] },
): Promise<PlacementDecision> {
  const cluster = nc.info?.cluster;
  if (cluster === undefined) return { offline: [], warnings: [] };
  const health = await recentHealth(nc);
  // A replaced lost stream's peers: gone, though no stream may name them any more.
  const noticed = [...new Set([...health.noticed, ...(restore.gone ?? [])])].filter((p) => !health.unnoticed.includes(p));
  const offline = [...health.unnoticed, ...noticed];
  if (!health.known || offline.length === 0) return { offline, warnings: [] };
  const { replicas, requested, saved } = restore;
  const server = target ? `nats-server ${target.text}` : "this nats-server";
  const gone = `offline: ${offline.join(", ")}`;
  const warnings: string[] = [];

  if (requested?.tags?.length || requested?.cluster) {
    const live = health.online.filter((s) => fits(s, requested, cluster)).length;
    if (live < replicas) {
      throw new BackupError(
        ErrorCode.Unavailable,
        `the placement asked for (${describe(requested)}) fits ${live} live server${live === 1 ? "" : "s"}, and stream ${stream} needs ${replicas} (${gone}): it could only land on servers that are gone; nothing was restored`,
      );
    }
    return { offline, warnings };
  }
  if (saved?.tags?.length || saved?.cluster) {
    const live = health.online.filter((s) => fits(s, saved, cluster)).length;
    if (live >= replicas) return { offline, warnings };
    warnings.push(`the backup's placement (${describe(saved)}) fits ${live} live server${live === 1 ? "" : "s"} (${gone}): placed on live servers instead`);
  }

  if (health.unnoticed.length === 0) {
    // The server knows which peers are gone: it places on live ones by itself.
    return warnings.length ? { placement: { ...saved, tags: [] }, offline, warnings } : { offline, warnings };
  }
  const tags = liveTags(health.online, replicas);
  if (tags) {
    warnings.push(`the cluster has servers that answer nothing (${gone}): placed by tags ${tags.join(", ")}, which only live servers were seen to hold`);
    return { placement: { ...(saved?.cluster ? { cluster: saved.cluster } : {}), tags }, offline, warnings };
  }
  throw new BackupError(
    ErrorCode.Unavailable,
    `the cluster has a server that answers nothing and that ${server} has not noticed is gone (${health.unnoticed.join(", ")}): ` +
      `it places new streams there, and a restore placed there never ends, so stream ${stream} was not restored. ` +
      `Remove the server from the cluster ($RESTORE.server-remove with "confirm":true), bring it back, or restore with a placement naming live servers' tags ` +
      `(the servers have none${health.online.length < replicas ? `; and only ${health.online.length} are live for ${replicas} replicas` : ""}). ` +
      `The server notices a server that stopped answering after about 2.5 min`,
  );
}

/** The replicas and placements a restore asks for: the request's, and the backed-up stream's (backup.json). */
export function savedPlacement(
  backupJson: string,
  req: { replicas?: number | undefined; placement?: RestorePlacement | undefined },
  clustered: boolean,
): { replicas: number; requested: RestorePlacement | undefined; saved: RestorePlacement | undefined } {
  const config = (JSON.parse(backupJson) as { config?: { num_replicas?: number; placement?: RestorePlacement | null } }).config ?? {};
  return {
    replicas: req.replicas ?? (clustered ? Math.max(1, config.num_replicas ?? 1) : 1),
    requested: req.placement,
    saved: config.placement ?? undefined,
  };
}

function describe(p: RestorePlacement): string {
  return [p.cluster ? `cluster ${p.cluster}` : "", p.tags?.length ? `tags ${p.tags.join(", ")}` : ""].filter(Boolean).join(", ");
}
