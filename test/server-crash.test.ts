import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { BackupManifest, JobRecord } from "../src/mod.ts";
import { chunkSubject, metaSubject } from "../src/catalogue/object-format.ts";
import { makeStream } from "./harness/fixtures.ts";
import { jsApi, subjectCounts, waitUntil } from "./harness/inspect.ts";
import { fingerprint } from "./harness/proc-checks.ts";
import { request, startRig, type ServiceRig } from "./harness/service.ts";

/**
 * nats-server killed (SIGKILL) right after a backup completed. A 2.9 server keeps a message
 * delete in memory until it next writes its block index, so it comes back with the snapshot's
 * empty end message, which the backup had deleted from its archive, back in the bucket: fed to a
 * restore, it would end the upload early. The backup must still restore, exactly.
 */
describe("nats-server killed right after a backup", () => {
  let rig: ServiceRig;

  before(async () => {
    rig = await startRig();
    await makeStream(rig.nc, "CRASHED", { messages: 3000, consumers: false });
  });
  after(async () => {
    await rig?.stop();
  });

  test("the backup is listed after the restart and restores exactly", async (t) => {
    const { nc, server } = rig;
    const stored = await fingerprint(nc, "CRASHED");
    const reply = await request<JobRecord>(nc, "$BACKUP.stream.CRASHED", { wait: true, chunk_size: 16_384 }, 60_000);
    assert.equal(reply.errorCode, null, reply.raw);
    const manifest = reply.body.result as BackupManifest;

    await server.halt("SIGKILL");
    await server.restart();
    const listed = await waitUntil(
      "the service to list backups again",
      async () => (await request<{ backups: BackupManifest[] }>(nc, "$BACKUP.list", {}, 1_000).catch(() => null))?.body.backups,
      30_000,
      200,
    );
    assert.ok(listed.some((b) => b.id === manifest.id), "the backup is still listed");

    // Whether this server brought the end message back (2.9 does; a server that keeps deletes would not).
    const meta = (await jsApi<{ message?: { data: string } }>(nc, "STREAM.MSG.GET.OBJ_backups", {
      last_by_subj: metaSubject("backups", `${manifest.id}/stream.tar.s2`),
    })).message;
    assert.ok(meta, "the archive's metadata survived");
    const { nuid } = JSON.parse(Buffer.from(meta.data, "base64").toString()) as { nuid: string };
    const onSubject = Object.values(await subjectCounts(nc, "OBJ_backups", chunkSubject("backups", nuid)))[0] ?? 0;
    t.diagnostic(`archive subject holds ${onSubject} messages for ${manifest.chunks} chunks${onSubject > manifest.chunks ? " (the end message came back)" : ""}`);

    await jsApi(nc, "STREAM.DELETE.CRASHED");
    const restored = await request<JobRecord>(nc, "$RESTORE.stream.CRASHED", { wait: true, backup: manifest.id }, 60_000);
    assert.equal(restored.errorCode, null, restored.raw);
    assert.deepEqual(await fingerprint(nc, "CRASHED"), stored);
  });
});
