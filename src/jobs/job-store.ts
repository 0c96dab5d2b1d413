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

  async get(id: string): Promise<JobRecord | null> {
    const entry = await this.kv.get(id);
    if (!entry || entry.operation !== "PUT") return null;
    const parsed = JobRecord.safeParse(entry.json());
    return parsed.success ? parsed.data : null;
  }
}
