/**
 * JetStream domains (`BackupServiceOptions.domain`): a service connected to a leaf node, told the
 * hub's domain, backs up and restores the hub's streams and keeps its bucket in the hub, leaving
 * the leaf's own JetStream empty; without the option the same service works on the leaf's.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { headers, type NatsConnection } from "@nats-io/nats-core";
import { AckPolicy, jetstream, jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import type { BackupService, JobRecord, StreamManifest } from "../src/mod.ts";
import { consumerStates, readStream, type ConsumerSnapshot, type StoredMessage } from "./harness/fixtures.ts";
import { waitUntil } from "./harness/inspect.ts";
import { freePort, NatsServer } from "./harness/nats-server.ts";
import { request, startService } from "./harness/service.ts";

const HubDomain = "hub";
const LeafDomain = "leaf";
const JobTimeoutMs = 60_000;
/** The service's own streams: its bucket, job records and locks. */
const ServiceStreams = ["KV_backups-jobs", "KV_backups-locks", "OBJ_backups"];

interface AccountBackupRecord {
  state: string;
  result: { id: string; scope: string; streams: string[]; streams_with_data: number; failed: unknown[] };
}
interface AccountRestoreRecord {
  state: string;
  result: { backup: string; streams: { stream: string; action: string; messages?: number }[] };
}

/** The stream names a JetStream API prefix answers (`$JS.API`: the connected server's domain). */
async function streamNames(nc: NatsConnection, prefix: string): Promise<string[]> {
  const reply = (await nc.request(`${prefix}.STREAM.NAMES`, "", { timeout: 5000 })).json<{ streams: string[] | null; error?: unknown }>();
  assert.equal(reply.error, undefined, JSON.stringify(reply));
  return [...(reply.streams ?? [])].sort();
}

/** The domain the JetStream behind a prefix says it serves. */
async function domainOf(nc: NatsConnection, prefix: string): Promise<string | undefined> {
  return (await nc.request(`${prefix}.INFO`, "", { timeout: 5000 })).json<{ domain?: string }>().domain;
}

/**
 * A file stream in the hub's domain, made from a leaf client through that domain: mixed sizes,
 * headers, interior deletes, and a durable consumer that acked part of what it received.
 */
async function fillHubStream(leafNc: NatsConnection, jsm: JetStreamManager, name: string, messages: number): Promise<void> {
  await jsm.streams.add({ name, subjects: [`${name.toLowerCase()}.>`], storage: "file" as never });
  const js = jetstream(leafNc, { domain: HubDomain });
  for (let i = 1; i <= messages; i++) {
    const h = headers();
    h.set("X-Index", String(i));
    const body = Buffer.alloc([0, 17, 900, 6000][i % 4]!, i % 251);
    await js.publish(`${name.toLowerCase()}.${i % 3}`, body, i % 2 === 0 ? { headers: h } : {});
  }
  for (let seq = 10; seq < messages; seq += 10) await jsm.streams.deleteMessage(name, seq, false);
  await jsm.consumers.add(name, { durable_name: "WORKER", ack_policy: AckPolicy.Explicit, ack_wait: 3600_000_000_000 });
  const consumer = await js.consumers.get(name, "WORKER");
  const batch = await consumer.fetch({ max_messages: 20, expires: 2000 });
  let received = 0;
  for await (const m of batch) if (++received % 2 === 0) m.ack();
  assert.equal(received, 20, `the consumer of ${name} received its batch`);
  await leafNc.flush();
}

describe("a service on a leaf node, in the hub's JetStream domain", () => {
  const dirs: string[] = [];
  let hub: NatsServer;
  let leaf: NatsServer;
  /** A client on the hub: its `$JS.API` is the hub's domain, read without the service's help. */
  let hubNc: NatsConnection;
  /** A client on the leaf: its `$JS.API` is the leaf's own domain. */
  let leafNc: NatsConnection;
  let serviceNc: NatsConnection;
  let svc: BackupService | undefined;
  let hubJsm: JetStreamManager;
  const saved: Record<string, { messages: StoredMessage[]; consumers: ConsumerSnapshot[] }> = {};
  const backupIds: { stream?: string; account?: string } = {};

  const storeDir = (name: string) => {
    const dir = mkdtempSync(join(tmpdir(), `nats-backup-${name}-`));
    dirs.push(dir);
    return dir;
  };

  before(async () => {
    const leafPort = await freePort();
    // The harness writes `jetstream { store_dir }` itself; this later block repeats it, with the domain.
    const hubStore = storeDir("hub");
    hub = await NatsServer.start({
      storeDir: hubStore,
      config: `jetstream { store_dir: ${JSON.stringify(hubStore)}, domain: ${HubDomain} }\nleafnodes { listen: "127.0.0.1:${leafPort}" }\n`,
    });
    const leafStore = storeDir("leaf");
    leaf = await NatsServer.start({
      storeDir: leafStore,
      config: `jetstream { store_dir: ${JSON.stringify(leafStore)}, domain: ${LeafDomain} }\nleafnodes { remotes: [ { url: "nats://127.0.0.1:${leafPort}" } ] }\n`,
    });
    hubNc = await hub.connect();
    leafNc = await leaf.connect();
    serviceNc = await leaf.connect();
    // The leaf connection is up once the hub's JetStream answers a leaf client through its domain.
    await waitUntil(
      "the hub's JetStream to answer a leaf client on $JS.hub.API",
      async () => (await domainOf(leafNc, `$JS.${HubDomain}.API`).catch(() => undefined)) === HubDomain,
      15_000,
    );
    assert.equal(await domainOf(leafNc, "$JS.API"), LeafDomain, "a leaf client's $JS.API is the leaf's own JetStream");
    assert.equal(await domainOf(hubNc, "$JS.API"), HubDomain);

    hubJsm = await jetstreamManager(leafNc, { domain: HubDomain });
    await fillHubStream(leafNc, hubJsm, "ORDERS", 300);
    saved.ORDERS = { messages: await readStream(hubNc, "ORDERS"), consumers: await consumerStates(hubNc, "ORDERS") };
    assert.equal(saved.ORDERS.messages.length, 300 - 29);
    assert.deepEqual(await streamNames(leafNc, "$JS.API"), [], "the stream went to the hub, not the leaf");

    svc = await startService(serviceNc, { domain: HubDomain });
  });

  after(async () => {
    await svc?.stop();
    await serviceNc?.close();
    await leafNc?.close();
    await hubNc?.close();
    await leaf?.stop();
    await hub?.stop();
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  test("a hub stream is backed up, deleted and restored with every message; the leaf's JetStream stays empty", async () => {
    const backup = await request<JobRecord>(leafNc, "$BACKUP.stream.ORDERS", { wait: true }, JobTimeoutMs);
    assert.equal(backup.errorCode, null, backup.raw);
    assert.equal(backup.body.state, "completed", backup.raw);
    const manifest = backup.body.result as StreamManifest;
    assert.equal(manifest.messages, saved.ORDERS!.messages.length);
    assert.deepEqual(manifest.consumers, ["WORKER"]);
    backupIds.stream = manifest.id;

    await hubJsm.streams.delete("ORDERS");
    assert.deepEqual(await streamNames(hubNc, "$JS.API"), ServiceStreams, "ORDERS is gone from the hub");

    const restored = await request<JobRecord>(leafNc, "$RESTORE.stream.ORDERS", { wait: true }, JobTimeoutMs);
    assert.equal(restored.errorCode, null, restored.raw);
    assert.equal(restored.body.state, "completed", restored.raw);
    assert.equal(restored.body.backup, manifest.id);
    assert.deepEqual(await readStream(hubNc, "ORDERS"), saved.ORDERS!.messages, "every message: sequence, subject, headers, data, time");
    assert.deepEqual(await consumerStates(hubNc, "ORDERS"), saved.ORDERS!.consumers);

    // The bucket and the job and lock buckets are the hub's; the leaf's JetStream holds nothing.
    assert.deepEqual(await streamNames(hubNc, "$JS.API"), ["ORDERS", ...ServiceStreams].sort());
    assert.deepEqual(await streamNames(leafNc, "$JS.API"), []);
    assert.deepEqual(await streamNames(leafNc, `$JS.${LeafDomain}.API`), [], "OBJ_backups is absent in the leaf's domain");
  });

  test("an account backup with data, the streams deleted, and an account restore, all through the domain", async () => {
    await fillHubStream(leafNc, hubJsm, "EVENTS", 120);
    saved.EVENTS = { messages: await readStream(hubNc, "EVENTS"), consumers: await consumerStates(hubNc, "EVENTS") };

    const backup = await request<AccountBackupRecord>(leafNc, "$BACKUP.account", { data: true, wait: true }, JobTimeoutMs);
    assert.equal(backup.errorCode, null, backup.raw);
    assert.equal(backup.body.state, "completed", backup.raw);
    assert.deepEqual([...backup.body.result.streams].sort(), ["EVENTS", "ORDERS"], "the hub's streams, none of the service's own");
    assert.equal(backup.body.result.streams_with_data, 2);
    assert.deepEqual(backup.body.result.failed, []);
    backupIds.account = backup.body.result.id;

    await hubJsm.streams.delete("ORDERS");
    await hubJsm.streams.delete("EVENTS");
    assert.deepEqual(await streamNames(hubNc, "$JS.API"), ServiceStreams);

    const restored = await request<AccountRestoreRecord>(leafNc, "$RESTORE.account", { backup: backupIds.account, wait: true }, JobTimeoutMs);
    assert.equal(restored.errorCode, null, restored.raw);
    assert.equal(restored.body.state, "completed", restored.raw);
    assert.equal(restored.body.result.backup, backupIds.account);
    for (const stream of ["EVENTS", "ORDERS"]) {
      const item = restored.body.result.streams.find((s) => s.stream === stream);
      assert.equal(item?.action, "restored", JSON.stringify(restored.body.result));
      assert.equal(item?.messages, saved[stream]!.messages.length);
      assert.deepEqual(await readStream(hubNc, stream), saved[stream]!.messages, `every message of ${stream}`);
      assert.deepEqual(await consumerStates(hubNc, stream), saved[stream]!.consumers, `consumer state of ${stream}`);
    }
    assert.deepEqual(await streamNames(leafNc, "$JS.API"), [], "still nothing in the leaf's JetStream");
  });

  test("$BACKUP.list shows the backups kept in the hub's bucket", async (t) => {
    if (!backupIds.stream || !backupIds.account) return t.skip("an earlier backup failed");
    const all = await request<{ backups: { id: string; scope: string }[] }>(leafNc, "$BACKUP.list", {});
    assert.equal(all.errorCode, null, all.raw);
    assert.deepEqual(
      all.body.backups.map((b) => [b.id, b.scope]),
      [
        [backupIds.account, "account"],
        [backupIds.stream, "stream"],
      ],
      "newest first",
    );
    const orders = await request<{ backups: StreamManifest[] }>(leafNc, "$BACKUP.list", { stream: "ORDERS" });
    assert.deepEqual(
      orders.body.backups.map((b) => b.id),
      [backupIds.stream],
    );
  });

  test("without the domain option a service on the leaf works on the leaf's JetStream: the hub's ORDERS is not found", async () => {
    await svc?.stop();
    svc = undefined;
    // A connection of its own, as a process started without the option would have.
    const plainNc = await leaf.connect();
    const plain = await startService(plainNc, {});
    try {
      const missing = await request(leafNc, "$BACKUP.stream.ORDERS", { wait: true }, JobTimeoutMs);
      assert.equal(missing.errorCode, 404, missing.raw);
      assert.match(missing.errorHeader ?? "", /ORDERS/);
      assert.equal((await readStream(hubNc, "ORDERS")).length, saved.ORDERS!.messages.length, "the hub's ORDERS is untouched");

      // It does work, on the leaf: a leaf stream is backed up into a bucket in the leaf's domain.
      const leafJsm = await jetstreamManager(leafNc);
      await leafJsm.streams.add({ name: "LOCAL", subjects: ["local.>"], storage: "file" as never });
      const js = jetstream(leafNc);
      for (let i = 0; i < 10; i++) await js.publish("local.x", `local ${i}`);
      const local = await request<JobRecord>(leafNc, "$BACKUP.stream.LOCAL", { wait: true }, JobTimeoutMs);
      assert.equal(local.errorCode, null, local.raw);
      assert.equal(local.body.state, "completed", local.raw);
      assert.equal((local.body.result as StreamManifest).messages, 10);
      assert.deepEqual(await streamNames(leafNc, "$JS.API"), ["LOCAL", ...ServiceStreams].sort());
    } finally {
      await plain.stop();
      await plainNc.close();
    }
  });
});
