import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { NatsConnection } from "@nats-io/nats-core";
import { jetstreamManager } from "@nats-io/jetstream";
import type { JobRecord, JobStarted, StreamManifest } from "../src/mod.ts";
import { consumerStates, makeStream, readStream } from "./harness/fixtures.ts";
import { request, startRig, type ServiceRig } from "./harness/service.ts";

describe("stream backup and restore", () => {
  let rig: ServiceRig;
  let nc: NatsConnection;

  before(async () => {
    rig = await startRig();
    nc = rig.nc;
  });
  after(async () => {
    await rig?.stop();
  });

  test("a round trip keeps every message, header, timestamp, interior delete and consumer state", async () => {
    await makeStream(nc, "ORDERS", { messages: 3000, deleteEvery: 97 });
    const before = await readStream(nc, "ORDERS");
    const consumersBefore = await consumerStates(nc, "ORDERS");
    assert.equal(before.length, 3000 - 30);
    assert.equal(consumersBefore.length, 2);

    const started = await request<JobStarted>(nc, "$BACKUP.stream.ORDERS", "");
    assert.equal(started.errorCode, null, started.raw);
    assert.equal(started.body.state, "running");
    assert.equal(started.body.operation, "backup");
    assert.equal(started.body.status_subject, `$BACKUP.status.${started.body.id}`);

    const record = await waitForJob(nc, started.body.id);
    assert.equal(record.state, "completed", JSON.stringify(record.error));
    const manifest = record.result as StreamManifest;
    assert.equal(manifest.messages, before.length);
    assert.deepEqual(manifest.consumers, ["AUDIT", "PROCESSOR"]);
    assert.match(manifest.sha256, /^SHA-256=[-_A-Za-z0-9]{43}=$/);

    const jsm = await jetstreamManager(nc);
    await jsm.streams.delete("ORDERS");

    const restored = await request<JobRecord>(nc, "$RESTORE.stream.ORDERS", { wait: true }, 120_000);
    assert.equal(restored.errorCode, null, restored.raw);
    assert.equal(restored.body.state, "completed");
    assert.equal(restored.body.backup, manifest.id);

    assert.deepEqual(await readStream(nc, "ORDERS"), before);
    assert.deepEqual(await consumerStates(nc, "ORDERS"), consumersBefore);
  });

  test("restoring onto an existing stream touches nothing and says so as the nats CLI does", async () => {
    const countBefore = (await readStream(nc, "ORDERS")).length;
    const reply = await request(nc, "$RESTORE.stream.ORDERS", { wait: true });
    assert.equal(reply.errorCode, 409);
    assert.match(reply.errorHeader ?? "", /stream ORDERS already exist/);
    assert.deepEqual(reply.body, { error: { code: 409, description: reply.errorHeader } });
    // The refused request still was a job, and the reply names it.
    assert.ok(reply.job, "the error reply names its job in Nats-Backup-Job");
    const job = await request<JobRecord>(nc, `$BACKUP.job.${reply.job}`);
    assert.equal(job.body.state, "failed");
    assert.equal(job.body.error?.code, 409);
    assert.equal((await readStream(nc, "ORDERS")).length, countBefore);
  });
});

async function waitForJob(nc: NatsConnection, id: string, timeoutMs = 120_000): Promise<JobRecord> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const reply = await request<JobRecord>(nc, `$BACKUP.job.${id}`);
    if (reply.errorCode === null && reply.body.state !== "running") return reply.body;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`job ${id} did not end in ${timeoutMs} ms`);
}
