import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { NatsConnection } from "@nats-io/nats-core";
import { jetstreamManager } from "@nats-io/jetstream";
import type { StreamManifest, BackupService, JobRecord } from "../src/mod.ts";
import { makeStream } from "./harness/fixtures.ts";
import { request, startRig, type Reply, type ServiceRig } from "./harness/service.ts";
import { Collector, allStreams, jsApi, type StreamStateLite } from "./harness/inspect.ts";

/** A valid ULID that no backup or job has. */
const Missing = "01ARZ3NDEKTSV4RRFFQ69G5FAV";

/** The reply is an error with the micro headers and a JetStream-style body that agree. */
function assertError(reply: Reply, code: number, description?: RegExp): string {
  assert.equal(reply.errorCode, code, `expected ${code}, got: ${reply.raw}`);
  assert.ok(reply.errorHeader, "Nats-Service-Error header is set");
  assert.deepEqual(reply.body, { error: { code, description: reply.errorHeader } });
  assert.equal(reply.raw, JSON.stringify({ error: { code, description: reply.errorHeader } }));
  if (description) assert.match(reply.errorHeader, description);
  return reply.errorHeader;
}

describe("bad requests", () => {
  let rig: ServiceRig;
  let nc: NatsConnection;
  let svc: BackupService;
  let status: Collector;
  let otherBackup: StreamManifest;

  interface World {
    streams: Record<string, StreamStateLite>;
    objects: string[];
    jobs: number;
    events: number;
  }

  /** Everything a request could touch: every stream's state, the bucket's objects, the job store. */
  async function world(): Promise<World> {
    const streams = await allStreams(nc);
    // `$BACKUP.list` reads the bucket with an ordered consumer that lingers a while: not a change.
    for (const [name, state] of Object.entries(streams)) if (/^(OBJ|KV)_backups/.test(name)) state.consumer_count = 0;
    const list = await request<{ backups: StreamManifest[] }>(nc, "$BACKUP.list");
    assert.equal(list.errorCode, null, list.raw);
    const objects = await jsApi<{ state: { subjects?: Record<string, number> } }>(nc, "STREAM.INFO.OBJ_backups", {
      subjects_filter: "$O.backups.M.>",
    });
    const names = Object.keys(objects.state.subjects ?? {}).sort();
    return {
      streams,
      objects: [...names, ...list.body.backups.map((b) => b.id)],
      jobs: streams["KV_backups-jobs"]?.last_seq ?? -1,
      events: status?.messages.length ?? 0,
    };
  }

  before(async () => {
    rig = await startRig();
    ({ nc, svc } = rig);
    await makeStream(nc, "ERR", { messages: 40, consumers: false });
    await makeStream(nc, "OTHER", { messages: 20, consumers: false });
    const jsm = await jetstreamManager(nc);
    const done = await request<JobRecord>(nc, "$BACKUP.stream.OTHER", { wait: true }, 120_000);
    assert.equal(done.errorCode, null, done.raw);
    otherBackup = done.body.result as StreamManifest;
    const errDone = await request<JobRecord>(nc, "$BACKUP.stream.ERR", { wait: true }, 120_000);
    assert.equal(errDone.errorCode, null, errDone.raw);
    status = await Collector.start(nc, "$BACKUP.status.>");
  });
  after(async () => {
    status?.stop();
    await rig?.stop();
  });

  const badBodies: [string, string, RegExp][] = [
    ["malformed JSON", '{"wait":', /malformed JSON/],
    ["malformed JSON whose parser message spans lines", "x\ny", /malformed JSON/],
    ["a JSON array", "[]", /must be a JSON object/],
    ["a JSON string", '"wait"', /must be a JSON object/],
    ["JSON null", "null", /must be a JSON object/],
    ["an unknown field", '{"bogus_field":1}', /unknown field "bogus_field"/],
    ["wait of the wrong type", '{"wait":"yes"}', /wait/],
  ];
  const badBackupBodies: [string, string, RegExp][] = [
    ...badBodies,
    ["a fractional chunk_size", '{"chunk_size":1.5}', /chunk_size/],
    ["chunk_size as a string", '{"chunk_size":"4096"}', /chunk_size/],
    ["chunk_size below 4 KiB", '{"chunk_size":1024}', /chunk_size/],
    ["chunk_size above 1 MiB", `{"chunk_size":${2 * 1024 * 1024}}`, /chunk_size/],
    ["consumers of the wrong type", '{"consumers":1}', /consumers/],
    ["a tag of the wrong type", '{"tag":5}', /tag/],
  ];
  const badRestoreBodies: [string, string, RegExp][] = [
    ...badBodies,
    ["chunk_size, which a restore does not take", '{"chunk_size":4096}', /unknown field "chunk_size"/],
    ["replicas 0", '{"replicas":0}', /replicas/],
    ["fractional replicas", '{"replicas":1.5}', /replicas/],
    ["a backup that is not an id", '{"backup":"notanid"}', /backup/],
    ["an unknown field in placement", '{"placement":{"zone":"a"}}', /unknown field "zone" in placement/],
  ];

  /** A 400 changed nothing: no stream, no object, no job record, no status event. */
  async function assertUntouched(before: World): Promise<void> {
    await nc.flush();
    const after = await world();
    assert.deepEqual(after.streams, before.streams);
    assert.deepEqual(after.objects, before.objects);
    assert.equal(after.jobs, before.jobs, "no job record was written");
    assert.equal(after.events, before.events, "no job status was published");
  }

  for (const [what, body, why] of badBackupBodies) {
    test(`$BACKUP.stream.ERR with ${what} is a 400 that touches nothing`, async () => {
      const before = await world();
      assertError(await request(nc, "$BACKUP.stream.ERR", body), 400, why);
      await assertUntouched(before);
    });
  }
  for (const [what, body, why] of badRestoreBodies) {
    test(`$RESTORE.stream.ERR with ${what} is a 400 that touches nothing`, async () => {
      const before = await world();
      assertError(await request(nc, "$RESTORE.stream.ERR", body), 400, why);
      await assertUntouched(before);
    });
  }

  test("the other endpoints refuse bodies they do not take", async () => {
    const before = await world();
    assertError(await request(nc, "$BACKUP.list", '{"stream":"a.b"}'), 400, /stream/);
    assertError(await request(nc, "$BACKUP.list", '{"stream":5}'), 400, /stream/);
    assertError(await request(nc, "$BACKUP.list", "[1]"), 400, /must be a JSON object/);
    assertError(await request(nc, "$BACKUP.list", '{"force":true}'), 400, /unknown field "force"/);
    for (const endpoint of ["info", "delete", "job"]) {
      assertError(await request(nc, `$BACKUP.${endpoint}.${otherBackup.id}`, '{"force":true}'), 400, /unknown field "force"/);
      assertError(await request(nc, `$BACKUP.${endpoint}.${otherBackup.id}`, "{"), 400, /malformed JSON/);
    }
    await assertUntouched(before);
    // The backup whose delete was refused is still there.
    const info = await request<StreamManifest>(nc, `$BACKUP.info.${otherBackup.id}`);
    assert.equal(info.errorCode, null, info.raw);
    assert.deepEqual(info.body, otherBackup);
  });

  test("ids and stream names that are not ones are 400s", async () => {
    const before = await world();
    for (const endpoint of ["info", "delete", "job"]) {
      assertError(await request(nc, `$BACKUP.${endpoint}.notanid`), 400, /invalid id "notanid"/);
      assertError(await request(nc, `$BACKUP.${endpoint}.${Missing.toLowerCase()}`), 400, /invalid id/);
    }
    assertError(await request(nc, "$BACKUP.stream.a/b"), 400, /invalid stream name "a\/b"/);
    assertError(await request(nc, "$RESTORE.stream.a\\b"), 400, /invalid stream name/);
    await assertUntouched(before);
  });

  test("ids that do not exist are 404s that touch nothing", async () => {
    const before = await world();
    assertError(await request(nc, `$BACKUP.info.${Missing}`), 404, new RegExp(Missing));
    assertError(await request(nc, `$BACKUP.delete.${Missing}`), 404, new RegExp(Missing));
    assertError(await request(nc, `$BACKUP.job.${Missing}`), 404, new RegExp(`job ${Missing} not found`));
    await assertUntouched(before);
  });

  test("a backup of a stream that does not exist is a 404 naming it that touches nothing", async () => {
    const before = await world();
    assertError(await request(nc, "$BACKUP.stream.NOPE"), 404, /stream NOPE not found/);
    assertError(await request(nc, "$BACKUP.stream.NOPE", { consumers: false, wait: true }), 404, /stream NOPE/);
    await assertUntouched(before);
  });

  test("a restore of a stream without backups is a 404 that touches nothing", async () => {
    const before = await world();
    assertError(await request(nc, "$RESTORE.stream.NOPE"), 404, /no completed backup of stream NOPE/);
    assertError(await request(nc, "$RESTORE.stream.NOPE", { wait: true }), 404, /NOPE/);
    assertError(await request(nc, `$RESTORE.stream.ERR`, { backup: Missing }), 404, new RegExp(`backup ${Missing} not found`));
    assertError(await request(nc, "$RESTORE.account", { backup: Missing }), 404, new RegExp(`backup ${Missing} not found`));
    await assertUntouched(before);
  });

  test("a restore of another stream's backup is a 400 that touches nothing", async () => {
    const jsm = await jetstreamManager(nc);
    // Onto a stream that exists ...
    let before = await world();
    assertError(
      await request(nc, "$RESTORE.stream.ERR", { backup: otherBackup.id, wait: true }),
      400,
      new RegExp(`backup ${otherBackup.id} is of stream OTHER, not ERR`),
    );
    assertError(await request(nc, "$RESTORE.account", { backup: otherBackup.id }), 400, /not an account backup/);
    await assertUntouched(before);
    // ... and onto one that does not: it is not created under the wrong name.
    await jsm.streams.delete("ERR");
    before = await world();
    assertError(await request(nc, "$RESTORE.stream.ERR", { backup: otherBackup.id }), 400, /is of stream OTHER/);
    await assertUntouched(before);
  });

  test("the service keeps answering after all of it", async () => {
    const list = await request<{ backups: StreamManifest[] }>(nc, "$BACKUP.list");
    assert.equal(list.errorCode, null, list.raw);
    assert.deepEqual(list.body.backups.map((b) => b.stream).sort(), ["ERR", "OTHER"]);
    const ping = await nc.request("$SRV.PING.backup", "", { timeout: 5000 });
    assert.equal(ping.json<{ id: string }>().id, svc.id);
    const other = await request<JobRecord>(nc, "$BACKUP.stream.OTHER", { wait: true }, 120_000);
    assert.equal(other.errorCode, null, other.raw);
    assert.equal(other.body.state, "completed");
  });
});

describe("a stream over max_backup_bytes", () => {
  let rig: ServiceRig;

  before(async () => {
    rig = await startRig({ maxBackupBytes: 10_000 });
    await makeStream(rig.nc, "BIG", { messages: 200, consumers: false });
  });
  after(async () => {
    await rig?.stop();
  });

  test("is a 413 naming both sizes, refused before a job: nothing is written", async () => {
    const bytes = (await allStreams(rig.nc))["BIG"]!.bytes;
    assert.ok(bytes > 10_000, `the stream holds ${bytes} bytes`);
    for (const wait of [false, true]) {
      const reply = await request(rig.nc, "$BACKUP.stream.BIG", { wait });
      assertError(reply, 413, new RegExp(`stream BIG holds ${bytes} bytes, more than the 10000 a backup may hold here \\(max_backup_bytes\\)`));
      assert.equal(reply.job, null, "no job was started");
    }
    await rig.nc.flush();
    const streams = await allStreams(rig.nc);
    assert.equal(streams["OBJ_backups"]?.messages ?? 0, 0, "nothing was written to the bucket");
    assert.equal(streams["KV_backups-jobs"]?.messages ?? 0, 0, "no job record was written");
    assert.equal(streams["KV_backups-locks"]?.messages ?? 0, 0, "no lock was taken");
  });
});
