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
 * When that takes too long (the consumer is being recreated, the server is away), or the index
 * failed and is being rebuilt, it answers null and the caller reads the bucket.
 */
import { DeliverPolicy, type Consumer, type ConsumerMessages, type JetStreamClient } from "@nats-io/jetstream";
import type { Logger } from "pino";
import type { BackupManifest } from "../protocol/schemas.ts";
import { metaSubject, streamOf, type ObjectMetaRecord } from "./object-format.ts";

/** The manifest an object's metadata holds (null: none, or deleted). */
export type ManifestOf = (meta: ObjectMetaRecord) => BackupManifest | null;

/** Waits between tries at rebuilding a failed index: doubling from this, up to the maximum. */
const RebuildBackoffMs = { first: 250, max: 10_000 };

/** One consumer's view of the metadata, from the start: rebuilt whole when it fails. */
interface Following {
  consumer: Consumer;
  messages: ConsumerMessages;
  manifests: Map<string, BackupManifest>;
  /** The consumer that delivered the last message applied, and that message's delivery sequence. */
  lastConsumer: string;
  lastDelivery: number;
}

export class ManifestIndex {
  #following: Following | null = null;
  #stopped = false;
  #waiters = new Set<() => void>();
  #backoff: NodeJS.Timeout | null = null;

  private constructor(
    private readonly js: JetStreamClient,
    private readonly bucket: string,
    private readonly manifestOf: ManifestOf,
    private readonly log: Logger,
  ) {}

  /** Starts following the bucket's metadata. */
  static async start(js: JetStreamClient, bucket: string, manifestOf: ManifestOf, log: Logger): Promise<ManifestIndex> {
    const index = new ManifestIndex(js, bucket, manifestOf, log);
    await index.#follow();
    return index;
  }

  /** Every manifest stored before this call, or null when the index cannot tell within `timeoutMs`. */
  async manifests(timeoutMs = 1_000): Promise<BackupManifest[] | null> {
    const following = this.#following;
    if (!following) return null;
    let info;
    try {
      info = await following.consumer.info();
    } catch {
      return null;
    }
    // Caught up: the consumer's every delivery so far, and every one pending then, is applied. A
    // consumer that has nothing to deliver (a new one, after a reset, starts after what was applied) is too.
    const { name } = info;
    const wanted = info.delivered.consumer_seq + info.num_pending;
    const caughtUp = () =>
      this.#following === following && (wanted === 0 || (following.lastConsumer === name && following.lastDelivery >= wanted));
    if (!caughtUp() && !(await this.#until(caughtUp, timeoutMs))) return null;
    return [...following.manifests.values()];
  }

  stop(): void {
    this.#stopped = true;
    if (this.#backoff) clearTimeout(this.#backoff);
    this.#following?.messages.stop();
  }

  async #follow(): Promise<void> {
    const consumer = await this.js.consumers.get(streamOf(this.bucket), {
      filter_subjects: `${metaSubject(this.bucket, "")}>`,
      deliver_policy: DeliverPolicy.LastPerSubject,
    });
    const messages = await consumer.consume();
    const following: Following = { consumer, messages, manifests: new Map(), lastConsumer: "", lastDelivery: 0 };
    this.#following = following;
    this.#apply(following).then(
      () => this.#failed(following, new Error("its consumer stopped delivering")),
      (err: unknown) => this.#failed(following, err),
    );
  }

  async #apply(following: Following): Promise<void> {
    for await (const m of following.messages) {
      let meta: ObjectMetaRecord | null = null;
      try {
        meta = m.json<ObjectMetaRecord>();
      } catch {
        // not an object's metadata: nothing to index
      }
      if (meta?.name) {
        const manifest = this.manifestOf(meta);
        if (manifest === null) following.manifests.delete(meta.name);
        else following.manifests.set(meta.name, manifest);
      }
      following.lastConsumer = m.info.consumer;
      following.lastDelivery = m.info.deliverySequence;
      for (const check of this.#waiters) check();
    }
  }

  /** The index stopped following (an error, or its consumer ended): lists read the bucket until a new one is built. */
  async #failed(following: Following, err: unknown): Promise<void> {
    if (this.#stopped || this.#following !== following) return;
    this.#following = null;
    following.messages.stop();
    this.log.error({ err, bucket: this.bucket }, "the manifest index failed; lists read the bucket until it is rebuilt");
    for (let attempt = 0; !this.#stopped; attempt++) {
      await new Promise<void>((resolve) => {
        this.#backoff = setTimeout(resolve, Math.min(RebuildBackoffMs.first * 2 ** attempt, RebuildBackoffMs.max));
        this.#backoff.unref();
      });
      if (this.#stopped) return;
      try {
        await this.#follow();
        this.log.info({ bucket: this.bucket }, "the manifest index is rebuilt");
        return;
      } catch (e) {
        this.log.warn({ err: e, bucket: this.bucket, attempt }, "could not rebuild the manifest index yet");
      }
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
