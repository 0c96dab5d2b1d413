/**
 * The bucket's manifests, kept in memory by an ordered consumer on its metadata subjects, so
 * that `$BACKUP.list` is answered without asking the server: during a backup the server is busy
 * storing chunks, and a list made of server reads (subjects, then each manifest) waited three
 * times as long as a PING there. The index answers only while it is caught up; until then,
 * and after any break in its consumer, the caller reads the bucket instead.
 *
 * It follows what the server stores, so a manifest another instance writes shows up here a
 * moment later; this instance's own writes are waited for (`waitFor`) before they are reported.
 */
import { DeliverPolicy, type Consumer, type ConsumerMessages, type JetStreamClient } from "@nats-io/jetstream";
import type { Logger } from "pino";
import type { BackupManifest } from "../protocol/schemas.ts";
import { metaSubject, streamOf, type ObjectMetaRecord } from "./object-format.ts";

/** The manifest an object's metadata holds (null: none, or deleted). */
export type ManifestOf = (meta: ObjectMetaRecord) => BackupManifest | null;

/** Notifications after which the consumer may have missed or be missing something. */
const Breaks = new Set(["heartbeats_missed", "consumer_not_found", "stream_not_found", "consumer_deleted", "ordered_consumer_recreated", "reset", "no_responders"]);

export class ManifestIndex {
  #manifests = new Map<string, BackupManifest>();
  #lastSeq = 0;
  #ready = false;
  #catchingUp: Promise<void> | null = null;
  #waiters = new Set<() => void>();
  #messages: ConsumerMessages | null = null;
  #stopped = false;

  private constructor(
    private readonly consumer: Consumer,
    private readonly manifestOf: ManifestOf,
    private readonly log: Logger,
  ) {}

  /** Starts following the bucket's metadata; ready once the consumer has caught up. */
  static async start(js: JetStreamClient, bucket: string, manifestOf: ManifestOf, log: Logger): Promise<ManifestIndex> {
    const consumer = await js.consumers.get(streamOf(bucket), {
      filter_subjects: `${metaSubject(bucket, "")}>`,
      deliver_policy: DeliverPolicy.LastPerSubject,
    });
    const index = new ManifestIndex(consumer, manifestOf, log);
    await index.#follow();
    return index;
  }

  /** Every manifest, or null while the index is not caught up. */
  manifests(): BackupManifest[] | null {
    return this.#ready ? [...this.#manifests.values()] : null;
  }

  /**
   * Waits (at most `timeoutMs`) until the index shows what this instance just wrote, as
   * `seen(manifest)` tells for the object `name`; past that the index counts as behind.
   */
  async waitFor(name: string, seen: (manifest: BackupManifest | undefined) => boolean, timeoutMs = 2_000): Promise<void> {
    if (seen(this.#manifests.get(name))) return;
    const shown = await new Promise<boolean>((resolve) => {
      const check = () => {
        if (!seen(this.#manifests.get(name))) return;
        done(true);
      };
      const timer = setTimeout(() => done(false), timeoutMs);
      const done = (ok: boolean) => {
        clearTimeout(timer);
        this.#waiters.delete(check);
        resolve(ok);
      };
      this.#waiters.add(check);
    });
    if (!shown) this.#behind(`did not show ${name} within ${timeoutMs} ms`);
  }

  stop(): void {
    this.#stopped = true;
    this.#ready = false;
    this.#messages?.stop();
  }

  async #follow(): Promise<void> {
    const messages = await this.consumer.consume();
    this.#messages = messages;
    void (async () => {
      for await (const status of messages.status()) {
        if (Breaks.has(status.type)) this.#behind(status.type);
      }
    })();
    void (async () => {
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
        if (m.info.pending === 0) this.#ready = true;
        for (const check of this.#waiters) check();
      }
      this.#ready = false;
    })();
    this.#catchUp();
  }

  #behind(why: string): void {
    if (this.#stopped) return;
    if (this.#ready) this.log.debug({ why }, "manifest index behind; lists read the bucket until it catches up");
    this.#ready = false;
    this.#catchUp();
  }

  /** Ready again once the consumer has nothing pending that this index has not applied. */
  #catchUp(): void {
    this.#catchingUp ??= (async () => {
      for (let delayMs = 25; !this.#stopped && !this.#ready; delayMs = Math.min(delayMs * 2, 1_000)) {
        try {
          const info = await this.consumer.info();
          if (info.num_pending === 0 && this.#lastSeq >= info.delivered.stream_seq) this.#ready = true;
        } catch {
          // the consumer is being recreated, or the server is away: try again
        }
        if (!this.#ready) await new Promise((resolve) => setTimeout(resolve, delayMs));
      }
    })().finally(() => (this.#catchingUp = null));
  }
}
