/** Streams with known content, and ways to read a stream back whole for comparison. */
import { randomBytes } from "node:crypto";
import { headers, type NatsConnection } from "@nats-io/nats-core";
import { AckPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";

export interface StoredMessage {
  seq: number;
  subject: string;
  hdrs: string | null;
  data: string;
  time: string;
}

export interface FixtureOptions {
  messages: number;
  /** Every n-th message is deleted (interior deletes). */
  deleteEvery?: number;
  consumers?: boolean;
  extraConfig?: Record<string, unknown>;
}

/** A file stream with mixed sizes, headers, interior deletes and two durable consumers partly acked. */
export async function makeStream(nc: NatsConnection, name: string, opts: FixtureOptions): Promise<void> {
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name, subjects: [`${name}.>`], storage: "file" as never, ...opts.extraConfig });
  const js = jetstream(nc);
  const pending: Promise<unknown>[] = [];
  for (let i = 1; i <= opts.messages; i++) {
    const size = [0, 10, 200, 1500, 9000, 70_000][i % 6] as number;
    const h = headers();
    if (i % 3 === 0) {
      h.set("X-Index", String(i));
      h.append("X-Multi", "a");
      h.append("X-Multi", "b");
    }
    pending.push(js.publish(`${name}.${i % 7}.item`, randomBytes(size), i % 3 === 0 ? { headers: h } : {}));
    if (pending.length >= 256) await Promise.all(pending.splice(0));
  }
  await Promise.all(pending);
  const every = opts.deleteEvery ?? 0;
  if (every > 0) {
    for (let seq = every; seq < opts.messages; seq += every) await jsm.streams.deleteMessage(name, seq, false);
  }
  if (opts.consumers ?? true) {
    await ackSome(nc, name, "PROCESSOR", `${name}.>`, Math.floor(opts.messages / 3));
    await ackSome(nc, name, "AUDIT", `${name}.1.>`, 5);
  }
}

/** A durable consumer that received `deliver` messages and acked every other one. */
async function ackSome(nc: NatsConnection, stream: string, durable: string, filter: string, deliver: number): Promise<void> {
  const jsm = await jetstreamManager(nc);
  await jsm.consumers.add(stream, {
    durable_name: durable,
    ack_policy: AckPolicy.Explicit,
    filter_subject: filter,
    ack_wait: 3600_000_000_000,
    max_ack_pending: 100_000,
  });
  const consumer = await jetstream(nc).consumers.get(stream, durable);
  let received = 0;
  while (received < deliver) {
    const batch = await consumer.fetch({ max_messages: Math.min(500, deliver - received), expires: 2000 });
    for await (const m of batch) {
      received++;
      if (received % 2 === 0) m.ack();
    }
  }
  await nc.flush();
}

/** Every message of the stream, read with direct gets by sequence. */
export async function readStream(nc: NatsConnection, stream: string): Promise<StoredMessage[]> {
  const info = (await nc.request(`$JS.API.STREAM.INFO.${stream}`, "", { timeout: 5000 })).json<{
    state: { first_seq: number; last_seq: number; messages: number };
  }>();
  const out: StoredMessage[] = [];
  const seqs: number[] = [];
  for (let s = info.state.first_seq; s <= info.state.last_seq && info.state.messages > 0; s++) seqs.push(s);
  for (let i = 0; i < seqs.length; i += 200) {
    const replies = await Promise.all(
      seqs.slice(i, i + 200).map((seq) =>
        nc.request(`$JS.API.STREAM.MSG.GET.${stream}`, JSON.stringify({ seq }), { timeout: 5000 }),
      ),
    );
    for (const r of replies) {
      const body = r.json<{ message?: StoredMessage; error?: { err_code: number } }>();
      if (body.message) {
        const m = body.message;
        out.push({ seq: m.seq, subject: m.subject, hdrs: m.hdrs ?? null, data: m.data ?? "", time: m.time });
      } else if (body.error?.err_code !== 10037) {
        throw new Error(`reading ${stream}: ${JSON.stringify(body)}`);
      }
    }
  }
  return out;
}

export interface ConsumerSnapshot {
  name: string;
  delivered: { consumer_seq: number; stream_seq: number };
  ack_floor: { consumer_seq: number; stream_seq: number };
  num_pending: number;
  num_ack_pending: number;
}

export async function consumerStates(nc: NatsConnection, stream: string): Promise<ConsumerSnapshot[]> {
  const jsm = await jetstreamManager(nc);
  const out: ConsumerSnapshot[] = [];
  for await (const ci of jsm.consumers.list(stream)) {
    out.push({
      name: ci.name,
      delivered: { consumer_seq: ci.delivered.consumer_seq, stream_seq: ci.delivered.stream_seq },
      ack_floor: { consumer_seq: ci.ack_floor.consumer_seq, stream_seq: ci.ack_floor.stream_seq },
      num_pending: ci.num_pending,
      num_ack_pending: ci.num_ack_pending,
    });
  }
  return out.sort((a, b) => a.name.localeCompare(b.name));
}
