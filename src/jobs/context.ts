/** What a job's pipeline works with, and the knobs that shape its flow. */
import type { NatsConnection } from "@nats-io/nats-core";
import type { Logger } from "pino";
import type { Catalogue } from "../catalogue/catalogue.ts";
import { KiB, MiB } from "../protocol/schemas.ts";

export interface Tuning {
  /** Snapshot chunk size asked of the server when the request names none. */
  chunkSize: number;
  /** Restore chunks awaiting the server's answer, per restore. */
  restoreWindow: number;
  /** Bytes a bucket read keeps in flight (archive checks, backups read back), per job. */
  readBudgetBytes: number;
  /** A snapshot that sends nothing for this long has failed. */
  snapshotIdleMs: number;
}

export const DefaultTuning: Tuning = {
  chunkSize: 256 * KiB,
  restoreWindow: 16,
  readBudgetBytes: 8 * MiB,
  snapshotIdleMs: 15_000,
};

export interface JobContext {
  /** API requests, the bucket's small objects, job records. */
  nc: NatsConnection;
  /** Bulk data: watching snapshots, reading archives back (may be `nc`). */
  data: NatsConnection;
  catalogue: Catalogue;
  log: Logger;
  tuning: Tuning;
}
