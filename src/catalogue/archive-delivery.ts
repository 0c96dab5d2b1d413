/**
 * Sends a backup's archive from the bucket to a server restore without passing through this
 * process: a push consumer on the bucket's stream delivers the chunks to the restore's subject,
 * and the restore's answer to each chunk is that chunk's ack. `max_ack_pending` bounds the chunks
 * in flight; no chunk is ever delivered twice (max_deliver 1), since a repeated chunk would
 * corrupt the archive.
 */
import type { NatsConnection } from "@nats-io/nats-core";
import { BackupError, ErrorCode } from "../protocol/errors.ts";
import { jsApiRequest } from "../jetstream/jsapi.ts";
import { chunkSubject, streamOf, type ObjectMetaRecord } from "./object-format.ts";

export interface DeliveryOptions {
  /** Chunks delivered and not yet answered by the restore. */
  window: number;
  /** Fail when the restore answers no chunk for this long. */
  stallMs: number;
  /** How often the consumer's state is read (default 25 ms: the server builds the stream only after the last answer is seen). */
  pollMs?: number;
}

interface ConsumerInfo {
  name: string;
  ack_floor: { consumer_seq: number };
  num_ack_pending: number;
  num_pending: number;
}

export class ArchiveDelivery {
  private constructor(
    private readonly nc: NatsConnection,
    private readonly info: Pick<ObjectMetaRecord, "bucket" | "name" | "chunks">,
    private readonly consumer: string,
    private readonly opts: DeliveryOptions,
  ) {}

  static async start(
    nc: NatsConnection,
    info: Pick<ObjectMetaRecord, "bucket" | "name" | "nuid" | "chunks">,
    deliverSubject: string,
    opts: DeliveryOptions,
  ): Promise<ArchiveDelivery> {
    const config = {
      deliver_subject: deliverSubject,
      filter_subject: chunkSubject(info.bucket, info.nuid),
      deliver_policy: "all",
      ack_policy: "explicit",
      ack_wait: 3600 * 1e9,
      max_deliver: 1,
      max_ack_pending: opts.window,
      description: `nats-backup: restore of ${info.name}`,
    };
    const text = await jsApiRequest(
      nc,
      `CONSUMER.CREATE.${streamOf(info.bucket)}`,
      JSON.stringify({ stream_name: streamOf(info.bucket), config }),
    ).catch((err: unknown) => {
      const { code, description } = BackupError.from(err);
      throw new BackupError(code, `could not start delivering ${info.name} from bucket ${info.bucket}: ${description}`, { cause: err });
    });
    const { name } = JSON.parse(text) as ConsumerInfo;
    return new ArchiveDelivery(nc, info, name, opts);
  }

  /**
   * Resolves when the restore has answered every chunk. `onProgress` gets the chunks answered so
   * far; `signal` stops waiting.
   */
  async done(onProgress: (chunks: number) => void, signal: AbortSignal): Promise<void> {
    let answered = -1;
    let lastMove = Date.now();
    while (true) {
      if (signal.aborted) throw BackupError.from(signal.reason);
      const state = await this.#state();
      const acked = state.ack_floor.consumer_seq;
      if (acked !== answered) {
        answered = acked;
        lastMove = Date.now();
        onProgress(acked);
      }
      if (acked >= this.info.chunks && state.num_ack_pending === 0 && state.num_pending === 0) return;
      if (Date.now() - lastMove > this.opts.stallMs) {
        throw new BackupError(
          ErrorCode.Unavailable,
          `the restore answered no chunk of ${this.info.name} for ${this.opts.stallMs / 1000}s (${acked} of ${this.info.chunks} answered): server restarted or connection lost?`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, this.opts.pollMs ?? 25));
    }
  }

  /** Removes the consumer; best effort (an ephemeral push consumer also goes with its interest). */
  async stop(): Promise<void> {
    await jsApiRequest(this.nc, `CONSUMER.DELETE.${streamOf(this.info.bucket)}.${this.consumer}`).catch(() => {});
  }

  async #state(): Promise<ConsumerInfo> {
    return JSON.parse(await jsApiRequest(this.nc, `CONSUMER.INFO.${streamOf(this.info.bucket)}.${this.consumer}`)) as ConsumerInfo;
  }
}
