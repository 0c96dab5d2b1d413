/**
 * Account backup and restore (`$BACKUP.account`, `$RESTORE.account`): every kind of stream and
 * consumer through a fresh server, update_streams, hundreds of streams, a stream deleted while
 * the backup runs, and requests refused before anything is touched.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { NatsConnection } from "@nats-io/nats-core";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { Objm } from "@nats-io/obj";
import {
  backupObjectNames,
  consumerConfig,
  ConsumersOf,
  copyAccountBackup,
  Kinds,
  KvBucket,
  makeAccount,
  ObjBucket,
  pictureStream,
  streamConfig,
  type AccountContent,
  type StreamPicture,
} from "./harness/account-fixture.ts";
import { serverAtLeast, serverVersion } from "./harness/binaries.ts";
import { consumerStates, makeStream } from "./harness/fixtures.ts";
import { Gate, gateOnce, openAllGates } from "./harness/gate.ts";
import { allStreams, Collector, jsApi, waitUntil, type StreamStateLite } from "./harness/inspect.ts";
import { fingerprint, type StreamFingerprint } from "./harness/proc-checks.ts";
import { request, startRig, type Reply, type ServiceRig } from "./harness/service.ts";

// What the replies hold, as ACCOUNT-SPEC.md describes them (typed here so the test reads the wire, not the service's types).
interface Failure {
  code: number;
  description: string;
}
interface AccountManifest {
  type: string;
  id: string;
  scope: "account";
  data: boolean;
  streams: string[];
  streams_with_data: number;
  consumers: number;
  failed: { stream: string; description: string }[];
  size: number;
  messages: number;
  tag?: string;
  objects: { manifest: string; contents: string };
}
interface Outcome {
  stream: string;
  state: "completed" | "failed";
  data: boolean;
  no_data?: string;
  consumers: number;
  error?: Failure;
}
interface AccountBackupRecord {
  id: string;
  operation: string;
  scope: string;
  state: string;
  progress: { streams?: { done: number; total: number; running: string[] } };
  result: AccountManifest & { outcomes: Outcome[] };
  error?: Failure;
}
interface RestoredConsumer {
  name: string;
  action: string;
  reason?: string;
  changed?: string[];
  error?: Failure;
}
interface RestoredStream {
  stream: string;
  action: string;
  reason?: string;
  changed?: string[];
  error?: Failure;
  messages?: number;
  consumers: RestoredConsumer[];
}
interface AccountRestoreRecord {
  id: string;
  scope: string;
  state: string;
  backup?: string;
  result: { backup: string; streams: RestoredStream[]; warnings?: string[] };
  error?: Failure;
}

/** Time for a job that runs while the reply waits. */
const JobTimeoutMs = 240_000;
/** A valid ULID that no backup or job has. */
const Missing = "01ARZ3NDEKTSV4RRFFQ69G5FAV";
/** Memory streams are snapshotted by nats-server 2.15 and later; older servers keep only their configuration. */
const snapshotsMemory = serverAtLeast("2.15.0");

async function backupAccount(nc: NatsConnection, body: Record<string, unknown>): Promise<Reply<AccountBackupRecord>> {
  return request<AccountBackupRecord>(nc, "$BACKUP.account", { ...body, wait: true }, JobTimeoutMs);
}

/** An account restore's job record: from the reply, or, when the reply is an error, from the job it names. */
async function restoreAccount(nc: NatsConnection, body: Record<string, unknown>): Promise<{ reply: Reply; record: AccountRestoreRecord }> {
  const reply = await request<AccountRestoreRecord>(nc, "$RESTORE.account", { ...body, wait: true }, JobTimeoutMs);
  if (reply.errorCode === null) return { reply, record: reply.body };
  assert.ok(reply.job, `an error reply without a job: ${reply.raw}`);
  const job = await request<AccountRestoreRecord>(nc, `$BACKUP.job.${reply.job}`);
  assert.equal(job.errorCode, null, job.raw);
  return { reply, record: job.body };
}

function item(record: AccountRestoreRecord, stream: string): RestoredStream {
  const found = record.result?.streams.find((s) => s.stream === stream);
  assert.ok(found, `the restore's result has no item for ${stream}: ${JSON.stringify(record.result ?? record)}`);
  return found;
}

function outcome(record: AccountBackupRecord, stream: string): Outcome {
  const found = record.result.outcomes.find((o) => o.stream === stream);
  assert.ok(found, `the backup's outcomes have none for ${stream}: ${JSON.stringify(record.result.outcomes)}`);
  return found;
}

/** Runs `work` on `items`, at most `window` at a time. */
async function inWindows<T>(items: T[], window: number, work: (item: T) => Promise<unknown>): Promise<void> {
  for (let i = 0; i < items.length; i += window) await Promise.all(items.slice(i, i + window).map(work));
}

/** The streams of an account, without the service's own bucket, job records and locks. */
async function userStreams(nc: NatsConnection): Promise<Record<string, StreamStateLite>> {
  const all = await allStreams(nc);
  return Object.fromEntries(Object.entries(all).filter(([name]) => !["OBJ_backups", "KV_backups-jobs", "KV_backups-locks"].includes(name)));
}

describe("an account with every kind of stream, backed up and restored on a fresh server", () => {
  let source: ServiceRig;
  let target: ServiceRig | undefined;
  let content: AccountContent;
  const pictures: Record<string, StreamPicture> = {};
  let backup: AccountBackupRecord | undefined;
  const streams = Object.values(Kinds);

  before(async () => {
    source = await startRig();
    content = await makeAccount(source.nc);
    for (const stream of streams) pictures[stream] = await pictureStream(source.nc, stream);
  });
  after(async () => {
    await target?.stop();
    await source?.stop();
  });

  test("the backup saves every stream, its consumers and, where the server can snapshot it, its data", async () => {
    const reply = await backupAccount(source.nc, { data: true });
    assert.equal(reply.errorCode, null, reply.raw);
    const record = reply.body;
    assert.equal(record.operation, "backup");
    assert.equal(record.scope, "account");
    assert.equal(record.state, "completed", reply.raw);
    assert.deepEqual(record.progress.streams, { done: streams.length, total: streams.length, running: [] });

    const manifest = record.result;
    assert.equal(manifest.scope, "account");
    assert.equal(manifest.data, true);
    assert.deepEqual([...manifest.streams].sort(), [...streams].sort(), "every stream, and none of the service's own");
    assert.deepEqual(manifest.failed, []);
    const withData = streams.filter((s) => s !== Kinds.memory || snapshotsMemory);
    assert.equal(manifest.streams_with_data, withData.length);
    assert.equal(manifest.consumers, Object.values(ConsumersOf).flat().length);
    assert.equal(
      manifest.messages,
      withData.reduce((sum, s) => sum + pictures[s]!.messages.length, 0),
    );
    assert.deepEqual(manifest.objects, { manifest: `${manifest.id}/manifest.json`, contents: `${manifest.id}/account.json` });

    assert.equal(record.result.outcomes.length, streams.length);
    for (const stream of streams) {
      const o = outcome(record, stream);
      assert.equal(o.state, "completed", JSON.stringify(o));
      assert.equal(o.consumers, ConsumersOf[stream]?.length ?? 0, `consumers of ${stream}`);
      if (stream === Kinds.memory && !snapshotsMemory) {
        assert.equal(o.data, false);
        assert.ok(o.no_data, `the memory stream's outcome says why it has no data on ${serverVersion().text}: ${JSON.stringify(o)}`);
      } else {
        assert.equal(o.data, true, JSON.stringify(o));
        assert.equal(o.no_data, undefined);
      }
    }

    // The bucket holds what the spec lays out, nothing else under the backup's id.
    const expected = [`${manifest.id}/manifest.json`, `${manifest.id}/account.json`];
    for (const stream of streams) {
      expected.push(`${manifest.id}/stream_${stream}.json`);
      for (const c of ConsumersOf[stream] ?? []) expected.push(`${manifest.id}/stream_${stream}_consumer_${c}.json`);
      if (withData.includes(stream)) expected.push(`${manifest.id}/${stream}/backup.json`, `${manifest.id}/${stream}/stream.tar.s2`);
    }
    assert.deepEqual(await backupObjectNames(source.nc, manifest.id), expected.sort());

    const listed = await request<{ backups: { id: string }[] }>(source.nc, "$BACKUP.list", { scope: "account" });
    assert.equal(listed.errorCode, null, listed.raw);
    assert.deepEqual(
      listed.body.backups.map((b) => b.id),
      [manifest.id],
    );
    backup = record;
  });

  test("restored on a fresh server, every stream, message, consumer and its state is as it was, origins before their copies", async (t) => {
    if (!backup) return t.skip("the backup failed");
    const manifest = backup.result;
    target = await startRig();
    await copyAccountBackup(source.nc, target.nc, manifest.id);
    const info = await request<AccountManifest>(target.nc, `$BACKUP.info.${manifest.id}`);
    assert.equal(info.errorCode, null, info.raw);
    assert.equal(info.body.id, manifest.id);

    const advisories = await Collector.start<unknown>(target.nc, "$JS.EVENT.ADVISORY.STREAM.>");
    // No backup named: the newest account backup without failed streams, the one copied.
    const { reply, record } = await restoreAccount(target.nc, {});
    advisories.stop();
    assert.equal(reply.errorCode, null, reply.raw);
    assert.equal(record.state, "completed", reply.raw);
    assert.equal(record.result.backup, manifest.id);
    assert.deepEqual(record.result.streams.map((s) => s.stream).sort(), [...streams].sort());

    for (const stream of streams) {
      const restored = item(record, stream);
      const before = pictures[stream]!;
      const now = await pictureStream(target.nc, stream);
      assert.deepEqual(now.config, before.config, `configuration of ${stream}`);
      assert.deepEqual(now.consumerConfigs, before.consumerConfigs, `consumer configurations of ${stream}`);
      for (const c of restored.consumers) assert.notEqual(c.action, "failed", `${stream} consumer ${JSON.stringify(c)}`);
      if (stream === Kinds.memory && !snapshotsMemory) {
        // Configuration only: an empty stream and fresh consumers.
        assert.equal(restored.action, "created", JSON.stringify(restored));
        assert.equal(now.messages.length, 0);
        assert.deepEqual(
          restored.consumers.map((c) => [c.name, c.action]).sort(),
          ConsumersOf[stream]!.map((c) => [c, "created"]),
        );
        continue;
      }
      assert.equal(restored.action, "restored", JSON.stringify(restored));
      assert.equal(restored.messages, before.messages.length, `messages of ${stream}`);
      assert.deepEqual(now.messages, before.messages, `every message of ${stream}: sequence, subject, headers, data, time`);
      assert.deepEqual(now.consumers, before.consumers, `consumer states of ${stream}`);
    }

    // The buckets read back through their libraries.
    const js = jetstream(target.nc);
    const kv = await new Kvm(js).open(KvBucket);
    for (const [key, value] of Object.entries(content.kv)) assert.equal((await kv.get(key))?.string(), value, `key ${key}`);
    assert.equal((await kv.get("delta"))?.operation, "DEL");
    const obj = await new Objm(js).open(ObjBucket);
    for (const [name, data] of Object.entries(content.objects)) {
      assert.deepEqual(Buffer.from((await obj.getBlob(name)) ?? []), data, `object ${name}`);
    }
    assert.equal(await obj.getBlob("gone.bin"), null);

    // The server's own account of the order: the origin was whole before its mirror and source came to be.
    const subjects = advisories.messages.map((m) => m.subject);
    const originDone = subjects.indexOf(`$JS.EVENT.ADVISORY.STREAM.RESTORE_COMPLETE.${Kinds.limits}`);
    assert.ok(originDone >= 0, `no RESTORE_COMPLETE advisory for ${Kinds.limits}: ${subjects.join(" ")}`);
    for (const copy of [Kinds.mirror, Kinds.sourced]) {
      const born = subjects.findIndex((s) => s.endsWith(`.RESTORE_CREATE.${copy}`) || s.endsWith(`.CREATED.${copy}`));
      assert.ok(born > originDone, `${copy} came to be after ${Kinds.limits} was restored: ${subjects.join(" ")}`);
    }
  });
});

describe("update_streams", () => {
  let rig: ServiceRig;
  const Changed = "CATALOG";
  const Untouched = "OTHER";

  before(async () => {
    rig = await startRig();
    await makeStream(rig.nc, Changed, { messages: 50 });
    await makeStream(rig.nc, Untouched, { messages: 20, consumers: false });
  });
  after(async () => {
    await rig?.stop();
  });

  test("without it an existing stream is skipped and left alone; with it, edited back to the saved configuration, messages kept", async () => {
    const nc = rig.nc;
    const jsm = await jetstreamManager(nc);
    const savedConfig = await streamConfig(nc, Changed);
    const savedConsumer = await consumerConfig(nc, Changed, "PROCESSOR");
    const savedUntouched = await fingerprint(nc, Untouched);
    const taken = await backupAccount(nc, { data: true });
    assert.equal(taken.errorCode, null, taken.raw);
    assert.equal(taken.body.state, "completed", taken.raw);
    const id = taken.body.result.id;

    // After the backup: new limits and subjects, an edited consumer, more messages, and the other stream gone.
    const current = (await jsm.streams.info(Changed)).config;
    await jsm.streams.update(Changed, { ...current, max_msgs: 10_000, subjects: [`${Changed}.>`, "extra.>"] });
    await jsm.consumers.update(Changed, "PROCESSOR", { description: "edited after the backup", max_deliver: 7 });
    const js = jetstream(nc);
    for (let i = 0; i < 5; i++) await js.publish("extra.one", `after the backup ${i}`);
    await jsm.streams.delete(Untouched);
    const editedConfig = await streamConfig(nc, Changed);
    const editedConsumer = await consumerConfig(nc, Changed, "PROCESSOR");
    const editedContent = await fingerprint(nc, Changed);

    const plain = await restoreAccount(nc, { backup: id });
    assert.equal(plain.record.state, "partial", plain.reply.raw);
    const skipped = item(plain.record, Changed);
    assert.equal(skipped.action, "skipped", JSON.stringify(skipped));
    assert.match(skipped.reason ?? "", /already exist/);
    assert.equal(item(plain.record, Untouched).action, "restored");
    assert.deepEqual(await fingerprint(nc, Untouched), savedUntouched);
    assert.deepEqual(await streamConfig(nc, Changed), editedConfig, "the skipped stream's configuration is untouched");
    assert.deepEqual(await consumerConfig(nc, Changed, "PROCESSOR"), editedConsumer, "its consumer too");
    assert.deepEqual(await fingerprint(nc, Changed), editedContent, "and its messages");

    const updating = await restoreAccount(nc, { backup: id, update_streams: true });
    assert.equal(updating.reply.errorCode, null, updating.reply.raw);
    assert.equal(updating.record.state, "completed", updating.reply.raw);
    const updated = item(updating.record, Changed);
    assert.equal(updated.action, "updated", JSON.stringify(updated));
    assert.deepEqual([...(updated.changed ?? [])].sort(), ["max_msgs", "subjects"]);
    const processor = updated.consumers.find((c) => c.name === "PROCESSOR");
    assert.equal(processor?.action, "updated", JSON.stringify(updated.consumers));
    assert.deepEqual([...(processor?.changed ?? [])].sort(), ["description", "max_deliver"]);
    assert.equal(updated.consumers.find((c) => c.name === "AUDIT")?.action, "unchanged", JSON.stringify(updated.consumers));
    assert.equal(item(updating.record, Untouched).action, "unchanged", JSON.stringify(item(updating.record, Untouched)));

    assert.deepEqual(await streamConfig(nc, Changed), savedConfig, "the configuration is the saved one");
    assert.deepEqual(await consumerConfig(nc, Changed, "PROCESSOR"), savedConsumer, "the consumer's too");
    assert.deepEqual(await fingerprint(nc, Changed), editedContent, "the messages stay, those published after the backup included");
  });
});

describe("an account of 300 streams", () => {
  let rig: ServiceRig;
  const names = Array.from({ length: 300 }, (_, i) => `MANY_${String(i).padStart(3, "0")}`);
  const perStream = 3;

  before(async () => {
    rig = await startRig();
    const jsm = await jetstreamManager(rig.nc);
    const js = jetstream(rig.nc);
    await inWindows(names, 32, async (name) => {
      await jsm.streams.add({ name, subjects: [`${name}.>`] });
      for (let i = 0; i < perStream; i++) await js.publish(`${name}.m`, `${name} ${i}`);
    });
  });
  after(async () => {
    await rig?.stop();
  });

  test("are all backed up with their data and all restored", async () => {
    const nc = rig.nc;
    const before = await userStreams(nc);
    assert.equal(Object.keys(before).length, names.length);
    const taken = await backupAccount(nc, { data: true });
    assert.equal(taken.errorCode, null, taken.raw);
    assert.equal(taken.body.state, "completed", taken.raw.slice(0, 2000));
    const manifest = taken.body.result;
    assert.deepEqual([...manifest.streams].sort(), names);
    assert.equal(manifest.streams_with_data, names.length);
    assert.equal(manifest.messages, names.length * perStream);
    assert.ok(taken.body.result.outcomes.every((o) => o.state === "completed" && o.data));

    const jsm = await jetstreamManager(nc);
    await inWindows(names, 32, (name) => jsm.streams.delete(name));
    assert.deepEqual(await userStreams(nc), {});

    const { reply, record } = await restoreAccount(nc, { backup: manifest.id });
    assert.equal(reply.errorCode, null, reply.raw.slice(0, 2000));
    assert.equal(record.state, "completed");
    assert.equal(record.result.streams.length, names.length);
    assert.ok(
      record.result.streams.every((s) => s.action === "restored" && s.messages === perStream),
      JSON.stringify(record.result.streams.filter((s) => s.action !== "restored" || s.messages !== perStream)),
    );
    assert.deepEqual(await userStreams(nc), before);
  });
});

describe("a stream deleted while the account backup runs", () => {
  let rig: ServiceRig;
  const names = ["P1", "P2", "P3", "P4"];
  const Deleted = "P3";
  const fingerprints: Record<string, StreamFingerprint> = {};
  const consumersBefore: Record<string, Awaited<ReturnType<typeof consumerStates>>> = {};

  before(async () => {
    // One snapshot at a time, in name order: the first one's gate holds the rest back.
    rig = await startRig({ accountParallel: 1 });
    for (const name of names) {
      await makeStream(rig.nc, name, { messages: 30 });
      fingerprints[name] = await fingerprint(rig.nc, name);
      consumersBefore[name] = await consumerStates(rig.nc, name);
    }
  });
  after(async () => {
    openAllGates();
    await rig?.stop();
  });

  test("makes the job partial, with that stream failed in the server's words; the restore brings back the rest", async () => {
    const nc = rig.nc;
    const jsm = await jetstreamManager(nc);
    const gate = new Gate();
    gateOnce(rig.svc.catalogue, "putConfig", gate);
    const replied = backupAccount(nc, { data: true });
    await gate.entered;
    await jsm.streams.delete(Deleted);
    gate.open();
    const reply = await replied;

    assert.equal(reply.errorCode, null, `a partial job is a record, not an error: ${reply.raw}`);
    const record = reply.body;
    assert.equal(record.state, "partial", reply.raw);
    const failed = outcome(record, Deleted);
    assert.equal(failed.state, "failed");
    assert.match(failed.error?.description ?? "", /stream not found/i, JSON.stringify(failed));
    for (const name of names.filter((n) => n !== Deleted)) {
      const o = outcome(record, name);
      assert.equal(o.state, "completed", JSON.stringify(o));
      assert.equal(o.data, true);
    }
    const manifest = record.result;
    assert.deepEqual([...manifest.streams].sort(), ["P1", "P2", "P4"]);
    assert.equal(manifest.failed.length, 1);
    assert.equal(manifest.failed[0]?.stream, Deleted);
    assert.match(manifest.failed[0]?.description ?? "", /stream not found/i);

    for (const name of ["P1", "P2", "P4"]) await jsm.streams.delete(name);
    // Unnamed, the restore wants a backup without failed streams: there is none, and nothing is made.
    const unnamed = await request(nc, "$RESTORE.account", { wait: true }, JobTimeoutMs);
    assert.ok(unnamed.errorCode !== null && unnamed.errorCode >= 400 && unnamed.errorCode < 500, unnamed.raw);
    assert.deepEqual(await userStreams(nc), {});

    const { reply: restoredReply, record: restored } = await restoreAccount(nc, { backup: manifest.id });
    assert.equal(restoredReply.errorCode, null, restoredReply.raw);
    assert.equal(restored.state, "completed", restoredReply.raw);
    assert.deepEqual(restored.result.streams.map((s) => s.stream).sort(), ["P1", "P2", "P4"]);
    for (const name of ["P1", "P2", "P4"]) {
      assert.equal(item(restored, name).action, "restored");
      assert.deepEqual(await fingerprint(nc, name), fingerprints[name]);
      assert.deepEqual(await consumerStates(nc, name), consumersBefore[name]);
    }
    assert.equal((await jsApi(nc, `STREAM.INFO.${Deleted}`)).error?.err_code, 10059, "the deleted stream stays deleted");
  });
});

describe("bad account requests", () => {
  let rig: ServiceRig;
  let streamBackup: string;
  let accountBackup: string;

  /** Everything a request could touch: every stream's state, the bucket's objects, the job records written. */
  async function world() {
    const streams = await allStreams(rig.nc);
    // `$BACKUP.list` and info read the bucket with consumers that linger a while: not a change.
    for (const [name, state] of Object.entries(streams)) if (/^(OBJ|KV)_backups/.test(name)) state.consumer_count = 0;
    const jobs = streams["KV_backups-jobs"]?.last_seq ?? -1;
    delete streams["KV_backups-jobs"];
    const objects = await jsApi<{ state: { subjects?: Record<string, number> } }>(rig.nc, "STREAM.INFO.OBJ_backups", {
      subjects_filter: "$O.backups.M.>",
    });
    return { streams, objects: Object.keys(objects.state.subjects ?? {}).sort(), keep: await fingerprint(rig.nc, "KEEP"), jobs };
  }

  function assertError(reply: Reply, code: number, description: RegExp): void {
    assert.equal(reply.errorCode, code, `expected ${code}, got: ${reply.raw}`);
    assert.ok(reply.errorHeader, "Nats-Service-Error header is set");
    assert.deepEqual(reply.body, { error: { code, description: reply.errorHeader } });
    assert.match(reply.errorHeader, description);
  }

  before(async () => {
    rig = await startRig();
    await makeStream(rig.nc, "KEEP", { messages: 40 });
    const taken = await request<{ result: { id: string } }>(rig.nc, "$BACKUP.stream.KEEP", { wait: true }, JobTimeoutMs);
    assert.equal(taken.errorCode, null, taken.raw);
    streamBackup = taken.body.result.id;
    const account = await request<{ result: { id: string } }>(rig.nc, "$BACKUP.account", { wait: true }, JobTimeoutMs);
    assert.equal(account.errorCode, null, account.raw);
    accountBackup = account.body.result.id;
  });
  after(async () => {
    await rig?.stop();
  });

  /** Refused by the request's shape: no job at all. */
  const malformed: [string, string, unknown, number, RegExp][] = [
    ["$BACKUP.account", "an unknown field", { bogus: 1 }, 400, /unknown field "bogus"/],
    ["$BACKUP.account", "data as a string", { data: "yes" }, 400, /data/],
    ["$BACKUP.account", "streams as a string", { streams: "X" }, 400, /streams/],
    ["$BACKUP.account", "malformed JSON", '{"data":', 400, /malformed JSON/],
    ["$RESTORE.account", "an unknown field", { bogus: 1 }, 400, /unknown field "bogus"/],
    ["$RESTORE.account", "update_streams as a string", { update_streams: "yes" }, 400, /update_streams/],
    ["$RESTORE.account", "an invalid id", { backup: "notanid" }, 400, /backup/],
  ];
  for (const [subject, what, body, code, why] of malformed) {
    test(`${subject} with ${what} is a ${code} that starts no job and touches nothing`, async () => {
      const before = await world();
      for (const wait of [false, true]) {
        const sent = typeof body === "string" ? body : { ...(body as object), ...(wait ? { wait } : {}) };
        const reply = await request(rig.nc, subject, sent);
        assertError(reply, code, why);
        assert.equal(reply.job, null, "no job was started");
      }
      await rig.nc.flush();
      assert.deepEqual(await world(), before);
    });
  }

  // Refused once the streams or the backup are looked up, before a job is recorded
  // (protocol/README.md, Errors): as for `$RESTORE.stream`, nothing is written.
  const refusedOnLookup: [string, string, () => Record<string, unknown>, number, () => RegExp][] = [
    ["$BACKUP.account", "naming a stream that does not exist", () => ({ streams: ["KEEP", "NOPE"] }), 404, () => /stream NOPE not found/],
    ["$BACKUP.account", "naming the service's own bucket", () => ({ streams: ["OBJ_backups"] }), 400, () => /stream OBJ_backups is this service's own/],
    ["$RESTORE.account", "naming a stream the backup does not hold", () => ({ backup: accountBackup, streams: ["KEEP", "NOPE"] }), 404, () => /holds no stream NOPE/],
    ["$RESTORE.account", "with an unknown id", () => ({ backup: Missing }), 404, () => new RegExp(`backup ${Missing} not found`)],
    ["$RESTORE.account", "with a stream backup's id", () => ({ backup: streamBackup }), 400, () => new RegExp(`backup ${streamBackup} is a backup of stream KEEP`)],
  ];
  for (const [subject, what, body, code, why] of refusedOnLookup) {
    test(`${subject} ${what} is a ${code} that starts no job and touches nothing`, async () => {
      const before = await world();
      for (const wait of [false, true]) {
        const reply = await request(rig.nc, subject, { ...body(), wait });
        assertError(reply, code, why());
        assert.equal(reply.job, null, "no job was started");
      }
      await rig.nc.flush();
      assert.deepEqual(await world(), before);
    });
  }
});
