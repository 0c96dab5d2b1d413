/**
 * `nats-backup import` of an account folder while a service sweeps the same bucket: the import is
 * a running job of the service's job store and commits each stream as it stores it, so sweeps
 * that run while it is held between two streams (past every age bound the sweeper has) leave it
 * whole; an import whose process is killed mid-way is abandoned and cleaned up by the sweeper.
 * The sweeps are the test's own calls (no timer), with bounds of a second or two.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, describe, test } from "node:test";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { nuid, type NatsConnection } from "@nats-io/nats-core";
import type { AccountManifest, JobRecord } from "../src/mod.ts";
import { newId } from "../src/jobs/ids.ts";
import type { SweepReport } from "../src/jobs/sweeper.ts";
import { exportBackup } from "../src/transfer/export.ts";
import { importFolder } from "../src/transfer/import.ts";
import { consumerStates, makeStream, type ConsumerSnapshot } from "./harness/fixtures.ts";
import { Gate, openAllGates } from "./harness/gate.ts";
import { Collector, waitUntil } from "./harness/inspect.ts";
import { fingerprint, type StreamFingerprint } from "./harness/proc-checks.ts";
import { request, startRig, type ServiceRig } from "./harness/service.ts";

const Streams = ["ORDERS", "PARTS", "SHIPS"] as const;
/** Far below the service's minute and 30 s, so that a held import outlives them within seconds. */
const Sweep = { intervalMs: 3_600_000, orphanMinAgeMs: 300, staleJobMs: 3_000 };
const childScript = join(dirname(fileURLToPath(import.meta.url)), "harness", "import-child.ts");

interface Picture {
  fingerprint: StreamFingerprint;
  consumers: ConsumerSnapshot[];
}

describe("an account import while a service sweeps the bucket", () => {
  let rig: ServiceRig;
  let nc: NatsConnection;
  let work: string;
  /** An account folder (export of the service's account backup of every stream). */
  let folder: string;
  const original: Record<string, Picture> = {};

  const picture = async (stream: string): Promise<Picture> => ({ fingerprint: await fingerprint(nc, stream), consumers: await consumerStates(nc, stream) });
  /** The bucket's live objects under `<id>/`. */
  const objectsOf = async (id: string) =>
    (await rig.svc.catalogue.objects())
      .filter((o) => o.name.startsWith(`${id}/`))
      .map((o) => o.name)
      .sort();
  const jobOf = async (id: string) => (await request<JobRecord>(nc, `$BACKUP.job.${id}`)).body;
  const sweep = () => rig.svc.sweeper.sweep();

  before(async () => {
    rig = await startRig({ sweep: Sweep });
    nc = rig.nc;
    work = mkdtempSync(join(tmpdir(), "nats-backup-import-sweep-"));
    await makeStream(nc, "ORDERS", { messages: 300, deleteEvery: 17 });
    await makeStream(nc, "PARTS", { messages: 120 });
    await makeStream(nc, "SHIPS", { messages: 90 });
    for (const s of Streams) original[s] = await picture(s);
    const backup = await request<JobRecord>(nc, "$BACKUP.account", { data: true, streams: [...Streams], wait: true }, 180_000);
    assert.equal(backup.body.state, "completed", backup.raw);
    folder = join(work, "account");
    await exportBackup(nc, rig.svc.bucket, (backup.body.result as AccountManifest).id, folder);
  });

  after(async () => {
    openAllGates();
    await rig?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  test("held between its streams past every age bound while sweeps run, it is left whole, completes, and restores equal", async () => {
    const held = new Gate();
    let id = "";
    const events = await Collector.start(nc, "$BACKUP.status.>");
    const importNc = await rig.server.connect();
    const importing = importFolder(importNc, rig.svc.bucket, folder, {
      onStreamStored: async (stored) => {
        if (stored.done !== 1) return;
        id = stored.id;
        await held.pass();
      },
    }).finally(() => importNc.close());
    await held.entered;

    const stored = await objectsOf(id);
    assert.ok(stored.includes(`${id}/ORDERS/stream.tar.s2`), `the first stream's archive is committed: ${stored.join(", ")}`);
    assert.equal((await jobOf(id)).state, "running");
    assert.equal((await jobOf(id)).operation, "import");

    // What the sweeps must remove meanwhile, to show they had teeth: an upload no object names, and
    // the object of a backup without a manifest whose job is not running.
    const orphan = nuid.next();
    await jetstream(nc).publish(`$O.${rig.svc.bucket}.C.${orphan}`, "a chunk nobody committed");
    const deserted = newId();
    await rig.svc.catalogue.putText(`${deserted}/backup.json`, "{}");

    // Sweeps until the import's record was created more than twice staleJobMs ago: without its
    // refreshes it would be stale, and its objects are far older than orphanMinAgeMs.
    const created = Date.parse((await jobOf(id)).created);
    const reports: SweepReport[] = [];
    while (Date.now() - created <= 2 * Sweep.staleJobMs) {
      reports.push(await sweep());
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    reports.push(await sweep());
    const all = JSON.stringify(reports);
    assert.ok(reports.length >= 2, all);
    assert.ok(reports.every((r) => !r.abandonedJobs.includes(id) && !r.removedObjects.some((o) => o.startsWith(`${id}/`))), all);
    assert.ok(reports.some((r) => r.purgedUploads.includes(orphan)), `the orphan upload was purged: ${all}`);
    assert.ok(reports.some((r) => r.removedObjects.includes(`${deserted}/backup.json`)), `the deserted backup was removed: ${all}`);
    assert.deepEqual(await objectsOf(id), stored, "the import's objects are all there");
    const running = await jobOf(id);
    assert.equal(running.state, "running");
    assert.ok(Date.now() - Date.parse(running.updated) < Sweep.staleJobMs, `its record is refreshed: ${JSON.stringify(running)}`);

    held.open();
    const result = await importing;
    assert.equal(result.manifest.id, id);
    assert.deepEqual((result.manifest as AccountManifest).streams, [...Streams]);
    const ended = await jobOf(id);
    assert.equal(ended.state, "completed", JSON.stringify(ended));
    assert.equal((ended.result as AccountManifest).id, id);
    const terminal = await events.waitFor("the import's terminal event", (e) => e.id === id && e.state !== "running");
    assert.deepEqual(terminal, ended, "its one terminal event is its stored record");
    assert.ok(events.bodies((e) => e.id === id && e.state === "running").length >= 2, "running events while it was held");
    assert.equal((await request<AccountManifest>(nc, `$BACKUP.info.${id}`)).body.streams_with_data, Streams.length);
    const later = await sweep();
    assert.ok(!later.removedObjects.some((o) => o.startsWith(`${id}/`)), JSON.stringify(later));

    const jsm = await jetstreamManager(nc);
    for (const s of Streams) await jsm.streams.delete(s);
    const restored = await request<JobRecord>(nc, "$RESTORE.account", { backup: id, streams: [...Streams], wait: true }, 180_000);
    assert.equal(restored.body.state, "completed", restored.raw);
    for (const s of Streams) assert.deepEqual(await picture(s), original[s], `stream ${s} is as it was`);
    assert.equal(events.bodies((e) => e.id === id && e.state !== "running").length, 1, "one terminal event, and nothing after it");
    events.stop();
  });

  test("an import whose process is killed mid-way is failed as abandoned, and its objects removed", async () => {
    const child = spawn(process.execPath, ["--import", "tsx", childScript, "--server", rig.server.url, "--bucket", rig.svc.bucket, "--dir", folder], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    const storedFirst = () => {
      const line = /^STORED (\S+) ORDERS$/m.exec(out);
      if (line) return line[1];
      if (child.exitCode !== null) throw new Error(`import-child exited with ${child.exitCode}:\n${err}`);
      return false;
    };
    let id: string;
    try {
      id = await waitUntil("the child's first stream stored", storedFirst, 120_000);
    } finally {
      child.kill("SIGKILL");
      await exited;
    }
    const stored = await objectsOf(id);
    assert.ok(stored.includes(`${id}/ORDERS/stream.tar.s2`), stored.join(", "));
    assert.equal((await jobOf(id)).state, "running");

    const reports: SweepReport[] = [];
    await waitUntil(
      "the sweeper to fail the killed import and remove its objects",
      async () => {
        reports.push(await sweep());
        return (await objectsOf(id)).length === 0 && (await jobOf(id)).state !== "running";
      },
      60_000,
      200,
    );
    const all = JSON.stringify(reports);
    assert.equal(reports.filter((r) => r.abandonedJobs.includes(id)).length, 1, all);
    assert.deepEqual(reports.flatMap((r) => r.removedObjects.filter((o) => o.startsWith(`${id}/`))).sort(), stored, all);
    const record = await jobOf(id);
    assert.equal(record.state, "failed");
    assert.equal(record.error?.code, 503);
    assert.match(record.error?.description ?? "", /^import job \S+ was abandoned: its instance nats-backup import \d+@\S+ stopped updating it$/);
    const info = await request(nc, `$BACKUP.info.${id}`);
    assert.equal(info.errorCode, 404, info.raw);
  });
});
