/**
 * Disaster-recovery readiness (issue 15): the bodies of `$BACKUP.report` and
 * `$RESTORE.peer-remove.<stream>`, and the verdict codes. Codes are stable strings for scripts
 * and alerts; the words beside them (`reason`, `action`) are for people and may change.
 */
import { z } from "zod";
import { DurationPattern } from "./duration.ts";

/** What a stream's state calls for, worst first in `VerdictOrder`. */
export const Verdict = {
  /** Replicas 3 or more, quorum holds, every peer online, and a recent backup. */
  protected: "protected",
  /** Replicas 3 or more and healthy, but no backup within `recent`. */
  replicatedNoRecentBackup: "replicated_no_recent_backup",
  /** Fewer than 3 replicas: losing one node loses the stream (R1) or its quorum (R2); only a backup brings it back. */
  singleCopy: "single_copy",
  /** The quorum holds but a peer is offline: remove that peer so the cluster places a new replica. */
  degraded: "degraded",
  /** The quorum is gone, or the only replica is offline: restore from a backup (or bring the node back). */
  lost: "lost",
} as const;
export type Verdict = (typeof Verdict)[keyof typeof Verdict];

/** Worst first: the order of the report's streams and of the CLI's table. */
export const VerdictOrder: readonly Verdict[] = [Verdict.lost, Verdict.degraded, Verdict.singleCopy, Verdict.replicatedNoRecentBackup, Verdict.protected];

/** A backup younger than this is recent, when the request names no `recent`. */
export const DefaultRecent = "24h";

const streamName = z
  .string()
  .min(1)
  .max(255)
  .regex(/^[^\s.*>\/\\]+$/, "a stream name has no spaces, '.', '*', '>' or path separators");

const duration = z.union([
  z.string().regex(DurationPattern, "a duration as the nats CLI writes it (30d, 12h, 1h30m, 1w) or seconds"),
  z.number().min(0).describe("seconds"),
]);

export const ReportRequest = z.strictObject({
  streams: z.array(streamName).max(10_000).optional().describe("only these streams (each must exist: a 404 names those that do not); default: every stream of the account"),
  recent: duration
    .default(DefaultRecent)
    .describe("a backup completed within this long counts as recent (a duration as the nats CLI writes it, or seconds); default 24h"),
  offset: z
    .number()
    .int()
    .min(0)
    .default(0)
    .describe("the `next_offset` of the previous page: the report's streams from this position on (each page is a report taken anew)"),
});
export type ReportRequest = z.infer<typeof ReportRequest>;

const VerdictCode = z.enum(Object.values(Verdict) as [Verdict, ...Verdict[]]);
const VerdictCounts = z.strictObject(Object.fromEntries(Object.values(Verdict).map((v) => [v, z.number()])) as Record<Verdict, z.ZodNumber>);
export type VerdictCounts = Record<Verdict, number>;

export const PeerState = z.looseObject({
  name: z.string().describe("the server's name"),
  leader: z.boolean(),
  current: z.boolean().describe("as the stream's leader reports it (an offline peer can stay current for about 10 s)"),
  offline: z.boolean(),
  lag: z.number().optional().describe("operations behind the leader, when the leader says"),
  active_ms: z.number().optional().describe("milliseconds since the leader last heard from it"),
});
export type PeerState = z.infer<typeof PeerState>;

const NewestBackup = z.looseObject({
  id: z.string(),
  scope: z.enum(["stream", "account"]).describe("account: an account backup that holds the stream's data"),
  completed: z.string().describe("RFC 3339"),
  age_seconds: z.number(),
  recent: z.boolean().describe("completed within the request's `recent`"),
});

export const StreamReadiness = z.looseObject({
  stream: z.string(),
  kind: z.enum(["stream", "kv", "object_store"]).describe("kv: a KV bucket (KV_<bucket>); object_store: an object store bucket (OBJ_<bucket>)"),
  service_bucket: z
    .string()
    .optional()
    .describe("set on the service's own buckets (its backups, job records and locks): which one; the service cannot back them up"),
  storage: z.string().describe("file or memory"),
  replicas: z.number(),
  cluster: z.string().nullable().describe("the JetStream cluster that holds it; null on a server that is not clustered"),
  leader: z.string().nullable(),
  peers: z.array(PeerState).describe("every replica, the leader first; empty on a server that is not clustered"),
  quorum: z.looseObject({
    needed: z.number().describe("floor(replicas/2)+1"),
    healthy: z.number().describe("the leader and the peers online and current"),
    holds: z.boolean().describe("a leader, and at least `needed` healthy peers"),
  }),
  recovery: z.looseObject({
    automatic: z
      .boolean()
      .nullable()
      .describe(
        "if one node is lost, can the cluster bring the stream back by itself (replicas >= 3, the quorum holds without that node, a spare node): null when the cluster's servers could not be counted",
      ),
    spare_nodes: z
      .array(z.string())
      .nullable()
      .describe("servers of its cluster that run JetStream, are online, hold no replica of it and carry its placement tags; null: could not be known"),
    reason: z.string(),
  }),
  backup: NewestBackup.nullable().describe("the newest completed backup holding the stream's data (a stream backup, or an account backup with data)"),
  verdict: VerdictCode,
  reason: z.string().describe("why this verdict, for people"),
  action: z.string().describe("what to do, for people"),
});
export type StreamReadiness = z.infer<typeof StreamReadiness>;

export const ReportReply = z.looseObject({
  taken: z.string().describe("when the report was taken, RFC 3339"),
  recent_seconds: z.number().describe("the request's `recent`, in seconds"),
  servers: z.looseObject({
    known: z.boolean().describe("whether the cluster's servers could be counted ($SYS.REQ.ACCOUNT.PING.CONNZ, which every account may ask)"),
    names: z.array(z.looseObject({ name: z.string(), cluster: z.string().nullable(), tags: z.array(z.string()) })).describe("the servers that answered: online"),
    note: z.string().optional().describe("when not known: why"),
  }),
  counts: VerdictCounts.describe("streams per verdict: the readiness metric (also in $SRV.STATS.backup, the report endpoint's data)"),
  single_copy_without_recent_backup: z.number().describe("single_copy streams with no recent backup, the service's own buckets left out: the number to alert on"),
  streams: z
    .array(StreamReadiness)
    .describe("worst verdict first (lost, degraded, single_copy, replicated_no_recent_backup, protected), then by name; from `offset`, as many as fit the server's max_payload"),
  total: z.number().describe("streams in the whole report, every page; `counts` counts them all"),
  next_offset: z.number().optional().describe("present only when more streams remain: send it as `offset` for the next page"),
});
export type ReportReply = z.infer<typeof ReportReply>;

/** The `confirm` of a request that changes the cluster. */
const Confirm = z.boolean().default(false).describe("must be true: the request changes the cluster; without it nothing is touched (400)");

export const PeerRemoveRequest = z.strictObject({
  peer: z.string().min(1).max(255).describe("the server name of the replica to remove, as the report's peers name it"),
  confirm: Confirm,
});
export type PeerRemoveRequest = z.infer<typeof PeerRemoveRequest>;

export const PeerRemoveReply = z.looseObject({
  stream: z.string(),
  removed: z.string().describe("the peer removed"),
  added: z.array(z.string()).describe("the replicas the cluster placed in its stead"),
  leader: z.string().nullable(),
  peers: z.array(PeerState).describe("the stream's peer set once every replica is current"),
  waited_ms: z.number().describe("how long the new replica took to be placed and current"),
});
export type PeerRemoveReply = z.infer<typeof PeerRemoveReply>;

export const ServerRemoveRequest = z.strictObject({
  server: z.string().min(1).max(255).describe("the name of the server to remove from the JetStream cluster's meta group"),
  confirm: Confirm,
});
export type ServerRemoveRequest = z.infer<typeof ServerRemoveRequest>;

export const ServerRemoveReply = z.looseObject({
  server: z.string().describe("the server removed"),
  removed: z.literal(true),
  online: z.array(z.string()).describe("the servers that answered before it was removed"),
});
export type ServerRemoveReply = z.infer<typeof ServerRemoveReply>;

/** The readiness documents protocol/schemas holds, by file name. */
export const ReadinessSchemas = {
  report_request: ReportRequest,
  report_reply: ReportReply,
  peer_remove_request: PeerRemoveRequest,
  peer_remove_reply: PeerRemoveReply,
  server_remove_request: ServerRemoveRequest,
  server_remove_reply: ServerRemoveReply,
} as const;

export const ReadinessDescriptions: Record<keyof typeof ReadinessSchemas, string> = {
  report_request: "The body of a request on $BACKUP.report; an empty body reports every stream with recent = 24h",
  report_reply: "The reply of $BACKUP.report: each stream's replicas, peers, quorum, automatic recovery, newest backup and verdict, worst first, with counts per verdict",
  peer_remove_request: "The body of a request on $RESTORE.peer-remove.<stream>: the offline peer to remove, and confirm:true",
  peer_remove_reply: "The reply of $RESTORE.peer-remove.<stream>: the new peer set, once the replica placed in the removed one's stead is current",
  server_remove_request: "The body of a request on $RESTORE.server-remove: the server that is gone, and confirm:true",
  server_remove_reply: "The reply of $RESTORE.server-remove: the server removed from the meta group",
};
