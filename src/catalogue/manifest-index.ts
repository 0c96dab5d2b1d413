/**
 * The bucket's manifests, kept in memory by an ordered consumer on its metadata subjects, so that
 * `$BACKUP.list` does not read every manifest from the server: during a backup the server is busy
 * storing chunks, and a list made of server reads (the subjects, then each manifest) waited three
 * times as long as a PING there.
 *
 * Before it answers, the index asks its consumer how far the stream is (one request) and waits
 * until it has applied that much: a list shows every manifest stored before it was asked for,
 * whoever wrote it. When that takes too long (the consumer is being recreated, the server is
 * away), it answers null and the caller reads the bucket.
 */
import { DeliverPolicy, type Consumer, type ConsumerMessages, type JetStreamClient } from "@nats-io/jetstream";
import type { BackupManifest } from "../protocol/schemas.ts";
import { metaSubject, streamOf, type ObjectMetaRecord } from "./object-format.ts";

/** The manifest an object's metadata holds (null: none, or deleted). */
export type ManifestOf = (meta: ObjectMetaRecord) => BackupManifest | null;

export class ManifestIndex {
  #manifests = new Map<string, BackupManifest>();
  /** Stream sequence of the last message applied, and the consumer's pending count after it. */
  #lastSeq = 0;
  #lastPending = 0;
  #waiters = new Set<() => void>();
  #messages: ConsumerMessages | null = null;

  private constructor(
    private readonly consumer: Consumer,
    private readonly manifestOf: ManifestOf,
  ) {}

  /** Starts following the bucket's metadata. */
  static async start(js: JetStreamClient, bucket: string, manifestOf: ManifestOf): Promise<ManifestIndex> {
    const consumer = await js.consumers.get(streamOf(bucket), {
      filter_subjects: `${metaSubject(bucket, "")}>`,
      deliver_policy: DeliverPolicy.LastPerSubject,
    });
    const index = new ManifestIndex(consumer, manifestOf);
    index.#messages = await consumer.consume();
    void index.#apply(index.#messages);
    return index;
  }

  /** Every manifest stored before this call, or null when the index cannot tell within `timeoutMs`. */
  async manifests(timeoutMs = 1_000): Promise<BackupManifest[] | null> {
    let info;
    try {
      info = await this.consumer.info();
    } catch {
      return null;
    }
    const delivered = info.delivered.stream_seq;
    // Caught up: nothing was pending and all that was delivered is applied; or, with messages
    // pending then, a later one was applied with nothing pending after it.
    const caughtUp = () =>
      info.num_pending === 0 ? this.#lastSeq >= delivered : this.#lastSeq > delivered && this.#lastPending === 0;
    if (!caughtUp() && !(await this.#until(caughtUp, timeoutMs))) return null;
    return [...this.#manifests.values()];
  }

  stop(): void {
    this.#messages?.stop();
  }

  async #apply(messages: ConsumerMessages): Promise<void> {
    for await (const m of messages) {
      let meta: ObjectMetaRecord | null = null;
      try {
        meta = m.json<ObjectMetaRecord>();
      } catch {
        // not an object's metadata: nothing to index
      }
      if (meta?.name) {
        const manifest = this.manifestOf(meta);
        if (manifest === null) this.#manifests.delete(meta.name);
        else this.#manifests.set(meta.name, manifest);
      }
      this.#lastSeq = m.seq;
      this.#lastPending = m.info.pending;
      for (const check of this.#waiters) check();
    }
  }

  #until(condition: () => boolean, timeoutMs: number): Promise<boolean> {
    return new Promise((resolve) => {
      const check = () => {
        if (condition()) done(true);
      };
      const timer = setTimeout(() => done(false), timeoutMs);
      const done = (ok: boolean) => {
        clearTimeout(timer);
        this.#waiters.delete(check);
        resolve(ok);
      };
      this.#waiters.add(check);
    });
  }
}
