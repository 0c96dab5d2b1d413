/**
 * The bucket's manifests, kept in memory by an ordered consumer on its metadata subjects, so that
 * `$BACKUP.list` does not read every manifest from the server: during a backup the server is busy
 * storing chunks, and a list made of server reads (the subjects, then each manifest) waited three
 * times as long as a PING there.
 *
 * Before it answers, the index asks the bucket's stream for its last metadata message (one direct
 * get, which the stream answers itself, not the JetStream API: cheaper on a busy server) and
 * waits until it has applied that message: the consumer delivers in stream order and skips no
 * metadata (object-writes.ts), so a list shows every manifest stored before it was asked for,
 * whoever wrote it. When that takes too long (the consumer is being recreated, the server is
 * away, that message was deleted meanwhile), or the index failed and is being rebuilt, it answers
 * null and the caller reads the bucket.
 */
import { apiPrefix } from "../jetstream/jsapi.ts";
import type { NatsConnection } from "@nats-io/nats-core";
import { DeliverPolicy, jetstream, type Consumer, type ConsumerMessages, type JetStreamClient } from "@nats-io/jetstream";
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
  /** The stream sequence of the last message applied. */
  lastSeq: number;
}

export class ManifestIndex {
  #following: Following | null = null;
  #stopped = false;
  #waiters = new Set<() => void>();
  #backoff: NodeJS.Timeout | null = null;

  private readonly js: JetStreamClient;

  private constructor(
    private readonly nc: NatsConnection,
    private readonly bucket: string,
    private readonly manifestOf: ManifestOf,
    private readonly log: Logger,
  ) {
    this.js = jetstream(nc, { apiPrefix: apiPrefix(nc) });
  }

  /** Starts following the bucket's metadata. */
  static async start(nc: NatsConnection, bucket: string, manifestOf: ManifestOf, log: Logger): Promise<ManifestIndex> {
    const index = new ManifestIndex(nc, bucket, manifestOf, log);
    await index.#follow();
    return index;
  }

  /** Every manifest stored before this call, or null when the index cannot tell within `timeoutMs`. */
  async manifests(timeoutMs = 1_000): Promise<BackupManifest[] | null> {
    const following = this.#following;
    if (!following) return null;
    let wanted: number;
    try {
      wanted = await lastMetadataSeq(this.nc, this.bucket);
    } catch {
      return null;
    }
    const caughtUp = () => this.#following === following && following.lastSeq >= wanted;
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
    const following: Following = { consumer, messages, manifests: new Map(), lastSeq: 0 };
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
      following.lastSeq = m.info.streamSequence;
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

/** The stream sequence of the bucket's last metadata message (0: none), by a direct get. */
async function lastMetadataSeq(nc: NatsConnection, bucket: string): Promise<number> {
  const reply = await nc.request(`${apiPrefix(nc)}.DIRECT.GET.${streamOf(bucket)}`, JSON.stringify({ last_by_subj: `${metaSubject(bucket, "")}>` }), {
    timeout: 5000,
  });
  const status = reply.headers?.code ?? 0;
  if (status === 404) return 0;
  const seq = Number(reply.headers?.get("Nats-Sequence"));
  if (status >= 300 || !Number.isInteger(seq)) throw new Error(`no last metadata sequence: ${status} ${reply.headers?.description ?? ""}`);
  return seq;
}
