/** RAFT groups as the JetStream API describes them: the quorum of a group, and whether a stream's groups are whole. */
import type { NatsConnection } from "@nats-io/nats-core";
import { jsApiRequest, listNames } from "./jsapi.ts";

/** The peers a RAFT group of `size` needs to agree: floor(R/2)+1. */
export const quorumOf = (size: number) => Math.floor(size / 2) + 1;

/** The `cluster` block of a stream's or consumer's INFO. */
export interface GroupInfo {
  name?: string;
  leader?: string;
  replicas?: { name?: string; current?: boolean; offline?: boolean }[] | null;
}

/**
 * Whether the group is a RAFT group of a JetStream cluster. A server that is not clustered (or a
 * leaf node's hub that is not) still sends a `cluster` block naming itself as leader (2.15.3), but
 * no cluster name and no replicas.
 */
export function isClusteredGroup(group: GroupInfo | undefined): boolean {
  return group !== undefined && (group.name !== undefined || group.leader === undefined || (group.replicas?.length ?? 0) > 0);
}

/**
 * Why a group of `size` peers (its configured replicas) is not whole, or null when it is: whole
 * is a leader, and each of the other `size - 1` peers listed, online and current. An R1 group is
 * whole with a leader, or when it is not clustered. Counting the peers matters: right after a
 * restore 2.10.27 answers some CONSUMER.INFO of an R3 consumer with no `cluster` block, or with a
 * leader and no replicas, before the consumer's group has formed.
 */
export function notWholeBecause(group: GroupInfo | undefined, size: number): string | null {
  if (size <= 1) return !isClusteredGroup(group) || group?.leader ? null : "no leader";
  if (!group) return "no cluster block";
  if (!group.leader) return "no leader";
  const others = group.replicas ?? [];
  if (others.length !== size - 1) return `leader ${group.leader}, ${others.length} of its ${size - 1} other peers listed`;
  const lagging = others.filter((p) => p.offline || !p.current).map((p) => `${p.name ?? "a peer"} ${p.offline ? "offline" : "not current"}`);
  return lagging.length ? lagging.join(", ") : null;
}

/** One group of a stream as its INFO described it: `stream S` or `consumer C`, whole or not, led by whom. */
export interface GroupState {
  label: string;
  /** Why it is not whole (see `notWholeBecause`); null when it is. */
  notWhole: string | null;
  /** Leader and RAFT group name: a group replaced or re-elected since an earlier look shows a different one. */
  identity: string;
}

interface InfoReply {
  config?: { num_replicas?: number };
  cluster?: GroupInfo & { raft_group?: string };
}

/**
 * The groups of `stream`, the stream's own and its consumers'. A consumer's size is its own
 * `num_replicas`, or the stream's when 0 (never more than the stream's). A group whose INFO goes
 * unanswered or is an error (10008 while no leader answers) is not whole.
 */
export async function streamGroups(nc: NatsConnection, stream: string): Promise<GroupState[]> {
  const look = async (label: string, subject: string, sizeOf: (info: InfoReply) => number): Promise<[GroupState, InfoReply | undefined]> => {
    try {
      const info = JSON.parse(await jsApiRequest(nc, subject, "", 2000)) as InfoReply;
      const c = info.cluster;
      return [{ label, notWhole: notWholeBecause(c, sizeOf(info)), identity: `${c?.raft_group ?? ""}@${c?.leader ?? ""}` }, info];
    } catch (err) {
      return [{ label, notWhole: `INFO: ${(err as Error).message}`, identity: "" }, undefined];
    }
  };
  const [streamGroup, streamInfo] = await look(`stream ${stream}`, `STREAM.INFO.${stream}`, (i) => i.config?.num_replicas ?? 1);
  const streamSize = streamInfo?.config?.num_replicas ?? 1;
  const groups = [streamGroup];
  for (const name of await listNames(nc, `CONSUMER.NAMES.${stream}`, "consumers")) {
    const [group] = await look(`consumer ${name}`, `CONSUMER.INFO.${stream}.${name}`, (i) => Math.min(i.config?.num_replicas || streamSize, streamSize));
    groups.push(group);
  }
  return groups;
}
