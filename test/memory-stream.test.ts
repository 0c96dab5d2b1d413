/**
 * Memory-storage streams: nats-server 2.15 snapshots them (a v2 archive), so they are backed up
 * with their data and restored to an equal memory stream there; older servers cannot ("snapshot
 * failed: no impl"), so the backup is a 400 that names the server's version and touches nothing.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { jetstreamManager } from "@nats-io/jetstream";
import type { StreamManifest, JobRecord } from "../src/mod.ts";
import { Capabilities, parseServerVersion } from "../src/jetstream/server-version.ts";
import { makeStream } from "./harness/fixtures.ts";
import { allStreams } from "./harness/inspect.ts";
import { fingerprint } from "./harness/proc-checks.ts";
import { request, startRig, type ServiceRig } from "./harness/service.ts";

describe("a memory-storage stream", () => {
  let rig: ServiceRig;

  before(async () => {
    rig = await startRig({ sweep: { intervalMs: 3_600_000 } });
    await makeStream(rig.nc, "MEM", { messages: 120, extraConfig: { storage: "memory" } });
  });
  after(async () => {
    await rig?.stop();
  });

  test("is backed up with its data where the server can snapshot it, else refused with 400 naming the server", async () => {
    const version = parseServerVersion(rig.server.version.text)!;
    const original = await fingerprint(rig.nc, "MEM");
    const reply = await request<JobRecord>(rig.nc, "$BACKUP.stream.MEM", { wait: true }, 60_000);
    if (!Capabilities.snapshotsMemoryStreams(version)) {
      assert.equal(reply.errorCode, 400, reply.raw);
      assert.equal(
        reply.errorHeader,
        `stream MEM uses memory storage, which nats-server ${version.text} cannot snapshot (nats-server 2.15 and later can)`,
      );
      assert.equal(reply.job, null, "refused before a job was recorded");
      const stored = await allStreams(rig.nc);
      assert.equal(stored["OBJ_backups"]?.messages, 0, "nothing was written to the bucket");
      assert.equal(stored["KV_backups-jobs"]?.messages ?? 0, 0, "no job record was written");
      const listed = await request<{ backups: StreamManifest[] }>(rig.nc, "$BACKUP.list");
      assert.deepEqual(listed.body.backups, []);
      return;
    }
    assert.equal(reply.errorCode, null, reply.raw);
    const manifest = reply.body.result as StreamManifest;
    assert.equal(manifest.archive_format, "v2");
    assert.equal(manifest.messages, 120);
    const jsm = await jetstreamManager(rig.nc);
    await jsm.streams.delete("MEM");
    const restored = await request<JobRecord>(rig.nc, "$RESTORE.stream.MEM", { wait: true }, 60_000);
    assert.equal(restored.errorCode, null, restored.raw);
    assert.equal((await jsm.streams.info("MEM")).config.storage, "memory");
    assert.deepEqual(await fingerprint(rig.nc, "MEM"), original);
  });
});
