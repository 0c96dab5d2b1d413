/**
 * Job records in a KV bucket, so that every instance can answer `$BACKUP.job.<id>`. Every write
 * is compare-and-set on the record's revision: a job and a sweeper that took it over never
 * overwrite each other.
 */
import type { JetStreamClient } from "@nats-io/jetstream";
import { Kvm, type KV } from "@nats-io/kv";
import { JobRecord } from "../protocol/schemas.ts";

export interface StoredRecord {
  record: JobRecord;
  revision: number;
}

/** The KV bucket of the job records of backup bucket `bucket`. */
export const jobBucketOf = (bucket: string) => `${bucket}-jobs`;

/** The KV error for a write whose expected revision was not the key's last. */
const WrongLastSequence = 10071;

/** Someone else wrote the record since the revision the write expected. */
export class RecordChanged extends Error {
  override readonly name = "RecordChanged";
}

export class JobStore {
  private constructor(private readonly kv: KV) {}

  static async open(js: JetStreamClient, opts: { bucket: string; replicas: number; ttlMs: number }): Promise<JobStore> {
    const kv = await new Kvm(js).create(opts.bucket, {
      history: 1,
      replicas: opts.replicas,
      ttl: opts.ttlMs,
      description: "nats-backup: job records",
    });
    return new JobStore(kv);
  }

  /**
   * Writes a record if its last revision is `revision` (0: the record is new); resolves to the new
   * revision, or throws RecordChanged when someone else wrote it since.
   */
  async write(record: JobRecord, revision: number): Promise<number> {
    const value = JSON.stringify(record);
    try {
      return revision === 0 ? await this.kv.create(record.id, value) : await this.kv.update(record.id, value, revision);
    } catch (err) {
      if (isWrongLastSequence(err)) throw new RecordChanged(`job record ${record.id} was written by someone else`, { cause: err });
      throw err;
    }
  }

  /** Jobs whose record still says running, with the revision to update them against. */
  async running(): Promise<StoredRecord[]> {
    const out: StoredRecord[] = [];
    for await (const key of await this.kv.keys()) {
      const stored = await this.entry(key);
      if (stored?.record.state === "running") out.push(stored);
    }
    return out;
  }

  /** Replaces a record only if nobody wrote it since `revision`; false when someone did. */
  async replace(record: JobRecord, revision: number): Promise<boolean> {
    try {
      await this.write(record, revision);
      return true;
    } catch (err) {
      if (err instanceof RecordChanged) return false;
      throw err;
    }
  }

  async get(id: string): Promise<JobRecord | null> {
    return (await this.entry(id))?.record ?? null;
  }

  async entry(id: string): Promise<StoredRecord | null> {
    const entry = await this.kv.get(id);
    if (!entry || entry.operation !== "PUT") return null;
    const parsed = JobRecord.safeParse(entry.json());
    return parsed.success ? { record: parsed.data, revision: entry.revision } : null;
  }
}

function isWrongLastSequence(err: unknown): boolean {
  // The KV client reports it as a JetStream API error with the server's err_code.
  return err instanceof Error && (err as Error & { code?: number }).code === WrongLastSequence;
}
