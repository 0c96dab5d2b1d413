/** What a job's pipeline works with, and the knobs that shape its flow. */
import type { NatsConnection } from "@nats-io/nats-core";
import type { BulkConnection } from "../bulk/bulk-connection.ts";
import type { Logger } from "pino";
import type { Catalogue } from "../catalogue/catalogue.ts";
import { KiB, MiB } from "../protocol/schemas.ts";

export interface Tuning {
  /** Snapshot chunk size asked of the server when the request names none. */
  chunkSize: number;
  /** Restore chunks awaiting the server's answer, per restore. */
  restoreWindow: number;
  /** Bytes a bucket read keeps in flight (backups read back, archives checked read back), per job. */
  readBudgetBytes: number;
  /** A snapshot that sends nothing for this long has failed. */
  snapshotIdleMs: number;
  /** Snapshot bytes in flight, asked of servers that take `window_size` (2.12.5+). */
  snapshotWindowBytes: number;
  /** Streams an account job works on at once (snapshots taken, restores run). */
  accountParallel: number;
}

export interface Limits {
  /** A stream holding more bytes than this is not backed up (413). */
  maxBackupBytes?: number;
}

export const DefaultTuning: Tuning = {
  chunkSize: 256 * KiB,
  restoreWindow: 16,
  readBudgetBytes: 8 * MiB,
  snapshotIdleMs: 15_000,
  snapshotWindowBytes: 8 * MiB,
  accountParallel: 4,
};

export interface JobContext {
  /** API requests, the bucket's small objects, job records. */
  nc: NatsConnection;
  /**
   * A new connection for one job's bulk data (watching its snapshot or its restore's delivery, reading an archive back);
   * the job closes it. Its own, so that a slow-consumer drop touches no other job or endpoint.
   */
  openBulk(): Promise<BulkConnection>;
  catalogue: Catalogue;
  log: Logger;
  tuning: Tuning;
  limits?: Limits;
}
