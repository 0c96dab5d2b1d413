import assert from "node:assert/strict";
import { randomBytes, createHash } from "node:crypto";
import { after, before, describe, test } from "node:test";
import type { NatsConnection, Subscription } from "@nats-io/nats-core";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { StreamManifest, JobRecord } from "../src/mod.ts";
import { jsApi, waitUntil } from "./harness/inspect.ts";
import { NatsServer } from "./harness/nats-server.ts";
import { ServiceProcess, stopAllServices } from "./harness/proc-service.ts";
import { request } from "./harness/service.ts";
import { Capabilities, parseServerVersion } from "../src/jetstream/server-version.ts";

const MiB = 1024 * 1024;
const SlowConsumer = /Slow Consumer Detected/g;
/** How long a stalled service is frozen: under the 5 s a server waits for a snapshot's ack or a restore's next chunk. */
const StallMs = 2_000;

/**
 * Where the server writes a snapshot into the bucket itself, it sends as fast as the bucket
 * stores, and a service that falls behind watching it is dropped as a slow consumer (here after
 * 12 MiB instead of 64): it must take the snapshot again the careful way. Where the service relays
 * the data (every restore; backups on servers that need it), the server waits for it. The service
 * runs in a process of its own, which the test freezes (SIGSTOP) the moment it asks for the data
 * and thaws (SIGCONT) once the server dropped it, or after a stall the server must sit out.
 */
describe("a snapshot that outruns the service", () => {
  let server: NatsServer;
  let nc: NatsConnection;
  let svc: ServiceProcess;
  /** Whether the bucket paces the server (it acks what it stores), or the service does (its acks). */
  let watched: boolean;

  before(async () => {
    // Above the 8 MiB a 2.10.12 to 2.12.4 server keeps unacked whatever it is asked (no window_size),
    // so that a relay after a lost watch fits; far below the 24 MiB stream a frozen watcher falls behind.
    server = await NatsServer.start({ config: "max_pending: 12MB" });
    nc = await server.connect();
    // Windows that fit under the small max_pending: read-backs, the snapshot (2.12.5+) and the restore's relay;
    // its warnings on stderr, to check what it did.
    svc = await ServiceProcess.start(
      server.url,
      { tuning: { readBudgetBytes: 512 * 1024, snapshotWindowBytes: MiB, restoreWindow: 4 } },
      { env: { TEST_LOG_LEVEL: "warn" } },
    );
    const version = parseServerVersion(server.version.text)!;
    watched = Capabilities.answersJetStreamReplies(version);
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

  test("a snapshot the service cannot keep up with ends in a whole backup", async (t) => {
    const stored = await fingerprint(nc, "FAST");
    const logFrom = svc.log.length;
    const slowBefore = slowConsumers();
    if (watched) {
      // The server writes into the bucket and the service watches: frozen, it is dropped, and takes the snapshot again.
      const freeze = await freezeUntilSlowConsumer("$JS.API.STREAM.SNAPSHOT.FAST");
      const done = request<JobRecord>(nc, "$BACKUP.stream.FAST", { wait: true }, 120_000);
      t.diagnostic(`frozen for ${await freeze.thawed()} ms`);
      const reply = await done;
      const warnings = svc.log.slice(logFrom);
      assert.equal(reply.errorCode, null, `${reply.raw}\nthe service said:\n${warnings.slice(0, 3000)}\nthe server said:\n${serverTrouble()}`);
      assert.match(warnings, /snapshot watch lost; taking the snapshot again/, warnings.slice(0, 2000));
      await restoreAndCompare(reply, stored);
    } else {
      // The service acks what it sees (the bucket will not): the server waits for it, so a frozen service is not dropped.
      const freeze = await freezeFor("$JS.API.STREAM.SNAPSHOT.FAST", StallMs);
      const reply = await request<JobRecord>(nc, "$BACKUP.stream.FAST", { wait: true }, 120_000);
      t.diagnostic(`frozen for ${await freeze.thawed} ms`);
      assert.equal(reply.errorCode, null, reply.raw);
      assert.equal(slowConsumers(), slowBefore, "the server dropped no slow consumer");
      await restoreAndCompare(reply, stored);
    }
  });

  test("a restore whose service stalls holds the bucket back, and restores exactly", async (t) => {
    const stored = await fingerprint(nc, "FAST");
    const backup = await request<JobRecord>(nc, "$BACKUP.stream.FAST", { wait: true }, 120_000);
    assert.equal(backup.errorCode, null, backup.raw);
    const manifest = backup.body.result as StreamManifest;
    await (await jetstreamManager(nc)).streams.delete("FAST");
    const slowBefore = slowConsumers();
    // The bucket's consumer that feeds the relay starts delivering as it is created.
    const freeze = await freezeFor("$JS.API.CONSUMER.CREATE.OBJ_backups", StallMs, (body) => body.includes('"description":"nats-backup: restore of'));
    const restored = await request<JobRecord>(nc, "$RESTORE.stream.FAST", { wait: true, backup: manifest.id }, 120_000);
    t.diagnostic(`frozen for ${await freeze.thawed} ms`);
    assert.equal(restored.errorCode, null, restored.raw);
    assert.equal(restored.body.state, "completed");
    assert.equal(slowConsumers(), slowBefore, "the server dropped no slow consumer");
    assert.deepEqual(await fingerprint(nc, "FAST"), stored);
  });

  const slowConsumers = () => (server.log.match(SlowConsumer) ?? []).length;
  /** The server's log lines about dropped or closed client connections, for a failure's message. */
  const serverTrouble = () =>
    server.log
      .split("\n")
      .filter((line) => /Slow Consumer|[Cc]losed|\[(ERR|WRN)\]/.test(line))
      .slice(-20)
      .join("\n");

  /**
   * Freezes the service for `ms` as its request on `apiSubject` goes by: long enough for the
   * server to send all it may before it waits, shorter than what it waits (5 s) before giving up.
   * Resolves once listening; `thawed`, to the time it was frozen.
   */
  async function freezeFor(apiSubject: string, ms: number, isTheRequest: (body: string) => boolean = () => true): Promise<{ thawed: Promise<number> }> {
    let frozen!: (at: number) => void;
    const frozenAt = new Promise<number>((resolve) => (frozen = resolve));
    const sub = nc.subscribe(apiSubject, {
      callback: (err, msg) => {
        if (err || !isTheRequest(msg.string())) return;
        sub.unsubscribe();
        svc.pause();
        frozen(Date.now());
        setTimeout(() => svc.resume(), ms);
      },
    });
    await nc.flush();
    return { thawed: frozenAt.then((at) => new Promise((resolve) => setTimeout(() => resolve(Date.now() - at), ms))) };
  }

  async function restoreAndCompare(reply: { body: JobRecord }, stored: string[]): Promise<void> {
    const manifest = reply.body.result as StreamManifest;
    assert.ok(manifest.size > 20 * MiB, `archive of ${manifest.size} bytes`);
    await (await jetstreamManager(nc)).streams.delete("FAST");
    const restored = await request<JobRecord>(nc, "$RESTORE.stream.FAST", { wait: true, backup: manifest.id }, 120_000);
    assert.equal(restored.errorCode, null, restored.raw);
    assert.deepEqual(await fingerprint(nc, "FAST"), stored);
  }
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
