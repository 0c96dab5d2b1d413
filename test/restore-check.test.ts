import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { Msg, NatsConnection } from "@nats-io/nats-core";
import { jetstreamManager } from "@nats-io/jetstream";
import type { StreamManifest, BackupService, JobRecord } from "../src/mod.ts";
import { makeStream } from "./harness/fixtures.ts";
import { NatsServer } from "./harness/nats-server.ts";
import { fingerprint } from "./harness/proc-checks.ts";
import { request, startService, warningsLogger } from "./harness/service.ts";
import { archiveObject, flipOneBit, rewriteChunks } from "./harness/archive.ts";
import { jsApi } from "./harness/inspect.ts";

const Stream = "CHECKED";

/**
 * A restore relays the archive from the bucket to the server's restore and checks it on the way:
 * one consumer on the bucket, read once, and no permission on the restore's subject beyond
 * publishing to it (the server answers each chunk to the service's own inbox).
 */
describe("the restore's check", () => {
  let server: NatsServer;
  let nc: NatsConnection;

  before(async () => {
    server = await NatsServer.start({
      config: `authorization {
  users = [
    { user: app, password: app }
    { user: restricted, password: restricted, permissions: { subscribe: { deny: ["$JS.SNAPSHOT.>"] } } }
  ]
}`,
    });
    nc = await server.connect({ user: "app", pass: "app" });
    await makeStream(nc, Stream, { messages: 300, consumers: true });
  });
  after(async () => {
    await nc?.close();
    await server?.stop();
  });

  /** Backs the stream up and restores it with a service connected as `user`; what it logged at warn, and the consumers the restore made on the bucket. */
  async function roundTrip(user: string): Promise<{ warnings: string[]; bucketConsumers: number }> {
    const { logger, warnings } = warningsLogger();
    const serviceNc = await server.connect({ user, pass: user });
    let svc: BackupService | null = null;
    try {
      svc = await startService(serviceNc, { logger });
      const original = await fingerprint(nc, Stream);
      const backup = await request<JobRecord>(nc, `$BACKUP.stream.${Stream}`, { wait: true, chunk_size: 65536 }, 60_000);
      assert.equal(backup.errorCode, null, backup.raw);
      const manifest = backup.body.result as StreamManifest;
      assert.ok(manifest.chunks > 4, `archive of ${manifest.chunks} chunks`);
      await (await jetstreamManager(nc)).streams.delete(Stream);

      // Consumers on the archive's chunks only: the manifest index's consumer (on the metadata
      // subjects) may be recreated meanwhile, and a 2.9 server takes it on this same subject.
      const chunks = `$O.${svc.bucket}.C.${(await archiveObject(nc, svc.bucket, manifest.id)).nuid}`;
      const created: string[] = [];
      const onCreate = (_: unknown, m: Msg) => {
        const { config } = JSON.parse(m.string()) as { config?: { filter_subject?: string; filter_subjects?: string[] } };
        if (config?.filter_subject === chunks || config?.filter_subjects?.includes(chunks)) created.push(m.subject);
      };
      // Both forms of the request: CONSUMER.CREATE.<stream> and, from 2.10, CONSUMER.CREATE.<stream>.<name>[.<filter>].
      const subs = ["$JS.API.CONSUMER.CREATE.OBJ_backups", "$JS.API.CONSUMER.CREATE.OBJ_backups.>"].map((s) => nc.subscribe(s, { callback: onCreate }));
      await nc.flush();
      const restored = await request<JobRecord>(nc, `$RESTORE.stream.${Stream}`, { wait: true, backup: manifest.id }, 60_000);
      await nc.flush();
      for (const sub of subs) sub.unsubscribe();
      assert.equal(restored.errorCode, null, restored.raw);
      assert.equal(restored.body.state, "completed");
      assert.deepEqual(await fingerprint(nc, Stream), original);
      return { warnings, bucketConsumers: created.length };
    } finally {
      await svc?.stop();
      await serviceNc.close();
    }
  }

  test("relays and checks the archive: one consumer on the bucket, nothing read twice", async () => {
    const { warnings, bucketConsumers } = await roundTrip("app");
    assert.deepEqual(warnings, []);
    assert.equal(bucketConsumers, 1, "only the relay's consumer");
  });

  test("needs no permission to subscribe to the restore's subjects", async () => {
    const { warnings, bucketConsumers } = await roundTrip("restricted");
    assert.deepEqual(warnings, []);
    assert.equal(bucketConsumers, 1);
  });

  test("a damaged archive is refused before the server builds anything, and leaves no stream", async () => {
    const serviceNc = await server.connect({ user: "restricted", pass: "restricted" });
    const svc = await startService(serviceNc);
    try {
      const backup = await request<JobRecord>(nc, `$BACKUP.stream.${Stream}`, { wait: true, chunk_size: 65536 }, 60_000);
      assert.equal(backup.errorCode, null, backup.raw);
      const manifest = backup.body.result as StreamManifest;
      await rewriteChunks(nc, svc.bucket, manifest.id, flipOneBit);
      await (await jetstreamManager(nc)).streams.delete(Stream);

      const reply = await request(nc, `$RESTORE.stream.${Stream}`, { wait: true, backup: manifest.id }, 60_000);
      assert.equal(reply.errorCode, 500, reply.raw);
      assert.match(reply.errorHeader ?? "", /damaged: digest .* does not match/);
      const info = await jsApi(nc, `STREAM.INFO.${Stream}`);
      assert.equal(info.error?.err_code, 10059, `stream ${Stream} does not exist: ${JSON.stringify(info)}`);
    } finally {
      await svc.stop();
      await serviceNc.close();
    }
  });
});
