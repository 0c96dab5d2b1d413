/**
 * Retention through the service's subjects: `keep_last` and `max_age` set by a backup request (kept
 * in its manifest), by the service's default, or both; applied by the sweeper's retention pass
 * (driven here by `svc.sweeper.sweep()`, no timer) and by `$BACKUP.prune`, with `dry_run`. Old
 * backups go whole; the stream's newest never goes by age; a backup a restore reads is skipped
 * until the restore ends (the restore held at a gate the test opens).
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, before, describe, test } from "node:test";
import type { NatsConnection } from "@nats-io/nats-core";
import { jetstreamManager } from "@nats-io/jetstream";
import Ajv2020Module from "ajv/dist/2020.js";
import type { StreamManifest, BackupService, JobRecord, JobStarted } from "../src/mod.ts";
import { durationMs } from "../src/protocol/duration.ts";
import type { PruneReply } from "../src/protocol/schemas.ts";
import { fakeManifest, writeManifests } from "./harness/manifests.ts";
import { makeStream } from "./harness/fixtures.ts";
import { Gate, gateOnce } from "./harness/gate.ts";
import { bucketView } from "./harness/proc-checks.ts";
import { request, startRig, startService, type ServiceRig } from "./harness/service.ts";

// ajv is CommonJS: under ESM its class is the module itself, which TypeScript sees as `.default`.
const Ajv2020 = Ajv2020Module.default;
const ajv = new Ajv2020({ strict: true, allErrors: true });
const schema = (name: string) => JSON.parse(readFileSync(new URL(`../protocol/schemas/${name}.json`, import.meta.url), "utf8"));
const validPruneReply = ajv.compile(schema("prune_reply"));
const validManifest = ajv.compile(schema("backup_manifest"));

const Hour = 3_600_000;
const Day = 24 * Hour;
const NoSweeps = { intervalMs: 3_600_000 };

async function prune(nc: NatsConnection, body: Record<string, unknown>): Promise<PruneReply> {
  const reply = await request<PruneReply>(nc, "$BACKUP.prune", body);
  assert.equal(reply.errorCode, null, reply.raw);
  assert.ok(validPruneReply(reply.body), `prune_reply.json: ${ajv.errorsText(validPruneReply.errors)}\n${reply.raw}`);
  return reply.body;
}

async function listed(nc: NatsConnection, stream: string): Promise<string[]> {
  const reply = await request<{ backups: StreamManifest[]; next?: string }>(nc, "$BACKUP.list", { stream, limit: 1024 });
  assert.equal(reply.errorCode, null, reply.raw);
  assert.equal(reply.body.next, undefined);
  return reply.body.backups.map((b) => b.id);
}

/** What a report removed from `stream`, oldest first, as `id:reason`. */
function removed(report: PruneReply | null, stream: string): string[] {
  assert.ok(report, "the retention pass ran");
  return report.streams.find((s) => s.stream === stream)?.removed.map((r) => `${r.id}:${r.reason}`) ?? [];
}

function skipped(report: PruneReply | null, stream: string): PruneReply["streams"][number]["skipped"] {
  assert.ok(report, "the retention pass ran");
  return report.streams.find((s) => s.stream === stream)?.skipped ?? [];
}

const as = (reason: string, ...manifests: StreamManifest[]) => manifests.map((m) => `${m.id}:${reason}`);
const ids = (...manifests: StreamManifest[]) => manifests.map((m) => m.id);

/** Manifests of `stream` made `ages` ago (oldest first); the last one carries `retention`. */
function aged(stream: string, ages: number[], retention?: StreamManifest["retention"]): StreamManifest[] {
  const now = Date.now();
  return ages.map((age, i) => fakeManifest(stream, now - age, i === ages.length - 1 && retention ? { retention } : {}));
}

describe("durations as the nats CLI writes them", () => {
  test("units, combinations, decimals, zero and seconds", () => {
    const cases: [string | number, number][] = [
      ["30d", 30 * Day],
      ["12h", 12 * Hour],
      ["1h30m", 90 * 60_000],
      ["1.5w", 10.5 * Day],
      ["2W", 14 * Day],
      ["1M", 30 * Day],
      ["1y", 365 * Day],
      ["1Y1M", 395 * Day],
      ["500ms", 500],
      ["90s", 90_000],
      ["0", 0],
      [3600, Hour],
      [0, 0],
    ];
    for (const [text, ms] of cases) assert.equal(durationMs(text), ms, String(text));
  });

  test("anything else is refused", () => {
    for (const text of ["", "30", "30 d", "-1d", "1x", "d", "1d 2h", "1d,2h", "1.d", " 1d", "1mo", -5, Number.NaN]) {
      assert.throws(() => durationMs(text), RangeError, JSON.stringify(text));
    }
  });
});

describe("retention set by backup requests, applied by the sweeper and by $BACKUP.prune", () => {
  let rig: ServiceRig;

  before(async () => {
    rig = await startRig({ sweep: NoSweeps });
    await rig.svc.sweeper.sweep(); // the one it started with: none runs unasked after this
    await makeStream(rig.nc, "KEEP", { messages: 40, consumers: false });
    await makeStream(rig.nc, "RS", { messages: 40, consumers: false });
  });
  after(async () => {
    await rig?.stop();
  });

  async function backup(stream: string, body: Record<string, unknown> = {}): Promise<StreamManifest> {
    const reply = await request<JobRecord>(rig.nc, `$BACKUP.stream.${stream}`, { wait: true, ...body }, 60_000);
    assert.equal(reply.errorCode, null, reply.raw);
    return reply.body.result as StreamManifest;
  }

  test("invalid retention fields are a 400, and no job", async () => {
    for (const [subject, body] of [
      ["$BACKUP.stream.KEEP", { max_age: "30 d" }],
      ["$BACKUP.stream.KEEP", { max_age: "-1d" }],
      ["$BACKUP.stream.KEEP", { max_age: -1 }],
      ["$BACKUP.stream.KEEP", { keep_last: -1 }],
      ["$BACKUP.stream.KEEP", { keep_last: 2.5 }],
      ["$BACKUP.prune", { keep_last: "2" }],
      ["$BACKUP.prune", { dry_run: "yes" }],
      ["$BACKUP.prune", { stream: "a.b" }],
      ["$BACKUP.prune", { older_than: "1d" }],
    ] as const) {
      const reply = await request(rig.nc, subject, body);
      assert.equal(reply.errorCode, 400, `${subject} ${JSON.stringify(body)}: ${reply.raw}`);
      assert.equal(reply.job, null);
    }
  });

  test("keep_last from a backup request: the sweeper removes the older backups whole, oldest first", async () => {
    const [b0, b1, b2] = [await backup("KEEP"), await backup("KEEP"), await backup("KEEP")];
    const b3 = await backup("KEEP", { keep_last: 2 });
    assert.deepEqual(b3.retention, { keep_last: 2 }, "the manifest keeps the request's retention");
    assert.ok(validManifest(b3), ajv.errorsText(validManifest.errors));
    assert.equal(b2!.retention, undefined);
    assert.equal((await bucketView(rig.nc)).objects.filter((o) => o.name.startsWith(`${b0!.id}/`)).length, 3);

    const report = await rig.svc.sweeper.sweep();
    assert.deepEqual(removed(report.retention, "KEEP"), as("keep_last", b0!, b1!));
    assert.deepEqual(report.retention?.streams.find((s) => s.stream === "KEEP")?.policy, { keep_last: 2 });
    assert.deepEqual(await listed(rig.nc, "KEEP"), ids(b3, b2!));
    const view = await bucketView(rig.nc);
    for (const gone of [b0!, b1!]) {
      assert.deepEqual(view.objects.filter((o) => o.name.startsWith(`${gone.id}/`)).map((o) => o.name), [], `${gone.id} is gone whole`);
    }
    for (const kept of [b2!, b3]) assert.equal(view.objects.filter((o) => o.name.startsWith(`${kept.id}/`)).length, 3);
    assert.deepEqual(view.unreferenced, [], "no chunk of a removed backup is left");
    assert.deepEqual(view.damaged, []);

    const again = await rig.svc.sweeper.sweep();
    assert.deepEqual(removed(again.retention, "KEEP"), [], "nothing more is due");
  });

  test("the newest backup's policy is the stream's: a later backup without retention keeps everything", async () => {
    const before = await listed(rig.nc, "KEEP");
    const b4 = await backup("KEEP");
    const report = await rig.svc.sweeper.sweep();
    assert.deepEqual(removed(report.retention, "KEEP"), []);
    assert.deepEqual(await listed(rig.nc, "KEEP"), [b4.id, ...before]);
  });

  test("max_age removes backups older than it, but never the stream's newest, however old", async () => {
    const old = aged("AGED", [50 * Day, 40 * Day, 35 * Day], { max_age: "30d" });
    const mixed = aged("MIXED", [40 * Day, 20 * Day, Hour], { max_age: "30d" });
    await writeManifests(rig.nc, [...old, ...mixed]);
    const report = await rig.svc.sweeper.sweep();
    assert.deepEqual(removed(report.retention, "AGED"), as("max_age", old[0]!, old[1]!));
    assert.deepEqual(await listed(rig.nc, "AGED"), ids(old[2]!), "the newest stays, 35 days old");
    assert.deepEqual(removed(report.retention, "MIXED"), as("max_age", mixed[0]!));
    assert.deepEqual(await listed(rig.nc, "MIXED"), ids(mixed[2]!, mixed[1]!));
    const again = await rig.svc.sweeper.sweep();
    assert.deepEqual(removed(again.retention, "AGED"), [], "not even on the next sweep");
  });

  test("prune with dry_run says what would go and removes nothing; the same prune then removes exactly that", async () => {
    const six = aged("PR", [6 * Hour, 5 * Hour, 4 * Hour, 3 * Hour, 2 * Hour, Hour]);
    await writeManifests(rig.nc, six);
    const dry = await prune(rig.nc, { stream: "PR", keep_last: 2, dry_run: true });
    assert.equal(dry.dry_run, true);
    assert.equal(dry.more, false);
    assert.deepEqual(dry.streams.map((s) => s.stream), ["PR"]);
    assert.deepEqual(removed(dry, "PR"), as("keep_last", ...six.slice(0, 4)));
    assert.deepEqual(dry.streams[0]!.policy, { keep_last: 2 });
    assert.deepEqual(await listed(rig.nc, "PR"), ids(...six).reverse(), "a dry run removes nothing");

    const done = await prune(rig.nc, { stream: "PR", keep_last: 2 });
    assert.equal(done.dry_run, false);
    assert.deepEqual(removed(done, "PR"), removed(dry, "PR"));
    assert.deepEqual(await listed(rig.nc, "PR"), ids(six[5]!, six[4]!));

    // Its own policy replaces the stream's whole: max_age alone, no count.
    const byAge = await prune(rig.nc, { stream: "PR", max_age: "90m" });
    assert.deepEqual(removed(byAge, "PR"), as("max_age", six[4]!));
    assert.deepEqual(await listed(rig.nc, "PR"), ids(six[5]!));
  });

  test("prune without keep_last or max_age applies each stream's stored policy; `stream` limits it to one", async () => {
    const s1 = aged("S1", [4 * Hour, 3 * Hour, 2 * Hour, Hour], { keep_last: 1 });
    const s2 = aged("S2", [4 * Hour, 3 * Hour, 2 * Hour, Hour], { keep_last: 2 });
    await writeManifests(rig.nc, [...s1, ...s2]);
    const one = await prune(rig.nc, { stream: "S1", dry_run: true });
    assert.deepEqual(one.streams.map((s) => s.stream), ["S1"]);
    assert.deepEqual(removed(one, "S1"), as("keep_last", ...s1.slice(0, 3)));

    const all = await prune(rig.nc, {});
    assert.deepEqual(all.streams.map((s) => s.stream).sort(), ["S1", "S2"], "no other stream has anything due");
    assert.deepEqual(removed(all, "S1"), as("keep_last", ...s1.slice(0, 3)));
    assert.deepEqual(removed(all, "S2"), as("keep_last", ...s2.slice(0, 2)));
    assert.deepEqual(await listed(rig.nc, "S1"), ids(s1[3]!));
    assert.deepEqual(await listed(rig.nc, "S2"), ids(s2[3]!, s2[2]!));
  });

  test("a backup that a restore reads is skipped, by prune and by the sweeper, 409 naming the restore; removed once it ended", async () => {
    const r0 = await backup("RS");
    const r1 = await backup("RS");
    const r2 = await backup("RS", { keep_last: 1 });
    await jetstreamManager(rig.nc).then((jsm) => jsm.streams.delete("RS"));
    const gate = new Gate();
    gateOnce(rig.svc.catalogue, "deliverArchive", gate);
    const restore = await request<JobStarted>(rig.nc, "$RESTORE.stream.RS", { backup: r0.id });
    assert.equal(restore.errorCode, null, restore.raw);
    await gate.entered;
    // Opened whatever happens: a restore held at the gate would keep the service from stopping.
    try {
      const inUse = `backup ${r0.id} is in use: restore job ${restore.body.id} is running (instance ${rig.svc.id})`;

      const dry = await prune(rig.nc, { stream: "RS", dry_run: true });
      assert.deepEqual(removed(dry, "RS"), as("keep_last", r1));
      assert.deepEqual(skipped(dry, "RS"), [{ id: r0.id, reason: "keep_last", created: r0.created, code: 409, description: inUse }]);

      const swept = await rig.svc.sweeper.sweep();
      assert.deepEqual(removed(swept.retention, "RS"), as("keep_last", r1));
      assert.deepEqual(skipped(swept.retention, "RS"), [{ id: r0.id, reason: "keep_last", created: r0.created, code: 409, description: inUse }]);
      assert.deepEqual(await listed(rig.nc, "RS"), ids(r2, r0));

      const pruned = await prune(rig.nc, { stream: "RS" });
      assert.deepEqual(removed(pruned, "RS"), []);
      assert.deepEqual(skipped(pruned, "RS").map((s) => s.code), [409]);
    } finally {
      gate.open();
    }
    const done = await rig.svc.runner.running(restore.body.id)!.done;
    assert.equal(done.state, "completed", JSON.stringify(done.error));
    const after = await rig.svc.sweeper.sweep();
    assert.deepEqual(removed(after.retention, "RS"), as("keep_last", r0));
    assert.deepEqual(skipped(after.retention, "RS"), []);
    assert.deepEqual(await listed(rig.nc, "RS"), ids(r2));
  });
});

describe("retention by the service's default, and a request's fields over it", () => {
  let rig: ServiceRig;

  before(async () => {
    rig = await startRig({ sweep: NoSweeps, retention: { keep_last: 3, max_age: "30d" } });
    await rig.svc.sweeper.sweep();
  });
  after(async () => {
    await rig?.stop();
  });

  test("each field the stream's newest backup sets wins; the others come from the default; 0 lifts a limit", async () => {
    const recent = [5 * Hour, 4 * Hour, 3 * Hour, 2 * Hour, Hour];
    const d1 = aged("D1", recent); // the default: keep 3
    const d2 = aged("D2", recent, { keep_last: 4 }); // its own count, the default's age
    const d3 = aged("D3", [42 * Day, 41 * Day, 40 * Day], { max_age: 0 }); // no age limit; keep 3
    const d4 = aged("D4", [45 * Day, 40 * Day]); // the default's age, but never the newest
    const d5 = aged("D5", [50 * Day, 45 * Day, 2 * Hour, Hour], { keep_last: 0 }); // no count limit; the default's age
    await writeManifests(rig.nc, [...d1, ...d2, ...d3, ...d4, ...d5]);

    const report = await rig.svc.sweeper.sweep();
    const policy = (stream: string) => report.retention?.streams.find((s) => s.stream === stream)?.policy;
    assert.deepEqual(removed(report.retention, "D1"), as("keep_last", d1[0]!, d1[1]!));
    assert.deepEqual(policy("D1"), { keep_last: 3, max_age: "30d" });
    assert.deepEqual(removed(report.retention, "D2"), as("keep_last", d2[0]!));
    assert.deepEqual(policy("D2"), { keep_last: 4, max_age: "30d" });
    assert.deepEqual(removed(report.retention, "D3"), []);
    assert.deepEqual(removed(report.retention, "D4"), as("max_age", d4[0]!));
    assert.deepEqual(removed(report.retention, "D5"), as("max_age", d5[0]!, d5[1]!));
    assert.deepEqual(policy("D5"), { keep_last: 0, max_age: "30d" });
    assert.deepEqual(await listed(rig.nc, "D3"), ids(...d3).reverse());
    assert.deepEqual(await listed(rig.nc, "D4"), ids(d4[1]!));
  });

  test("a default the service cannot read is refused at start, naming the field", async () => {
    await assert.rejects(startService(rig.serviceNc, { retention: { max_age: "thirty days" } }), /max_age: invalid duration "thirty days"/);
    await assert.rejects(startService(rig.serviceNc, { retention: { keep_last: -2 } }), /keep_last must be a whole number/);
  });
});

describe("the retention pass is bounded work per sweep", () => {
  let rig: ServiceRig;
  let svc: BackupService;

  before(async () => {
    rig = await startRig({ sweep: { ...NoSweeps, retentionPerSweep: 5 } });
    svc = rig.svc;
    await svc.sweeper.sweep();
  });
  after(async () => {
    await rig?.stop();
  });

  test("13 backups, keep_last 1: 5, 5 and 2 removed by three sweeps, the oldest first; `more` until the last", async () => {
    const all = aged("B", Array.from({ length: 13 }, (_, i) => (13 - i) * Hour), { keep_last: 1 });
    await writeManifests(rig.nc, all);
    const sweeps: PruneReply[] = [];
    for (let i = 0; i < 3; i++) sweeps.push((await svc.sweeper.sweep()).retention!);
    assert.deepEqual(
      sweeps.map((s) => removed(s, "B")),
      [as("keep_last", ...all.slice(0, 5)), as("keep_last", ...all.slice(5, 10)), as("keep_last", ...all.slice(10, 12))],
    );
    assert.deepEqual(
      sweeps.map((s) => s.more),
      [true, true, false],
    );
    assert.deepEqual(await listed(rig.nc, "B"), ids(all[12]!));
  });
});
