/**
 * Request and reply bodies. Requests are strict (an unknown field is a 400); stream and
 * consumer configurations are never modelled here: they pass through as the server wrote them.
 */
import { z } from "zod";
import { DurationPattern } from "./duration.ts";
import { ReadinessSchemas } from "./readiness.ts";

const streamName = z
  .string()
  .min(1)
  .max(255)
  .regex(/^[^\s.*>\/\\]+$/, "a stream name has no spaces, '.', '*', '>' or path separators");

/** A backup id: one subject token, sortable by creation time (ULID). */
export const backupId = z.string().regex(/^[0-9A-HJKMNP-TV-Z]{26}$/, "a backup id is a 26-character ULID");

export const KiB = 1024;
export const MiB = 1024 * KiB;

/** How many completed backups of a stream to keep: the N newest (0: no limit by count). */
const keepLast = z.int().min(0).max(1_000_000);
/** How old a completed backup of a stream may get (0: no limit by age); never removes the stream's newest. */
const maxAge = z.union([
  z.string().regex(DurationPattern, "a duration as the nats CLI writes it (30d, 12h, 1h30m, 1w, 1y) or 0"),
  z.number().min(0).describe("seconds"),
]);

/** A stream's retention, as a backup request sets it and its manifest keeps it. */
export const RetentionPolicy = z.strictObject({
  keep_last: keepLast.optional().describe("keep the N newest completed backups of the stream; 0: no limit by count"),
  max_age: maxAge
    .optional()
    .describe("remove completed backups older than this (never the stream's newest): a duration as the nats CLI writes it (30d, 12h, 1h30m) or seconds; 0: no limit by age"),
});
export type RetentionPolicy = z.infer<typeof RetentionPolicy>;

export const BackupStreamRequest = z.strictObject({
  consumers: z.boolean().default(true).describe("include durable consumers and their state"),
  check: z.boolean().default(false).describe("have the server verify every message checksum first"),
  chunk_size: z
    .int()
    .min(4 * KiB)
    .max(MiB)
    .optional()
    .describe("bytes per snapshot chunk; default 256 KiB, capped at the server's max_payload"),
  wait: z.boolean().default(false).describe("reply when the job ends instead of when it starts"),
  tag: z.string().max(256).optional().describe("a free label kept in the manifest"),
  keep_last: RetentionPolicy.shape.keep_last.describe(
    "the stream's retention from now on, kept in the manifest: keep its N newest completed backups (0: no limit by count)",
  ),
  max_age: RetentionPolicy.shape.max_age.describe(
    "the stream's retention from now on, kept in the manifest: remove its completed backups older than this, never its newest (0: no limit by age)",
  ),
});
export type BackupStreamRequest = z.infer<typeof BackupStreamRequest>;

export const Placement = z.strictObject({
  cluster: z.string().min(1).max(255).optional(),
  tags: z.array(z.string().min(1).max(255)).max(32).optional(),
});

export const RestoreStreamRequest = z.strictObject({
  backup: backupId.optional().describe("the backup to restore; default the newest completed one of the stream"),
  replicas: z.int().min(1).max(5).optional().describe("override the stream's num_replicas"),
  placement: Placement.optional().describe("override the stream's placement"),
  replace_lost: z
    .boolean()
    .optional()
    .describe("the stream exists but every replica of it is on a server that is gone: remove it and restore onto live servers (refused while any replica is online)"),
  wait: z.boolean().default(false).describe("reply when the job ends instead of when it starts"),
});
export type RestoreStreamRequest = z.infer<typeof RestoreStreamRequest>;

export const BackupAccountRequest = z.strictObject({
  data: z.boolean().default(false).describe("also take a full snapshot of each stream (its messages and consumer state)"),
  consumers: z.boolean().default(true).describe("save the durable consumers' configurations (and, with data, their state)"),
  streams: z.array(streamName).min(1).max(100_000).optional().describe("only these streams; default every stream of the account"),
  wait: z.boolean().default(false).describe("reply when the job ends instead of when it starts"),
  tag: z.string().max(256).optional().describe("a free label kept in the manifest"),
});
export type BackupAccountRequest = z.infer<typeof BackupAccountRequest>;

export const RestoreAccountRequest = z.strictObject({
  backup: backupId.optional().describe("the account backup to restore; default the newest one without failed streams"),
  update_streams: z
    .boolean()
    .default(false)
    .describe("edit streams that already exist to the saved configuration (messages kept), and create or update their consumers"),
  data: z.boolean().default(true).describe("restore the messages where the backup holds them; false: configurations only"),
  streams: z.array(streamName).min(1).max(100_000).optional().describe("only these streams of the backup"),
  replicas: RestoreStreamRequest.shape.replicas.describe("override every stream's num_replicas"),
  placement: Placement.optional().describe("override every stream's placement"),
  wait: z.boolean().default(false).describe("reply when the job ends instead of when it starts"),
});
export type RestoreAccountRequest = z.infer<typeof RestoreAccountRequest>;

/** Backups a list reply holds when the request names no limit, and the most it may ask for. */
export const ListLimit = { default: 256, max: 1024 } as const;

export const ListRequest = z.strictObject({
  stream: streamName.optional().describe("only backups of this stream (stream backups)"),
  scope: z.enum(["stream", "account"]).optional().describe("only stream backups, or only account backups"),
  limit: z
    .int()
    .min(1)
    .max(ListLimit.max)
    .default(ListLimit.default)
    .describe("the most backups in the reply (fewer when max_payload would be exceeded)"),
  after: backupId.optional().describe("the `next` of the previous page: only backups older than (with ids below) this one"),
});
export type ListRequest = z.infer<typeof ListRequest>;

/** info, delete and job take no body (or `{}`). */
export const EmptyRequest = z.strictObject({});

const ServerOfBackup = z
  .looseObject({ name: z.string().optional(), version: z.string().optional(), cluster: z.string().optional() })
  .describe("the server the service was connected to when the backup was taken");
const ArchiveFormat = z
  .enum(["v1", "v2"])
  .describe("v1: a tar in S2 (nats-server up to 2.14); v2: NATSARC1 entries in S2 (2.15+), which older servers cannot restore");

export const StreamManifest = z.looseObject({
  type: z.literal("io.nats.backup.v1.manifest"),
  id: backupId,
  scope: z.literal("stream"),
  stream: z.string(),
  stream_created: z
    .string()
    .optional()
    .describe("when the stream was created, as the server said; a restore keeps it, which marks a stream as the restore's own"),
  created: z.string().describe("when the snapshot started, RFC 3339"),
  completed: z.string().describe("when every byte was stored and checked, RFC 3339"),
  size: z.number().describe("bytes of stream.tar.s2"),
  chunks: z.number(),
  sha256: z.string().describe("digest of stream.tar.s2, as the object store writes it: SHA-256=<base64url>"),
  messages: z.number(),
  bytes: z.number().describe("the stream's bytes when the snapshot started"),
  first_seq: z.number(),
  last_seq: z.number(),
  consumers: z.array(z.string()).describe("the consumers the stream had when the snapshot started, included in it unless consumers:false"),
  checked: z.boolean().describe("the server verified message checksums before the snapshot"),
  tag: z.string().optional(),
  retention: z
    // Read leniently: a value this version cannot apply keeps the stream's backups, and the backup is still listed.
    .looseObject({
      keep_last: z.number().optional(),
      max_age: z.union([z.string().describe("a duration"), z.number().describe("seconds")]).optional(),
    })
    .optional()
    .describe("the stream's retention as the backup request set it (keep_last, max_age); the newest backup's is the stream's"),
  objects: z.looseObject({ config: z.string(), archive: z.string(), manifest: z.string() }),
  server: ServerOfBackup,
  archive_format: ArchiveFormat.optional().describe("what the archive is, read from its bytes as they were stored"),
  uncompressed_bytes: z.number().optional().describe("bytes of the tar (v1) or NATSARC1 entries (v2) inside the S2 stream, counted as it was stored"),
});
export type StreamManifest = z.infer<typeof StreamManifest>;

/** One stream's snapshot inside an account backup: the same pair of objects a stream backup has, and what they hold. */
export const StreamData = z.looseObject({
  objects: z.looseObject({ config: z.string().describe("<id>/<stream>/backup.json"), archive: z.string().describe("<id>/<stream>/stream.tar.s2") }),
  stream_created: StreamManifest.shape.stream_created,
  size: z.number(),
  chunks: z.number(),
  sha256: z.string(),
  messages: z.number(),
  bytes: z.number(),
  first_seq: z.number(),
  last_seq: z.number(),
  archive_format: ArchiveFormat,
  uncompressed_bytes: StreamManifest.shape.uncompressed_bytes,
});
export type StreamData = z.infer<typeof StreamData>;

const Failure = z.looseObject({ code: z.number(), description: z.string() });

/** One stream of an account backup, as `<id>/account.json` lists it. */
export const AccountStream = z.looseObject({
  name: z.string(),
  state: z.enum(["completed", "failed"]).describe("failed: nothing of the stream is held, `error` says why"),
  config: z.string().optional().describe("the object holding the stream's configuration as the server gave it: <id>/stream_<stream>.json"),
  consumers: z
    .array(z.looseObject({ name: z.string(), config: z.string().describe("<id>/stream_<stream>_consumer_<consumer>.json") }))
    .describe("the durable consumers whose configuration is held"),
  data: StreamData.optional().describe("the stream's snapshot, when the backup took one"),
  no_data: z.string().optional().describe("data was asked for and not saved (a memory stream the server cannot snapshot): why"),
  error: Failure.optional(),
});
export type AccountStream = z.infer<typeof AccountStream>;

/** `<id>/account.json`: what an account backup holds, stream by stream (read by a restore, not listed). */
export const AccountContents = z.looseObject({
  type: z.literal("io.nats.backup.v1.account_contents"),
  id: backupId,
  streams: z.array(AccountStream),
});
export type AccountContents = z.infer<typeof AccountContents>;

export const AccountManifest = z.looseObject({
  type: z.literal("io.nats.backup.v1.manifest"),
  id: backupId,
  scope: z.literal("account"),
  created: z.string().describe("when the backup started, RFC 3339"),
  completed: z.string().describe("when every object was stored and checked, RFC 3339"),
  data: z.boolean().describe("the backup asked for the streams' data"),
  streams: z.array(z.string()).describe("the streams held (configuration, and data where `data`), by name"),
  streams_with_data: z.number().describe("how many of them have their messages saved"),
  consumers: z.number().describe("durable consumer configurations held, over every stream"),
  failed: z
    .array(z.looseObject({ stream: z.string(), description: z.string() }))
    .describe("streams the backup could not save (deleted meanwhile, snapshot refused); non-empty: the job ended partial"),
  size: z.number().describe("bytes of every stream.tar.s2"),
  messages: z.number().describe("messages in every snapshot"),
  tag: z.string().optional(),
  objects: z.looseObject({ manifest: z.string(), contents: z.string().describe("<id>/account.json") }),
  server: ServerOfBackup,
});
export type AccountManifest = z.infer<typeof AccountManifest>;

export const BackupManifest = z.discriminatedUnion("scope", [StreamManifest, AccountManifest]);
export type BackupManifest = z.infer<typeof BackupManifest>;

export const RestoreResult = z.looseObject({
  stream: z.string(),
  backup: backupId,
  messages: z.number(),
  bytes: z.number(),
  first_seq: z.number(),
  last_seq: z.number(),
  consumers: z.number(),
  replicas: z.number(),
  warnings: z.array(z.string()).optional(),
});
export type RestoreResult = z.infer<typeof RestoreResult>;

/** What an account restore did with one stream or consumer. */
export const RestoreAction = z.enum(["created", "restored", "updated", "unchanged", "skipped", "failed"]);
const RestoredItem = z.looseObject({
  action: RestoreAction.describe(
    "created: from its configuration; restored: from its snapshot, with its messages; updated: its configuration edited to the saved one; unchanged: already as saved; skipped: left alone (`reason`); failed: `error`",
  ),
  reason: z.string().optional(),
  changed: z.array(z.string()).optional().describe("updated: the configuration fields that changed"),
  error: Failure.optional(),
});
export const AccountRestoreResult = z.looseObject({
  backup: backupId,
  streams: z.array(
    RestoredItem.extend({
      stream: z.string(),
      messages: z.number().optional().describe("the stream's messages once restored or created"),
      consumers: z.array(RestoredItem.extend({ name: z.string() })),
    }),
  ),
  warnings: z.array(z.string()).optional(),
});
export type AccountRestoreResult = z.infer<typeof AccountRestoreResult>;

export const AccountBackupOutcome = z.looseObject({
  stream: z.string(),
  state: AccountStream.shape.state,
  data: z.boolean().describe("its messages were saved"),
  no_data: z.string().optional(),
  consumers: z.number(),
  error: Failure.optional(),
});

/** An account backup's result: its manifest, and each stream's outcome. */
export const AccountBackupResult = AccountManifest.extend({
  outcomes: z.array(AccountBackupOutcome).describe("every stream's outcome, in the order they ended"),
});
export type AccountBackupResult = z.infer<typeof AccountBackupResult>;

export const JobState = z.enum(["running", "completed", "partial", "failed"]);
export type JobState = z.infer<typeof JobState>;

export const JobProgress = z.looseObject({
  bytes: z.number().describe("bytes moved so far"),
  bytes_expected: z.number().optional().describe("total bytes, where known (restores)"),
  chunks: z.number(),
  uncompressed_bytes: z.number().optional().describe("stream backups: bytes of the archive decoded so far, as the nats CLI shows them"),
  percent: z.number().optional(),
  rate: z.number().describe("bytes per second since the job started"),
  streams: z
    .looseObject({ done: z.number(), total: z.number(), running: z.array(z.string()).describe("the streams in progress") })
    .optional()
    .describe("account jobs: streams ended of the total"),
});
export type JobProgress = z.infer<typeof JobProgress>;

export const JobRecord = z.looseObject({
  type: z.literal("io.nats.backup.v1.job"),
  id: backupId,
  operation: z
    .enum(["backup", "restore", "import"])
    .describe("import: `nats-backup import` storing a folder as backup <id>; its instance is that process, which answers no $SRV.PING"),
  scope: z.enum(["stream", "account"]),
  stream: z.string().optional().describe("the stream, for a stream job"),
  state: JobState.describe("partial: an account job that ended with some streams or consumers failed (its result says which)"),
  status_subject: z.string(),
  backup: backupId.optional().describe("for a restore: the backup it restores"),
  instance: z.string().describe("the service instance running the job (an import: `nats-backup import <pid>@<host>`)"),
  tenant: z.string().optional().describe("the tenant (account) the job is for, when the service serves several"),
  waiting: z
    .string()
    .optional()
    .describe("present while the job waits for a slot under the process-wide job limit its tenants share: what it waits for"),
  created: z.string(),
  updated: z.string(),
  ended: z.string().optional(),
  progress: JobProgress,
  result: z.union([StreamManifest, RestoreResult, AccountBackupResult, AccountManifest, AccountRestoreResult]).optional(),
  error: z.looseObject({ code: z.number(), description: z.string() }).optional(),
});
export type JobRecord = z.infer<typeof JobRecord>;

/** The reply to a backup or restore request with `wait:false`. */
export const JobStarted = z.looseObject({
  id: backupId,
  operation: z.enum(["backup", "restore"]),
  scope: z.enum(["stream", "account"]),
  stream: z.string().optional(),
  state: z.literal("running"),
  status_subject: z.string(),
  backup: backupId.optional(),
});
export type JobStarted = z.infer<typeof JobStarted>;

export const ListReply = z.looseObject({
  backups: z.array(BackupManifest).describe("completed backups, newest first"),
  next: backupId.optional().describe("present only when more backups remain: send it as `after` for the next page"),
});
export type ListReply = z.infer<typeof ListReply>;

export const PruneRequest = z.strictObject({
  stream: streamName.optional().describe("only this stream's backups; default every stream's"),
  keep_last: RetentionPolicy.shape.keep_last.describe(
    "with max_age, replaces the streams' own policies for this prune; without either, each stream's policy applies",
  ),
  max_age: RetentionPolicy.shape.max_age.describe(
    "with keep_last, replaces the streams' own policies for this prune; without either, each stream's policy applies",
  ),
  dry_run: z.boolean().default(false).describe("remove nothing: reply what would be removed"),
});
export type PruneRequest = z.infer<typeof PruneRequest>;

const PruneReason = z.enum(["keep_last", "max_age"]);
export const PrunedBackup = z.looseObject({
  id: backupId,
  reason: PruneReason.describe("keep_last: beyond the N newest; max_age: older than max_age"),
  created: z.string(),
});
export const SkippedBackup = PrunedBackup.extend({
  code: z.number().describe("why it was not removed, as an error code: 409 while a restore (or a delete) holds it"),
  description: z.string(),
});
export const PruneReply = z.looseObject({
  dry_run: z.boolean(),
  streams: z
    .array(
      z.looseObject({
        scope: z.enum(["stream", "account"]).describe("account: the account backups, kept and removed as one group"),
        stream: z.string().optional().describe("the stream, for stream backups"),
        policy: RetentionPolicy.loose().describe("the policy applied to the stream"),
        removed: z.array(PrunedBackup).describe("removed (dry_run: would be removed), oldest first"),
        skipped: z.array(SkippedBackup).describe("due for removal but not removed: in use by a restore, or the removal failed"),
      }),
    )
    .describe("the streams (and the account backups) that had backups due for removal"),
  more: z.boolean().describe("more backups are due than one prune removes: send the request again"),
});
export type PruneReply = z.infer<typeof PruneReply>;
export const DeleteReply = z.looseObject({ id: backupId, deleted: z.literal(true), objects: z.number() });
export type DeleteReply = z.infer<typeof DeleteReply>;

/** What `$BACKUP.verify.<id>` found in one stream's archive. */
export const VerifiedArchive = z.looseObject({
  stream: z.string(),
  ok: z.boolean().describe("the archive is whole: digest, every frame's CRC, its structure, its stream and configuration agree, no errors.txt"),
  problems: z.array(z.string()).describe("what is wrong, in words; empty when ok"),
  format: ArchiveFormat.optional().describe("absent when the archive could not be read far enough to tell"),
  compressed_bytes: z.number().describe("bytes of stream.tar.s2 read"),
  uncompressed_bytes: z.number().describe("bytes decoded from it"),
  frames: z.number().describe("S2 frames read, each CRC-checked"),
  entries: z.number().describe("v1: tar entries (files); v2: records (state, consumers, messages)"),
  blocks: z.number().optional().describe("v1: message block files (msgs/*.blk)"),
  messages: z.number().optional().describe("v2: message records"),
  consumers: z.array(z.string()).describe("the consumers the archive holds"),
});
export type VerifiedArchive = z.infer<typeof VerifiedArchive>;

export const VerifyReply = z.looseObject({
  id: backupId,
  scope: z.enum(["stream", "account"]),
  ok: z.boolean().describe("every archive of the backup is whole"),
  streams: z.array(VerifiedArchive).describe("one entry per archive read: the stream's, or each stream with data of an account backup"),
});
export type VerifyReply = z.infer<typeof VerifyReply>;

export const ErrorReply = z.looseObject({
  error: z.looseObject({ code: z.number(), description: z.string() }),
});

/** Everything protocol/ documents, by file name. */
export const ProtocolSchemas = {
  "backup_stream_request": BackupStreamRequest,
  "restore_stream_request": RestoreStreamRequest,
  "backup_account_request": BackupAccountRequest,
  "restore_account_request": RestoreAccountRequest,
  "list_request": ListRequest,
  "empty_request": EmptyRequest,
  "job_started": JobStarted,
  "job_record": JobRecord,
  "backup_manifest": BackupManifest,
  "account_contents": AccountContents,
  "list_reply": ListReply,
  "delete_reply": DeleteReply,
  "prune_request": PruneRequest,
  "prune_reply": PruneReply,
  "verify_reply": VerifyReply,
  "error_reply": ErrorReply,
  ...ReadinessSchemas,
} as const;
