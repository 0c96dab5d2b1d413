import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { nuid } from "@nats-io/nats-core";
import { jetstream } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { newId } from "../src/jobs/ids.ts";
import { DefaultSweep } from "../src/jobs/sweeper.ts";
import type { StreamManifest, JobRecord } from "../src/mod.ts";
import { makeStream } from "./harness/fixtures.ts";
import { jsApi, subjectCounts } from "./harness/inspect.ts";
import { request, startRig, type ServiceRig } from "./harness/service.ts";

describe("the sweeper", () => {
  let rig: ServiceRig;

  before(async () => {
    // No timer: each test sweeps when it wants; orphans count as old after half a second.
    rig = await startRig({ sweep: { intervalMs: 3_600_000, orphanMinAgeMs: 500 } });
    await makeStream(rig.nc, "KEEP", { messages: 200 });
  });
  after(async () => {
    await rig?.stop();
  });

  test("removes an upload whose writer died while committing it (end message already deleted), and nothing else", async () => {
    const { nc, svc } = rig;
    const backup = await request<JobRecord>(nc, "$BACKUP.stream.KEEP", { wait: true }, 60_000);
    assert.equal(backup.errorCode, null, backup.raw);
    const kept = (backup.body.result as StreamManifest).chunks;

    // What a writer killed between deleting the snapshot's end message and writing the metadata leaves.
    const stream = `OBJ_${svc.bucket}`;
    const subject = `$O.${svc.bucket}.C.${nuid.next()}`;
    const js = jetstream(nc);
    for (const data of ["one", "two", "three"]) await js.publish(subject, data);
    const end = await js.publish(subject, new Uint8Array(0));
    const deleted = await jsApi<{ success?: boolean }>(nc, `STREAM.MSG.DELETE.${stream}`, { seq: end.seq, no_erase: true });
    assert.equal(deleted.success, true, JSON.stringify(deleted));
    assert.deepEqual(await subjectCounts(nc, stream, subject), { [subject]: 3 });

    await new Promise((resolve) => setTimeout(resolve, 700));
    // The first may be the sweep the service started with, still running, or a fresh one that
    // purges the upload already: the second is fresh, so one of the two purges it.
    const reports = [await svc.sweeper.sweep(), await svc.sweeper.sweep()];
    assert.equal(reports.filter((r) => r.purgedUploads.includes(subject.split(".").at(-1)!)).length, 1, JSON.stringify(reports));
    assert.deepEqual(await subjectCounts(nc, stream, subject), {});

    const listed = await request<{ backups: StreamManifest[] }>(nc, "$BACKUP.list");
    const manifest = listed.body.backups.find((m) => m.id === backup.body.id);
    assert.ok(manifest, "the completed backup is still listed");
    // backup.json, stream.tar.s2 (its `kept` chunks) and manifest.json: three uploads, untouched.
    const remaining = await subjectCounts(nc, stream, `$O.${svc.bucket}.C.>`);
    assert.equal(Object.keys(remaining).length, 3, JSON.stringify(remaining));
    assert.ok(Object.values(remaining).includes(kept), JSON.stringify(remaining));
  });

  test("leaves a job alone while its record is fresh, though its instance does not answer PING; fails it once the record goes quiet", async () => {
    const { nc, svc } = rig;
    const done = await request<JobRecord>(nc, "$BACKUP.stream.KEEP", { wait: true }, 60_000);
    assert.equal(done.errorCode, null, done.raw);
    // A running job of an instance that answers no PING (busy, or gone), its record as a job writes it.
    const { ended: _ended, result: _result, ...base } = done.body;
    const job: JobRecord = { ...base, id: newId(), state: "running", instance: "BusyInstanceNeverAnswers" };
    const kv = await new Kvm(jetstream(nc)).open(`${svc.bucket}-jobs`);
    const put = async (updatedMsAgo: number) =>
      kv.put(job.id, JSON.stringify({ ...job, updated: new Date(Date.now() - updatedMsAgo).toISOString() }));

    await put(0);
    await svc.sweeper.sweep();
    const fresh = await svc.sweeper.sweep();
    assert.ok(!fresh.abandonedJobs.includes(job.id), `a job refreshed just now was abandoned: ${JSON.stringify(fresh)}`);
    assert.equal((await kv.get(job.id))?.json<JobRecord>().state, "running");

    await put(DefaultSweep.silentJobMs + 1_000);
    const quiet = await svc.sweeper.sweep();
    assert.ok(quiet.abandonedJobs.includes(job.id), JSON.stringify(quiet));
    const record = (await kv.get(job.id))?.json<JobRecord>();
    assert.equal(record?.state, "failed");
    assert.match(record?.error?.description ?? "", /was abandoned: its instance BusyInstanceNeverAnswers no longer answers \$SRV\.PING/);
  });
});
