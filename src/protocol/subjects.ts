/** The subjects the service answers and publishes on. One place, so the service, the CLI and the docs agree. */

export const ServiceName = "backup" as const;
export const QueueGroup = "q" as const;

export const Subjects = {
  backupStream: (stream: string) => `$BACKUP.stream.${stream}`,
  restoreStream: (stream: string) => `$RESTORE.stream.${stream}`,
  backupAccount: "$BACKUP.account",
  restoreAccount: "$RESTORE.account",
  list: "$BACKUP.list",
  info: (id: string) => `$BACKUP.info.${id}`,
  delete: (id: string) => `$BACKUP.delete.${id}`,
  verify: (id: string) => `$BACKUP.verify.${id}`,
  prune: "$BACKUP.prune",
  job: (id: string) => `$BACKUP.job.${id}`,
  status: (id: string) => `$BACKUP.status.${id}`,
  report: "$BACKUP.report",
  peerRemove: (stream: string) => `$RESTORE.peer-remove.${stream}`,
  serverRemove: "$RESTORE.server-remove",
  statusAll: "$BACKUP.status.>",
} as const;

/**
 * Micro endpoints: the subject each listens on, and the metadata `nats micro info backup` shows.
 * `request` and `reply` name JSON Schemas in protocol/schemas/.
 */
export const Endpoints = {
  "backup-stream": {
    subject: "$BACKUP.stream.*",
    description: "Back up the stream named by the last token into the bucket",
    request: "backup_stream_request",
    reply: "job_started (wait:false) or job_record (wait:true)",
  },
  "restore-stream": {
    subject: "$RESTORE.stream.*",
    description: "Restore the stream named by the last token from a backup (default: its newest)",
    request: "restore_stream_request",
    reply: "job_started (wait:false) or job_record (wait:true)",
  },
  "backup-account": {
    subject: "$BACKUP.account",
    description: "Back up every stream's and durable consumer's configuration of the account, with data:true their messages too",
    request: "backup_account_request",
    reply: "job_started (wait:false) or job_record (wait:true)",
  },
  "restore-account": {
    subject: "$RESTORE.account",
    description: "Restore the streams and consumers of an account backup (default: the newest without failed streams)",
    request: "restore_account_request",
    reply: "job_started (wait:false) or job_record (wait:true)",
  },
  list: {
    subject: "$BACKUP.list",
    description: "List completed backups, newest first, a page at a time (limit, after; the reply's next)",
    request: "list_request",
    reply: "list_reply",
  },
  info: {
    subject: "$BACKUP.info.*",
    description: "The manifest of the backup named by the last token",
    request: "empty_request",
    reply: "backup_manifest",
  },
  delete: {
    subject: "$BACKUP.delete.*",
    description: "Remove every object of the backup named by the last token",
    request: "empty_request",
    reply: "delete_reply",
  },
  verify: {
    subject: "$BACKUP.verify.*",
    description: "Read the backup named by the last token through and check it: digest, every S2 frame, the tar or v2 structure, its stream and configuration, no errors.txt",
    request: "empty_request",
    reply: "verify_reply",
  },
  prune: {
    subject: "$BACKUP.prune",
    description: "Remove old backups by retention policy (keep_last, max_age); dry_run only says which",
    request: "prune_request",
    reply: "prune_reply",
  },
  job: {
    subject: "$BACKUP.job.*",
    description: "The record of the job named by the last token, while it runs and after it ended",
    request: "empty_request",
    reply: "job_record",
  },
  report: {
    subject: "$BACKUP.report",
    description: "Disaster-recovery readiness: each stream's replicas, peers, quorum, automatic recovery, newest backup and verdict, worst first",
    request: "report_request",
    reply: "report_reply",
  },
  "peer-remove": {
    subject: "$RESTORE.peer-remove.*",
    description: "Remove an offline peer from the stream named by the last token so the cluster places a new replica (confirm:true); replies once it is current",
    request: "peer_remove_request",
    reply: "peer_remove_reply",
  },
  "server-remove": {
    subject: "$RESTORE.server-remove",
    description: "Remove a server that is gone from the JetStream meta group (confirm:true), through the service's system-account connection",
    request: "server_remove_request",
    reply: "server_remove_reply",
  },
} as const;
export type EndpointName = keyof typeof Endpoints;

/** The last token of a subject such as `$BACKUP.stream.ORDERS`. */
export function lastToken(subject: string): string {
  return subject.slice(subject.lastIndexOf(".") + 1);
}

/** A stream name as nats-server accepts it: no whitespace, no `.`, `*`, `>`, path separators. */
export function isValidStreamName(name: string): boolean {
  return name.length > 0 && name.length <= 255 && !/[\s.*>\/\\\x00-\x1f\x7f]/.test(name);
}
