/**
 * Stream and consumer configurations as JSON text, the way the server writes them, for tests that
 * compare them byte for byte across a backup and a restore (raw JetStream API, no client types).
 */
import type { NatsConnection } from "@nats-io/nats-core";
import { jsApiRaw, memberText } from "./inspect.ts";

/**
 * A stream's configuration as the server stores it (and a snapshot carries it): from 2.11,
 * STREAM.INFO adds the server's `_nats.ver` and `_nats.level` to the metadata it shows; they are
 * not part of the stored configuration, and a restored stream shows the restoring server's own.
 * A metadata object left empty by that is dropped, as the server drops an empty one.
 */
export function storedConfig(infoConfig: string): string {
  return infoConfig
    .replace(/"_nats\.(ver|level)":"[^"]*",?/g, "")
    .replace(/,}/g, "}")
    .replace(/,?"metadata":\{\}/g, "");
}

/** The `config` text of STREAM.INFO, and the whole reply (for messages); throws on an API error. */
export async function streamConfigText(nc: NatsConnection, stream: string): Promise<{ config: string; info: string }> {
  const info = await jsApiRaw(nc, `STREAM.INFO.${stream}`);
  const config = memberText(info, "config");
  if (!config || memberText(info, "error")) throw new Error(`STREAM.INFO.${stream}: ${info}`);
  return { config, info };
}

/** A consumer as CONSUMER.INFO shows it: its config text and the state that a restore must keep. */
export interface ConsumerText {
  name: string;
  config: string;
  /**
   * delivered, ack_floor, num_ack_pending, num_redelivered, num_pending, as the server wrote them,
   * without `last_active`: the time of the last delivery or ack in the running server, which a
   * consumer's stored state does not carry (a restored consumer has none until it is used).
   */
  state: string;
}

/** Every consumer of `stream` by name, from CONSUMER.NAMES and CONSUMER.INFO. */
export async function consumerTexts(nc: NatsConnection, stream: string): Promise<ConsumerText[]> {
  const names = JSON.parse(await jsApiRaw(nc, `CONSUMER.NAMES.${stream}`)) as { consumers?: string[] | null };
  const out: ConsumerText[] = [];
  for (const name of (names.consumers ?? []).sort()) {
    const info = await jsApiRaw(nc, `CONSUMER.INFO.${stream}.${name}`);
    const config = memberText(info, "config");
    if (!config || memberText(info, "error")) throw new Error(`CONSUMER.INFO.${stream}.${name}: ${info}`);
    const state = ["delivered", "ack_floor", "num_ack_pending", "num_redelivered", "num_pending"]
      .map((key) => `"${key}":${memberText(info, key)?.replace(/,"last_active":"[^"]*"/, "")}`)
      .join(",");
    out.push({ name, config, state: `{${state}}` });
  }
  return out;
}
