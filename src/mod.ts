/** nats-backup: JetStream backup and restore as a NATS micro service. */
export { startBackupService, Defaults, type BackupService, type BackupServiceOptions } from "./service/service.ts";
export { BackupError, ErrorCode, type ApiErrorBody } from "./protocol/errors.ts";
export { Subjects, Endpoints, ServiceName } from "./protocol/subjects.ts";
export type {
  AccountContents,
  AccountManifest,
  AccountRestoreResult,
  BackupAccountRequest,
  BackupManifest,
  BackupStreamRequest,
  RestoreAccountRequest,
  StreamManifest,
  JobRecord,
  JobStarted,
  RestoreResult,
  RestoreStreamRequest,
  VerifiedArchive,
  VerifyReply,
} from "./protocol/schemas.ts";
export type { Tuning } from "./jobs/context.ts";
