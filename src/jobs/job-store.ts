/** Job records in a KV bucket, so that every instance can answer `$BACKUP.job.<id>`. */
import type { JetStreamClient } from "@nats-io/jetstream";
import { Kvm, type KV } from "@nats-io/kv";
import { JobRecord } from "../protocol/schemas.ts";

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

  async put(record: JobRecord): Promise<void> {
    await this.kv.put(record.id, JSON.stringify(record));
  }

  /** Jobs whose record still says running, with the revision to update them against. */
  async running(): Promise<{ record: JobRecord; revision: number }[]> {
    const out: { record: JobRecord; revision: number }[] = [];
    for await (const key of await this.kv.keys()) {
      const entry = await this.kv.get(key);
      if (!entry || entry.operation !== "PUT") continue;
      const parsed = JobRecord.safeParse(entry.json());
      if (parsed.success && parsed.data.state === "running") out.push({ record: parsed.data, revision: entry.revision });
    }
    return out;
  }

  /** Replaces a record only if nobody wrote it since `revision`; false when someone did. */
  async replace(record: JobRecord, revision: number): Promise<boolean> {
    try {
      await this.kv.update(record.id, JSON.stringify(record), revision);
      return true;
    } catch {
      return false;
    }
  }

  async get(id: string): Promise<JobRecord | null> {
    const entry = await this.kv.get(id);
    if (!entry || entry.operation !== "PUT") return null;
    const parsed = JobRecord.safeParse(entry.json());
    return parsed.success ? parsed.data : null;
  }
}
