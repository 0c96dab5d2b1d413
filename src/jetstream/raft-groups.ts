/** RAFT groups as the JetStream API describes them: the quorum of a group, and whether a stream's groups are whole. */
import type { NatsConnection } from "@nats-io/nats-core";
import { jsApiRequest, listNames } from "./jsapi.ts";

/** The peers a RAFT group of `size` needs to agree: floor(R/2)+1. */
export const quorumOf = (size: number) => Math.floor(size / 2) + 1;

/** The `cluster` block of a stream's or consumer's INFO. */
export interface GroupInfo {
  name?: string;
  leader?: string;
  replicas?: { current?: boolean; offline?: boolean }[] | null;
}

/**
 * Whether the group is a RAFT group of a JetStream cluster. A server that is not clustered (or a
 * leaf node's hub that is not) still sends a `cluster` block naming itself as leader (2.15.3), but
 * no cluster name and no replicas.
 */
export function isClusteredGroup(group: GroupInfo | undefined): boolean {
  return group !== undefined && (group.name !== undefined || group.leader === undefined || (group.replicas?.length ?? 0) > 0);
}

/** Not clustered, or a leader with every other peer of the group online and current. */
export function isWhole(group: GroupInfo | undefined): boolean {
  if (!isClusteredGroup(group)) return true;
  return Boolean(group?.leader) && (group?.replicas ?? []).every((p) => p.current && !p.offline);
}

/**
 * The groups of `stream` that are not whole now, the stream's own (`stream S`) and its consumers'
 * (`consumer C`), and how many consumers it has. A group whose INFO goes unanswered or is an
 * error (10008 while no leader answers) is not whole.
 */
export async function groupsNotWhole(nc: NatsConnection, stream: string): Promise<{ consumers: number; notWhole: string[] }> {
  const whole = (subject: string) =>
    jsApiRequest(nc, subject, "", 2000).then(
      (text) => isWhole((JSON.parse(text) as { cluster?: GroupInfo }).cluster),
      () => false,
    );
  const notWhole: string[] = [];
  if (!(await whole(`STREAM.INFO.${stream}`))) notWhole.push(`stream ${stream}`);
  const names = await listNames(nc, `CONSUMER.NAMES.${stream}`, "consumers");
  for (const name of names) if (!(await whole(`CONSUMER.INFO.${stream}.${name}`))) notWhole.push(`consumer ${name}`);
  return { consumers: names.length, notWhole };
}
