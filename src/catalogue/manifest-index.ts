/**
 * The bucket's manifests, kept in memory by an ordered consumer on its metadata subjects, so that
 * `$BACKUP.list` does not read every manifest from the server: during a backup the server is busy
 * storing chunks, and a list made of server reads (the subjects, then each manifest) waited three
 * times as long as a PING there.
 *
 * Before it answers, the index asks its consumer how many messages it has delivered and holds
 * pending (one request) and waits until it has applied that many: a list shows every manifest
 * stored before it was asked for, whoever wrote it. Counted in the consumer's own sequence, not
 * the stream's: a 2.9 consumer moves its delivered stream sequence past the chunks it skips.
 * When that takes too long (the consumer is being recreated, the server is away), it answers
 * null and the caller reads the bucket.
 */
import { DeliverPolicy, type Consumer, type ConsumerMessages, type JetStreamClient } from "@nats-io/jetstream";
import type { BackupManifest } from "../protocol/schemas.ts";
import { metaSubject, streamOf, type ObjectMetaRecord } from "./object-format.ts";

/** The manifest an object's metadata holds (null: none, or deleted). */
export type ManifestOf = (meta: ObjectMetaRecord) => BackupManifest | null;

export class ManifestIndex {
  #manifests = new Map<string, BackupManifest>();
  /** The consumer that delivered the last message applied, and that message's delivery sequence. */
  #lastConsumer = "";
  #lastDelivery = 0;
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
    // Caught up: the consumer's every delivery so far, and every one pending then, is applied. A
    // consumer that has nothing to deliver (a new one, after a reset, starts after what was applied) is too.
    const { name } = info;
    const wanted = info.delivered.consumer_seq + info.num_pending;
    const caughtUp = () => wanted === 0 || (this.#lastConsumer === name && this.#lastDelivery >= wanted);
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
      this.#lastConsumer = m.info.consumer;
      this.#lastDelivery = m.info.deliverySequence;
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
