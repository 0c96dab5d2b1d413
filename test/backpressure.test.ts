import assert from "node:assert/strict";
import { randomBytes, createHash } from "node:crypto";
import { after, before, describe, test } from "node:test";
import type { NatsConnection, Subscription } from "@nats-io/nats-core";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { BackupManifest, JobRecord } from "../src/mod.ts";
import { jsApi, waitUntil } from "./harness/inspect.ts";
import { NatsServer } from "./harness/nats-server.ts";
import { ServiceProcess, stopAllServices } from "./harness/proc-service.ts";
import { request } from "./harness/service.ts";

const MiB = 1024 * 1024;
const SlowConsumer = /Slow Consumer Detected/g;

/**
 * The server sends a snapshot as fast as the bucket stores it; a service that falls behind
 * watching it is dropped by the server as a slow consumer (here after 2 MiB instead of 64). The
 * service runs in a process of its own, which the test freezes (SIGSTOP) the moment it asks for
 * the data and thaws (SIGCONT) once the server has said it dropped a slow consumer: it falls
 * behind whatever the machine's speed.
 */
describe("a snapshot that outruns the service", () => {
  let server: NatsServer;
  let nc: NatsConnection;
  let svc: ServiceProcess;

  before(async () => {
    server = await NatsServer.start({ config: "max_pending: 2MB" });
    nc = await server.connect();
    // Read-back windows that fit under the small max_pending; its warnings on stderr, to check what it did.
    svc = await ServiceProcess.start(server.url, { tuning: { readBudgetBytes: 512 * 1024 } }, { env: { TEST_LOG_LEVEL: "warn" } });
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: "FAST", subjects: ["fast.>"], storage: "file" as never });
    const js = jetstream(nc);
    for (let i = 0; i < 48; i++) await js.publish(`fast.${i % 4}`, randomBytes(512 * 1024));
  });
  after(async () => {
    svc?.resume();
    await stopAllServices();
    await nc?.close();
    await server?.stop();
  });

  /**
   * Freezes the service as its request on `apiSubject` goes by (the server then starts sending),
   * and thaws it once the server logged one more slow consumer than before; bounded. Should the
   * server refuse that request, the service is thawed at once and the server's answer is the error.
   */
  async function freezeUntilSlowConsumer(apiSubject: string, isTheRequest: (body: string) => boolean = () => true) {
    const slowBefore = (server.log.match(SlowConsumer) ?? []).length;
    let frozenAt = 0;
    let refused: string | null = null;
    const answers: Subscription[] = [];
    const sub = nc.subscribe(apiSubject, {
      callback: (err, msg) => {
        if (err || frozenAt || !isTheRequest(msg.string())) return;
        svc.pause();
        frozenAt = Date.now();
        // The server's answer goes to the frozen service; a copy of it tells whether the server went ahead.
        if (msg.reply) {
          answers.push(
            nc.subscribe(msg.reply, {
              max: 1,
              callback: (_, answer) => {
                if (/"error"/.test(answer.string())) refused = answer.string();
              },
            }),
          );
        }
      },
    });
    await nc.flush();
    return {
      /** Waits for the freeze and the slow consumer, then thaws the service; the milliseconds it was frozen. */
      async thawed(): Promise<number> {
        try {
          await waitUntil(`the service to ask on ${apiSubject}`, () => frozenAt > 0, 60_000, 5);
          await waitUntil(
            "the server to drop the frozen service's connection as a slow consumer",
            () => refused !== null || (server.log.match(SlowConsumer) ?? []).length > slowBefore,
            30_000,
            5,
          );
          if (refused !== null) throw new Error(`the server refused the service's request on ${apiSubject}: ${refused}`);
          return Date.now() - frozenAt;
        } finally {
          sub.unsubscribe();
          for (const a of answers) a.unsubscribe();
          svc.resume();
        }
      },
    };
  }

  test("loses its watch, takes the snapshot again read back from the bucket, and the backup is whole", async (t) => {
    const stored = await fingerprint(nc, "FAST");
    const logFrom = svc.log.length;
    const freeze = await freezeUntilSlowConsumer("$JS.API.STREAM.SNAPSHOT.FAST");
    const done = request<JobRecord>(nc, "$BACKUP.stream.FAST", { wait: true }, 120_000);
    t.diagnostic(`frozen for ${await freeze.thawed()} ms`);

    const reply = await done;
    assert.equal(reply.errorCode, null, reply.raw);
    assert.equal(reply.body.state, "completed");
    const warnings = svc.log.slice(logFrom);
    assert.match(warnings, /snapshot watch lost; taking the snapshot again, read back from the bucket/, warnings.slice(0, 2000));
    const manifest = reply.body.result as BackupManifest;
    assert.ok(manifest.size > 20 * MiB, `archive of ${manifest.size} bytes`);

    await (await jetstreamManager(nc)).streams.delete("FAST");
    const restored = await request<JobRecord>(nc, "$RESTORE.stream.FAST", { wait: true, backup: manifest.id }, 120_000);
    assert.equal(restored.errorCode, null, restored.raw);
    assert.deepEqual(await fingerprint(nc, "FAST"), stored);
  });

  test("a restore whose watch on the delivery falls behind checks the archive read back, and restores exactly", async (t) => {
    const stored = await fingerprint(nc, "FAST");
    const backup = await request<JobRecord>(nc, "$BACKUP.stream.FAST", { wait: true }, 120_000);
    assert.equal(backup.errorCode, null, backup.raw);
    const manifest = backup.body.result as BackupManifest;
    await (await jetstreamManager(nc)).streams.delete("FAST");
    const logFrom = svc.log.length;

    // The bucket's delivery consumer, which pushes the archive to the restore's subject, starts as it is created.
    const freeze = await freezeUntilSlowConsumer("$JS.API.CONSUMER.CREATE.OBJ_backups", (body) => body.includes('"deliver_subject":"$JS.SNAPSHOT.RESTORE.'));
    const done = request<JobRecord>(nc, "$RESTORE.stream.FAST", { wait: true, backup: manifest.id }, 120_000);
    t.diagnostic(`frozen for ${await freeze.thawed()} ms`);

    const restored = await done;
    assert.equal(restored.errorCode, null, restored.raw);
    assert.equal(restored.body.state, "completed");
    const warnings = svc.log.slice(logFrom);
    assert.match(warnings, /reading the archive back to check it/, `the service checked the archive read back: ${warnings.slice(0, 2000)}`);
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
