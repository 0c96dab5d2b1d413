/**
 * A JetStream account with a stream of every kind (limits, interior deletes, work queue, interest,
 * KV, object store, memory, mirror, source) and durable push and pull consumers partly acked; a
 * picture of it to compare after a restore; and the copy of an account backup between buckets.
 */
import { randomBytes } from "node:crypto";
import type { NatsConnection } from "@nats-io/nats-core";
import { AckPolicy, jetstream, jetstreamManager, RetentionPolicy, StorageType } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { Objm } from "@nats-io/obj";
import { consumerStates, makeStream, readStream, type ConsumerSnapshot, type StoredMessage } from "./fixtures.ts";
import { jsApi, waitUntil } from "./inspect.ts";
import { ManifestMetadataKey } from "../../src/catalogue/catalogue.ts";
import { putSmallObject } from "../../src/catalogue/object-writes.ts";

/**
 * The streams of the account. The mirror and the source sort before their origin by name, so a
 * restore that went by name alone would create them first.
 */
export const Kinds = {
  limits: "LIMITS",
  gaps: "GAPS",
  workQueue: "WORKQ",
  interest: "INTEREST",
  kv: "KV_settings",
  obj: "OBJ_files",
  memory: "MEMORY",
  mirror: "AMIRROR",
  sourced: "ASOURCED",
} as const;

export const KvBucket = "settings";
export const ObjBucket = "files";

/** Durable consumers per stream, as made below. */
export const ConsumersOf: Record<string, string[]> = {
  [Kinds.limits]: ["AUDIT", "PROCESSOR", "PUSHER"],
  [Kinds.gaps]: ["AUDIT", "PROCESSOR"],
  [Kinds.workQueue]: ["JOBS"],
  [Kinds.interest]: ["WORKER"],
  [Kinds.memory]: ["AUDIT", "PROCESSOR"],
};

/** What the account's KV and object store buckets hold, to read back through their libraries. */
export interface AccountContent {
  kv: Record<string, string>;
  objects: Record<string, Buffer>;
}

export async function makeAccount(nc: NatsConnection): Promise<AccountContent> {
  const jsm = await jetstreamManager(nc);
  const js = jetstream(nc);

  await makeStream(nc, Kinds.limits, { messages: 200 });
  // Its filter takes the stream's last message (200 % 7 = 4): nats-server 2.9 moves a push consumer's
  // delivered stream sequence past the non-matching messages after its last one, but stores (and
  // snapshots) the sequence of its last delivery, so another filter would differ after a restore.
  await pushConsumerPartlyAcked(nc, Kinds.limits, "PUSHER", `${Kinds.limits}.4.item`);
  await makeStream(nc, Kinds.gaps, { messages: 150, deleteEvery: 11 });
  await makeStream(nc, Kinds.memory, { messages: 60, extraConfig: { storage: StorageType.Memory } });

  // Work queue and interest: what is acked leaves the stream, what was fetched and not acked stays pending.
  await jsm.streams.add({ name: Kinds.workQueue, subjects: [`${Kinds.workQueue}.>`], retention: RetentionPolicy.Workqueue });
  await pullConsumerPartlyAcked(nc, Kinds.workQueue, "JOBS", 40, 20);
  await jsm.streams.add({ name: Kinds.interest, subjects: [`${Kinds.interest}.>`], retention: RetentionPolicy.Interest });
  await pullConsumerPartlyAcked(nc, Kinds.interest, "WORKER", 40, 20);

  const kv = await new Kvm(js).create(KvBucket, { history: 5 });
  const kvContent: Record<string, string> = {};
  for (let round = 0; round < 3; round++) {
    for (const key of ["alpha", "beta", "gamma", "delta"]) {
      const value = `${key}-${round}-${randomBytes(4).toString("hex")}`;
      await kv.put(key, value);
      kvContent[key] = value;
    }
  }
  await kv.delete("delta");
  delete kvContent.delta;

  const obj = await new Objm(js).create(ObjBucket);
  const objects: Record<string, Buffer> = { "small.txt": randomBytes(100), "big.bin": randomBytes(300_000) };
  for (const [name, data] of Object.entries(objects)) await obj.putBlob({ name }, data);
  await obj.putBlob({ name: "gone.bin" }, randomBytes(1000));
  await obj.delete("gone.bin");

  // The origin is complete before its mirror and source start copying it.
  await jsm.streams.add({ name: Kinds.mirror, mirror: { name: Kinds.limits } });
  await jsm.streams.add({ name: Kinds.sourced, sources: [{ name: Kinds.limits }] });
  const origin = (await jsm.streams.info(Kinds.limits)).state;
  for (const copy of [Kinds.mirror, Kinds.sourced]) {
    await waitUntil(`${copy} to hold the ${origin.messages} messages of ${Kinds.limits}`, async () => {
      const state = (await jsm.streams.info(copy)).state;
      return state.messages === origin.messages && state.last_seq === (copy === Kinds.mirror ? origin.last_seq : origin.messages);
    });
  }
  return { kv: kvContent, objects };
}

/** Whether the n-th delivered message is acked: the first four (an ack floor above 0), then every other one (acks pending). */
const acks = (n: number) => n <= 4 || n % 2 === 0;

/** A durable pull consumer that was handed `fetch` of `publish` messages and acked some (confirmed by the server). */
async function pullConsumerPartlyAcked(nc: NatsConnection, stream: string, durable: string, publish: number, fetch: number): Promise<void> {
  const jsm = await jetstreamManager(nc);
  const js = jetstream(nc);
  await jsm.consumers.add(stream, { durable_name: durable, ack_policy: AckPolicy.Explicit, ack_wait: 3600_000_000_000 });
  for (let i = 1; i <= publish; i++) await js.publish(`${stream}.${i % 3}`, `${stream} message ${i}`);
  const consumer = await js.consumers.get(stream, durable);
  let received = 0;
  while (received < fetch) {
    const batch = await consumer.fetch({ max_messages: fetch - received, expires: 2000 });
    for await (const m of batch) {
      received++;
      if (acks(received)) await m.ackAck();
    }
  }
}

/** A durable push consumer that got every message on `filter` and acked some, then lost its subscriber. */
async function pushConsumerPartlyAcked(nc: NatsConnection, stream: string, durable: string, filter: string): Promise<void> {
  const jsm = await jetstreamManager(nc);
  const matching = (await jsApi<{ state: { subjects?: Record<string, number> } }>(nc, `STREAM.INFO.${stream}`, { subjects_filter: filter }))
    .state.subjects?.[filter];
  if (!matching) throw new Error(`${stream} has no messages on ${filter}`);
  const deliverSubject = `deliver.${stream}.${durable}`;
  let received = 0;
  const sub = nc.subscribe(deliverSubject, {
    callback: (_err, msg) => {
      received++;
      if (acks(received)) msg.respond("+ACK");
    },
  });
  await nc.flush();
  await jsm.consumers.add(stream, {
    durable_name: durable,
    deliver_subject: deliverSubject,
    ack_policy: AckPolicy.Explicit,
    ack_wait: 3600_000_000_000,
    filter_subject: filter,
  });
  let acked = 0;
  for (let n = 1; n <= matching; n++) if (acks(n)) acked++;
  await waitUntil(`${durable} to have delivered ${matching} and seen ${acked} acks`, async () => {
    const info = await jsm.consumers.info(stream, durable);
    return info.delivered.consumer_seq === matching && info.num_ack_pending === matching - acked;
  });
  sub.unsubscribe();
  await nc.flush();
}

/** A stream as a restore must give it back: its configuration, every message, its consumers' configurations and states. */
export interface StreamPicture {
  config: Record<string, unknown>;
  messages: StoredMessage[];
  consumers: ConsumerSnapshot[];
  consumerConfigs: Record<string, Record<string, unknown>>;
}

export async function pictureStream(nc: NatsConnection, stream: string): Promise<StreamPicture> {
  const info = await jsApi<{ config: Record<string, unknown> }>(nc, `STREAM.INFO.${stream}`);
  if (info.error) throw new Error(`STREAM.INFO.${stream}: ${JSON.stringify(info.error)}`);
  const consumers = await consumerStates(nc, stream);
  const consumerConfigs: Record<string, Record<string, unknown>> = {};
  for (const c of consumers) consumerConfigs[c.name] = await consumerConfig(nc, stream, c.name);
  return { config: info.config, messages: await readStream(nc, stream), consumers, consumerConfigs };
}

export async function streamConfig(nc: NatsConnection, stream: string): Promise<Record<string, unknown>> {
  const info = await jsApi<{ config: Record<string, unknown> }>(nc, `STREAM.INFO.${stream}`);
  if (info.error) throw new Error(`STREAM.INFO.${stream}: ${JSON.stringify(info.error)}`);
  return info.config;
}

export async function consumerConfig(nc: NatsConnection, stream: string, consumer: string): Promise<Record<string, unknown>> {
  const info = await jsApi<{ config: Record<string, unknown> }>(nc, `CONSUMER.INFO.${stream}.${consumer}`);
  if (info.error) throw new Error(`CONSUMER.INFO.${stream}.${consumer}: ${JSON.stringify(info.error)}`);
  return info.config;
}

/** The names of every object of backup `id` in the bucket (live ones), sorted. */
export async function backupObjectNames(nc: NatsConnection, id: string, bucket = "backups"): Promise<string[]> {
  const store = await new Objm(jetstream(nc)).open(bucket);
  return (await store.list())
    .filter((o) => !o.deleted && o.name.startsWith(`${id}/`))
    .map((o) => o.name)
    .sort();
}

/**
 * Copies account backup `id` from one service's bucket to another's as an operator would: every
 * object named `<id>/…` but the manifest, streamed and checked, then the manifest, written as the
 * service writes one (its JSON in the object's metadata too, which listing reads), so the target
 * lists it. Returns the names copied.
 */
export async function copyAccountBackup(from: NatsConnection, to: NatsConnection, id: string, bucket = "backups"): Promise<string[]> {
  const source = await new Objm(jetstream(from)).open(bucket);
  const target = await new Objm(jetstream(to)).open(bucket);
  const manifestName = `${id}/manifest.json`;
  const names = (await backupObjectNames(from, id, bucket)).filter((n) => n !== manifestName);
  for (const name of names) {
    const read = await source.get(name);
    if (!read) throw new Error(`${name} is not in bucket ${bucket} of the source`);
    const put = await target.put({ name }, read.data);
    const failed = await read.error;
    if (failed) throw new Error(`reading ${name}: ${failed.message}`);
    if (put.size !== read.info.size || put.digest !== read.info.digest) {
      throw new Error(`${name} copied as ${put.size} bytes ${put.digest}, not ${read.info.size} bytes ${read.info.digest}`);
    }
  }
  const manifest = await source.info(manifestName);
  const json = manifest?.metadata?.[ManifestMetadataKey];
  if (!json || manifest.deleted) throw new Error(`${manifestName} is not in bucket ${bucket} of the source`);
  const body = await source.getBlob(manifestName);
  await putSmallObject(jetstream(to), bucket, manifestName, body ?? new TextEncoder().encode(json), { metadata: { [ManifestMetadataKey]: json } });
  return [...names, manifestName];
}
