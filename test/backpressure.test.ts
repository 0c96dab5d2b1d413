import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";
import type { NatsConnection } from "@nats-io/nats-core";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { BackupManifest, BackupService, JobRecord } from "../src/mod.ts";
import { createHash } from "node:crypto";
import { jsApi } from "./harness/inspect.ts";
import { NatsServer } from "./harness/nats-server.ts";
import { request, startService, warningsLogger } from "./harness/service.ts";

const MiB = 1024 * 1024;

/**
 * The server sends a snapshot as fast as the bucket stores it; a service that falls behind
 * watching it is dropped by the server as a slow consumer (here after 2 MiB instead of 64).
 */
describe("a snapshot that outruns the service", () => {
  let server: NatsServer;
  let nc: NatsConnection;
  let serviceNc: NatsConnection;
  let svc: BackupService;
  /** What the service logged at warn and above. */
  const { logger, warnings } = warningsLogger();

  before(async () => {
    server = await NatsServer.start({ config: "max_pending: 2MB" });
    nc = await server.connect();
    serviceNc = await server.connect({ name: "service" });
    // Read-back windows that fit under the small max_pending.
    svc = await startService(serviceNc, { tuning: { readBudgetBytes: 512 * 1024 }, logger });
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: "FAST", subjects: ["fast.>"], storage: "file" as never });
    const js = jetstream(nc);
    for (let i = 0; i < 48; i++) await js.publish(`fast.${i % 4}`, randomBytes(512 * 1024));
  });
  after(async () => {
    await svc?.stop();
    await serviceNc?.close();
    await nc?.close();
    await server?.stop();
  });

  test("loses its watch, takes the snapshot again read back from the bucket, and the backup is whole", async () => {
    const stored = await fingerprint(nc, "FAST");
    // The service asks for the snapshot after accepting the job; the server's advisory tells when.
    const snapshotCreated = nc.subscribe("$JS.EVENT.ADVISORY.STREAM.SNAPSHOT_CREATE.FAST", { max: 1, timeout: 30_000 });
    await nc.flush();
    const done = request<JobRecord>(nc, "$BACKUP.stream.FAST", { wait: true }, 120_000);
    for await (const _ of snapshotCreated) break;
    // Hold this process (the service's too) while the server sends: the job's bulk connection falls behind.
    const until = Date.now() + 400;
    while (Date.now() < until);

    const reply = await done;
    assert.equal(reply.errorCode, null, reply.raw);
    assert.equal(reply.body.state, "completed");
    assert.match(server.log, /Slow Consumer Detected/, "the server dropped the watching connection");
    const manifest = reply.body.result as BackupManifest;
    assert.ok(manifest.size > 20 * MiB, `archive of ${manifest.size} bytes`);

    await (await jetstreamManager(nc)).streams.delete("FAST");
    const restored = await request<JobRecord>(nc, "$RESTORE.stream.FAST", { wait: true, backup: manifest.id }, 120_000);
    assert.equal(restored.errorCode, null, restored.raw);
    assert.deepEqual(await fingerprint(nc, "FAST"), stored);
  });

  test("a restore whose watch on the delivery falls behind checks the archive read back, and restores exactly", async () => {
    const stored = await fingerprint(nc, "FAST");
    const backup = await request<JobRecord>(nc, "$BACKUP.stream.FAST", { wait: true }, 120_000);
    assert.equal(backup.errorCode, null, backup.raw);
    const manifest = backup.body.result as BackupManifest;
    await (await jetstreamManager(nc)).streams.delete("FAST");
    const slowConsumers = (server.log.match(/Slow Consumer Detected/g) ?? []).length;
    warnings.length = 0;

    // The bucket's delivery consumer starts right after the service watches the restore's subject.
    const deliveryCreated = nc.subscribe("$JS.EVENT.ADVISORY.CONSUMER.CREATED.OBJ_backups.*", { max: 1, timeout: 30_000 });
    await nc.flush();
    const done = request<JobRecord>(nc, "$RESTORE.stream.FAST", { wait: true, backup: manifest.id }, 120_000);
    for await (const _ of deliveryCreated) break;
    // Hold this process (the service's too) while the bucket delivers: the watching connection falls behind.
    const until = Date.now() + 400;
    while (Date.now() < until);

    const restored = await done;
    assert.equal(restored.errorCode, null, restored.raw);
    assert.equal(restored.body.state, "completed");
    assert.ok((server.log.match(/Slow Consumer Detected/g) ?? []).length > slowConsumers, "the server dropped the watching connection");
    assert.ok(
      warnings.some((w) => /reading the archive back to check it/.test(w)),
      `the service checked the archive read back: ${JSON.stringify(warnings)}`,
    );
    assert.deepEqual(await fingerprint(nc, "FAST"), stored);
  });
});

/** Each message's sequence, subject and SHA-256, read one at a time (replies stay under max_pending). */
async function fingerprint(nc: NatsConnection, stream: string): Promise<string[]> {
  const out: string[] = [];
  for (let seq = 1; ; seq++) {
    const reply = await jsApi<{ message?: { subject: string; data: string } }>(nc, `STREAM.MSG.GET.${stream}`, { seq });
    if (!reply.message) return out;
    out.push(`${seq} ${reply.message.subject} ${createHash("sha256").update(reply.message.data).digest("hex")}`);
  }
}
