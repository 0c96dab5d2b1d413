/**
 * How a snapshot ends and how a restore is refused, on every server version (issue 11), with the
 * expectation following the version where the servers differ:
 * - a snapshot whose acks are held back past the server's limit: 408 and a failed backup that
 *   leaves nothing, on servers with flow control (2.10.12+); a whole backup on those without;
 * - a snapshot the server cannot build: 500 in the server's words (2.11+);
 * - archives smaller than one chunk, of exactly N full chunks, of full chunks and a short last one;
 * - restores refused by the server, as `-ERR` text on a chunk (before 2.12.6) or JSON errors.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { createInbox, nuid, type NatsConnection } from "@nats-io/nats-core";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { StreamManifest, BackupService, JobRecord } from "../src/mod.ts";
import { atLeast, Capabilities, parseServerVersion, type ServerVersion } from "../src/jetstream/server-version.ts";
import { jsApi, waitUntil } from "./harness/inspect.ts";
import { NatsServer, serverVersion } from "./harness/nats-server.ts";
import { ServiceProcess, stopAllServices } from "./harness/proc-service.ts";
import { bucketView, fingerprint, listBackups } from "./harness/proc-checks.ts";
import { request, startService, type Reply } from "./harness/service.ts";
import { SnapshotFreezer } from "./harness/snapshot-freezer.ts";
import { RestoreAnswerTap, SnapshotTap } from "./harness/wire-tap.ts";
import { archiveObject } from "./harness/archive.ts";
import { plantBackup } from "./harness/planted-backup.ts";
import { fileSizeLimitedServer } from "./harness/file-size-limit.ts";

const KiB = 1024;
const MiB = 1024 * KiB;
const version: ServerVersion = parseServerVersion(serverVersion().text)!;
/** 2.12.5+: every chunk is full but the last, and a short last chunk has no reply subject. */
const fullChunks = atLeast(version, 2, 12, 5);
/**
 * 2.12.5 to 2.14.x read the archive builder's error channel in the same select as the ack
 * slots, after the builder closed it on success: an archive that fills its last chunk exactly
 * ends with "500" and no description whenever no slot is free at that moment (one chunk in
 * flight makes that certain when acks take a round trip). 2.15 checks whether the channel was closed.
 */
const emptyFiveHundredOnFullLastChunk = fullChunks && !atLeast(version, 2, 15);
/** 2.12.6+ restore chunks as they come (no staging file); before, a chunk that cannot be staged is answered `-ERR`. */
const streamsRestores = atLeast(version, 2, 12, 6);

describe(`a snapshot whose acks are held back, and one the server cannot build (nats-server ${version.text})`, () => {
  let server: NatsServer;
  let nc: NatsConnection;
  let svc: ServiceProcess;

  before(async () => {
    // Outbound buffers of 12 MB: a frozen watcher the bucket's acks run ahead of (40 MiB sent past
    // it) is dropped as a slow consumer; a frozen relay is not (a 2.10 server sends it at most
    // 8 MiB and two chunks), nor a frozen watcher that acks (one chunk in flight).
    server = await NatsServer.start({ config: "max_pending: 12MB" });
    nc = await server.connect();
    // One chunk in flight on servers that take window_size (2.12.5+): the server waits for each ack.
    svc = await ServiceProcess.start(
      server.url,
      { tuning: { snapshotWindowBytes: 4 * KiB, readBudgetBytes: MiB } },
      { env: { TEST_LOG_LEVEL: "warn" } },
    );
  });
  after(async () => {
    await stopAllServices();
    await nc?.close();
    await server?.stop();
  });

  /**
   * Where the service acks the chunks it watches go into the bucket (2.14.10+, 2.15.3+, whose
   * streams ack no JetStream reply subject), the first freeze holds the acks back, and the watch
   * sees the 408 end. Where the bucket acks them (2.9 to 2.14.9, 2.15.0 to 2.15.2), a frozen
   * service holds nothing back: its watch falls 40 MiB behind and is dropped (the server ends that
   * snapshot with 408 No Interest, the service sees a lost watch), and the service takes the
   * snapshot again the careful way, which the test freezes too: relayed on servers with flow
   * control (2.10.12+), whose acks are then held back; read back from the bucket on 2.9.10 and
   * 2.10.0 to 2.10.11, which never wait for acks and send everything. A snapshot watched while the
   * bucket acks cannot be made to end with 408 No Flow Response here: the bucket acks every chunk
   * it stores, and one it refuses with an error ack that the server counts too; only a bucket whose
   * stream stops answering (a leaderless R3 bucket) would hold them back. What such a watch sees of
   * a failed end is tested with the 500 below (2.12).
   */
  test("acks held back past the server's limit: a failed backup naming the 408 that leaves nothing, or a whole one where the server never gives up", async (t) => {
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: "STALL", subjects: ["stall.>"], storage: "file" as never });
    const js = jetstream(nc);
    for (let i = 0; i < 80; i++) await js.publish(`stall.${i % 4}`, randomBytes(512 * KiB));
    const stored = await fingerprintOneByOne(nc, "STALL");
    const logFrom = svc.log.length;
    const freezer = await SnapshotFreezer.start(nc, svc, "STALL");
    let reply: Reply<JobRecord>;
    try {
      reply = await request<JobRecord>(nc, "$BACKUP.stream.STALL", { wait: true, chunk_size: 64 * KiB }, 180_000);
    } finally {
      freezer.stop();
    }
    t.diagnostic(`freezes: ${JSON.stringify(freezer.frozen)}; reply: ${reply.raw.slice(0, 300)}`);
    const bucketAcks = Capabilities.answersJetStreamReplies(version);
    assert.equal(freezer.frozen.length, bucketAcks ? 2 : 1, "one freeze per snapshot asked for");
    if (bucketAcks) assert.match(svc.log.slice(logFrom), /snapshot watch lost; taking the snapshot again/);

    if (Capabilities.snapshotFlowControl(version)) {
      assert.ok(reply.errorCode !== null, `the backup failed: ${reply.raw}`);
      assert.match(reply.errorHeader ?? "", /408 No Flow Response/);
      await assertNothingLeft(nc, "STALL", reply.job);
    } else {
      assert.equal(reply.errorCode, null, reply.raw);
      assert.equal(reply.body.state, "completed");
      await (await jetstreamManager(nc)).streams.delete("STALL");
      const manifest = reply.body.result as StreamManifest;
      const restored = await request<JobRecord>(nc, "$RESTORE.stream.STALL", { wait: true, backup: manifest.id }, 180_000);
      assert.equal(restored.errorCode, null, restored.raw);
      assert.deepEqual(await fingerprintOneByOne(nc, "STALL"), stored);
    }
    await jsm.streams.delete("STALL").catch(() => {});
  });

  /**
   * A 500 end can be provoked by a stream whose message block file is gone from disk under a
   * running server: the snapshot fails to read it while building the archive. 2.15 say so at the
   * end of the snapshot ("couldn't load next message …"), 2.11 to 2.14 too ("could not read message
   * block …") but, up to 2.14, only when the archive is more than one chunk and the builder's error
   * is seen before the last chunk is read; an error in an archive smaller than one chunk is lost
   * there (an end without a status). Here the error comes before the first chunk is read (the
   * archive is all in the builder's compressor until then) and one chunk is in flight: where the
   * service acks (2.14.10+), the frozen service holds the only slot; where the bucket acks (2.12),
   * its ack of the first chunk would have to come back before the server, which looks again at once, does. 2.9
   * and 2.10 never send 500: the error goes into the archive as errors.txt, and the end says 204.
   */
  test(
    "a snapshot the server cannot build ends with 500: a failed backup in the server's words that leaves nothing",
    { skip: atLeast(version, 2, 11) ? false : `nats-server ${version.text} never ends a snapshot with 500 (from 2.11): its errors go into the archive as errors.txt` },
    async (t) => {
      const jsm = await jetstreamManager(nc);
      // Limits under 128 KB make blocks of 32 KB: three here.
      await jsm.streams.add({ name: "HOLE", subjects: ["hole"], storage: "file" as never, max_bytes: 100_000 });
      const js = jetstream(nc);
      for (let i = 0; i < 80; i++) await js.publish("hole", randomBytes(1000));
      const msgs = join(server.storeDir, "jetstream", "$G", "streams", "HOLE", "msgs");
      const blocks = readdirSync(msgs)
        .filter((f) => f.endsWith(".blk"))
        .sort((a, b) => parseInt(a) - parseInt(b));
      assert.ok(blocks.length >= 3, `blocks: ${blocks.join(" ")}`);
      // The second: the archive holds the first block before the error, more than one chunk.
      rmSync(join(msgs, blocks[1]!));

      const tap = await SnapshotTap.start(nc, "HOLE");
      const freezer = await SnapshotFreezer.start(nc, svc, "HOLE");
      let reply: Reply<JobRecord>;
      try {
        reply = await request<JobRecord>(nc, "$BACKUP.stream.HOLE", { wait: true, chunk_size: 4 * KiB }, 120_000);
      } finally {
        freezer.stop();
        tap.stop();
      }
      const { chunks, end } = tap.snapshot();
      t.diagnostic(`server sent ${chunks.length} chunks, end ${end?.status} ${end?.description}; reply: ${reply.raw.slice(0, 300)}`);
      assert.equal(end?.status, 500, "the server ended the snapshot with 500");
      assert.match(end.description, /message block|load next message/);
      assert.ok(reply.errorCode !== null, `the backup failed: ${reply.raw}`);
      assert.ok((reply.errorHeader ?? "").includes(`500 ${end.description}`), `the server's words in ${reply.errorHeader}`);
      await assertNothingLeft(nc, "HOLE", reply.job);
      await jsm.streams.delete("HOLE").catch(() => {});
    },
  );
});

describe(`archives of every shape (nats-server ${version.text})`, () => {
  let server: NatsServer;
  let serviceNc: NatsConnection;
  let nc: NatsConnection;
  let svc: BackupService;

  before(async () => {
    server = await NatsServer.start();
    serviceNc = await server.connect();
    nc = await server.connect();
    // One chunk in flight (2.12.5+): see emptyFiveHundredOnFullLastChunk.
    svc = await startService(serviceNc, { tuning: { snapshotWindowBytes: 4 * KiB } });
  });
  after(async () => {
    await svc?.stop();
    await serviceNc?.close();
    await nc?.close();
    await server?.stop();
  });

  /**
   * Backs `stream` up with `chunkSize`, checks that the archive is exactly what the server sent
   * (chunks, size, digest, each chunk stored), restores it in place of the stream and compares.
   */
  async function roundTrip(stream: string, chunkSize: number) {
    const expected = await fingerprint(nc, stream);
    const tap = await SnapshotTap.start(nc, stream);
    let reply: Reply<JobRecord>;
    try {
      reply = await request<JobRecord>(nc, `$BACKUP.stream.${stream}`, { wait: true, chunk_size: chunkSize }, 120_000);
    } finally {
      tap.stop();
    }
    assert.equal(reply.errorCode, null, reply.raw);
    const manifest = reply.body.result as StreamManifest;
    const { chunks, end } = tap.snapshot();
    assert.ok(end, `the server's end message was seen: ${JSON.stringify(tap.deliverSubjects.map((_, i) => tap.snapshot(i).chunks.length))}`);
    const sent = Buffer.concat(chunks.map((c) => c.data));
    assert.equal(manifest.chunks, chunks.length, "the manifest counts the chunks the server sent");
    assert.equal(manifest.size, sent.length);
    assert.equal(manifest.sha256, `SHA-256=${createHash("sha256").update(sent).digest("base64url")}=`, "the digest of what the server sent");
    const object = await archiveObject(nc, "backups", manifest.id);
    assert.equal(object.chunks, manifest.chunks);
    assert.deepEqual((await bucketView(nc)).damaged, []);
    for (const c of chunks) assert.ok(c.size <= chunkSize, `a chunk of ${c.size} bytes, asked for ${chunkSize}`);
    await restoreEqual(nc, stream, manifest, expected);
    return { manifest, chunks, end, reply };
  }

  test("an empty stream: an archive smaller than one chunk", async (t) => {
    await (await jetstreamManager(nc)).streams.add({ name: "EMPTY", subjects: ["empty"], storage: "file" as never });
    const { manifest, chunks, end } = await roundTrip("EMPTY", 4 * KiB);
    t.diagnostic(`chunks ${chunks.map((c) => `${c.size}${c.reply ? "" : "(no reply)"}`).join(",")}; end ${end!.status}`);
    assertSmallerThanOneChunk(manifest, chunks, end!);
  });

  test("one small message: an archive smaller than one chunk", async (t) => {
    await (await jetstreamManager(nc)).streams.add({ name: "ONE", subjects: ["one"], storage: "file" as never });
    await jetstream(nc).publish("one", "a small message");
    const { manifest, chunks, end } = await roundTrip("ONE", 4 * KiB);
    t.diagnostic(`chunks ${chunks.map((c) => `${c.size}${c.reply ? "" : "(no reply)"}`).join(",")}; end ${end!.status}`);
    assertSmallerThanOneChunk(manifest, chunks, end!);
  });

  /** 2.12.5+: one chunk without a reply, and an end without a status. Before: the S2 stream's 10-byte header, then the rest, and 204 (2.10.12+). */
  function assertSmallerThanOneChunk(manifest: StreamManifest, chunks: { size: number; reply: string | null }[], end: { status: number }) {
    assert.ok(manifest.size < 4 * KiB);
    if (fullChunks) {
      assert.equal(manifest.chunks, 1);
      assert.equal(chunks[0]!.reply, null, "the only chunk, short, has no reply subject");
      assert.equal(end.status, 0, "an archive smaller than one chunk ends without a status");
    } else {
      assert.equal(manifest.chunks, 2);
      assert.equal(chunks[0]!.size, 10, "the S2 stream identifier goes alone");
      assert.equal(end.status, Capabilities.snapshotFlowControl(version) ? 204 : 0);
    }
  }

  test("an archive of exactly N full chunks", async (t) => {
    await (await jetstreamManager(nc)).streams.add({ name: "EXACT", subjects: ["exact"], storage: "file" as never });
    const js = jetstream(nc);
    for (let i = 0; i < 20; i++) await js.publish("exact", randomBytes(50_000));
    // A chunk size that divides the archive, by the archive's size in a snapshot of the test's own
    // (the same for an unchanged stream); one more small message until some size from 4 KiB does.
    let size = 0;
    let chunkSize = 0;
    for (let attempt = 0; attempt < 30 && chunkSize === 0; attempt++) {
      if (attempt > 0) await js.publish("exact", randomBytes(attempt));
      size = await archiveSize(nc, "EXACT");
      chunkSize = evenChunkSize(size);
    }
    assert.ok(chunkSize > 0, `no chunk size from 4 KiB to 1 MiB divides an archive of ${size} bytes`);
    const { manifest, chunks, end } = await roundTrip("EXACT", chunkSize);
    t.diagnostic(`archive ${size} bytes, chunk_size ${chunkSize}: ${manifest.chunks} chunks; end ${end!.status} ${JSON.stringify(end!.description)}`);
    assert.equal(manifest.size, size, "the archive is as large as in the test's own snapshot");
    if (fullChunks) {
      assert.equal(manifest.chunks, size / chunkSize);
      for (const c of chunks) assert.equal(c.size, chunkSize);
      assert.ok(chunks.every((c) => c.reply !== null), "every full chunk has a reply subject");
      if (emptyFiveHundredOnFullLastChunk && !Capabilities.answersJetStreamReplies(version)) {
        // Acked by the service (2.14.10+), the last ack takes a round trip: no slot is free, certainly.
        assert.deepEqual([end!.status, end!.description], [500, ""], "this server's end after a full last chunk");
      } else if (emptyFiveHundredOnFullLastChunk) {
        assert.ok([204, 500].includes(end!.status) && end!.description === "", `end ${end!.status} ${end!.description}`);
      } else {
        assert.equal(end!.status, 204);
      }
    } else {
      // Before 2.12.5 a chunk is what one read of the archive gave, never more than chunk_size:
      // the S2 stream identifier alone first, then compressed blocks cut to chunk_size.
      assert.equal(chunks[0]!.size, 10);
    }
  });

  test("full chunks and a short last one", async (t) => {
    await (await jetstreamManager(nc)).streams.add({ name: "SHORT", subjects: ["short"], storage: "file" as never });
    const js = jetstream(nc);
    for (let i = 0; i < 20; i++) await js.publish("short", randomBytes(50_000));
    // A chunk size that leaves the last chunk short; the archive is as large as in a snapshot of the test's own.
    const size = await archiveSize(nc, "SHORT");
    let chunkSize = 64 * KiB;
    while (size % chunkSize === 0) chunkSize += 1;
    const { manifest, chunks, end } = await roundTrip("SHORT", chunkSize);
    t.diagnostic(`archive ${size} bytes, chunk_size ${chunkSize}: ${manifest.chunks} chunks, the last ${chunks.at(-1)!.size}; end ${end!.status}`);
    assert.equal(manifest.size, size);
    if (fullChunks) {
      assert.equal(manifest.chunks, Math.ceil(size / chunkSize));
      for (const c of chunks.slice(0, -1)) assert.equal(c.size, chunkSize);
      assert.equal(chunks.at(-1)!.size, size % chunkSize);
      assert.ok(chunks.slice(0, -1).every((c) => c.reply !== null), "every full chunk has a reply subject");
      assert.equal(chunks.at(-1)!.reply, null, "the short last chunk has none");
      assert.equal(end!.status, 204);
    } else {
      assert.equal(end!.status, Capabilities.snapshotFlowControl(version) ? 204 : 0);
    }
  });
});

describe(`restores the server refuses (nats-server ${version.text})`, () => {
  /**
   * The service's checks (count, size, digest) pass, so the server is the one that refuses; the
   * job ends with its words and no stream. Where it answers: 2.12.6 to 2.14 on the first chunk
   * (JSON), 2.15 and servers before 2.12.6 (which stage the upload) on the final request (JSON).
   */
  test("an archive of garbage with a matching digest: the server's JSON error, and no stream", async (t) => {
    const server = await NatsServer.start();
    const serviceNc = await server.connect();
    const nc = await server.connect();
    const svc = await startService(serviceNc);
    try {
      const answers = await refusedRestore(nc, "GARBLED", randomBytes(300 * KiB));
      t.diagnostic(`the server answered: ${answers.errors.join(" | ").slice(0, 400)}`);
      assert.ok(answers.errors[0]!.startsWith("{"), "a JSON error");
    } finally {
      await svc.stop();
      await serviceNc.close();
      await nc.close();
      await server.stop();
    }
  });

  /**
   * `-ERR` text: before 2.12.6 the server stages the upload in a file and answers a chunk it cannot
   * write with `-ERR 'storage failure during restore'`. A server whose files may not grow past
   * 9 MiB (its stream blocks are at most 8 MiB) cannot stage 12 MiB. From 2.12.6 the upload is
   * not staged, and the garbage is refused in JSON as above.
   */
  test("a chunk the server cannot stage: -ERR before 2.12.6, JSON from 2.12.6; the server's words, and no stream", async (t) => {
    const server = await NatsServer.start({ bin: fileSizeLimitedServer(9 * MiB) });
    const serviceNc = await server.connect();
    const nc = await server.connect();
    const svc = await startService(serviceNc);
    try {
      const answers = await refusedRestore(nc, "STAGED", randomBytes(12 * MiB));
      t.diagnostic(`the server answered: ${answers.errors.join(" | ").slice(0, 400)}`);
      if (streamsRestores) {
        assert.ok(answers.errors[0]!.startsWith("{"), "a JSON error");
      } else {
        assert.equal(answers.errors[0], "-ERR 'storage failure during restore'");
      }
    } finally {
      await svc.stop();
      await serviceNc.close();
      await nc.close();
      await server.stop();
    }
  });

  /**
   * Backs up a small `stream`, plants a newer backup of it whose archive is `garbage`, removes
   * the stream and restores the newest backup: the job must fail with what the server said, and
   * leave no stream. Returns what the server said.
   */
  async function refusedRestore(nc: NatsConnection, stream: string, garbage: Buffer): Promise<RestoreAnswerTap> {
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: stream, subjects: [`${stream.toLowerCase()}.>`], storage: "file" as never });
    for (let i = 0; i < 10; i++) await jetstream(nc).publish(`${stream.toLowerCase()}.${i}`, `message ${i}`);
    const real = await request<JobRecord>(nc, `$BACKUP.stream.${stream}`, { wait: true }, 60_000);
    assert.equal(real.errorCode, null, real.raw);
    const planted = await plantBackup(nc, real.body.result as StreamManifest, garbage);
    await waitUntil(`the planted backup ${planted.id} listed`, async () => (await listBackups(nc, stream))[0]?.id === planted.id, 30_000);
    await jsm.streams.delete(stream);

    const answers = await RestoreAnswerTap.start(nc);
    let reply: Reply<{ error?: { code: number; description: string } }>;
    try {
      reply = await request(nc, `$RESTORE.stream.${stream}`, { wait: true }, 120_000);
    } finally {
      answers.stop();
    }
    assert.ok(reply.errorCode !== null && reply.errorCode >= 500, `refused with a 5xx: ${reply.raw}`);
    assert.equal(reply.job !== null, true);
    const said = answers.firstDescription;
    assert.ok(said, "the server answered with an error");
    assert.ok((reply.errorHeader ?? "").includes(said), `the server's words "${said}" in: ${reply.errorHeader}`);
    const job = await request<JobRecord>(nc, `$BACKUP.job.${reply.job}`);
    assert.equal(job.body.state, "failed");
    assert.equal(job.body.backup, planted.id, "the planted backup was the one restored");
    const info = await jsApi(nc, `STREAM.INFO.${stream}`);
    assert.equal(info.error?.err_code, 10059, `no stream ${stream} is left: ${JSON.stringify(info)}`);
    return answers;
  }
});

/** Restores `manifest` in place of its stream (deleted first) and compares with `expected`. */
async function restoreEqual(nc: NatsConnection, stream: string, manifest: StreamManifest, expected: Awaited<ReturnType<typeof fingerprint>>) {
  await (await jetstreamManager(nc)).streams.delete(stream);
  const restored = await request<JobRecord>(nc, `$RESTORE.stream.${stream}`, { wait: true, backup: manifest.id }, 180_000);
  assert.equal(restored.errorCode, null, restored.raw);
  assert.deepEqual(await fingerprint(nc, stream), expected);
}

/**
 * A failed backup left nothing: not listed, none of its objects, no chunks that no object names.
 * First a message the test stores in the bucket and removes: the bucket's stream stores in
 * order, so whatever the service sent it before its reply is stored by then.
 */
async function assertNothingLeft(nc: NatsConnection, stream: string, jobId: string | null) {
  assert.ok(jobId, "the reply names the job");
  assert.deepEqual(await listBackups(nc, stream), [], "nothing listed");
  const marker = `$O.backups.C.${nuid.next()}`;
  await jetstream(nc).publish(marker, "marker");
  await jsApi(nc, "STREAM.PURGE.OBJ_backups", { filter: marker });
  const view = await bucketView(nc);
  assert.deepEqual(view.objects.filter((o) => o.name.startsWith(`${jobId}/`)).map((o) => o.name), [], "no object of the backup");
  assert.deepEqual(view.unreferenced, [], `no chunks left behind: ${JSON.stringify(view.unreferenced.map((n) => [n, view.chunks.get(n)]))}`);
  assert.deepEqual(view.damaged, []);
}

/** Each message's sequence, subject, time and the SHA-256 of its headers and data, read one at a time (under the small max_pending). */
async function fingerprintOneByOne(nc: NatsConnection, stream: string): Promise<string[]> {
  const out: string[] = [];
  for (let seq = 1; ; seq++) {
    const reply = await jsApi<{ message?: { subject: string; data?: string; hdrs?: string; time: string } }>(nc, `STREAM.MSG.GET.${stream}`, { seq });
    if (!reply.message) return out;
    const m = reply.message;
    out.push(`${seq} ${m.subject} ${m.time} ${createHash("sha256").update(`${m.hdrs ?? ""}|${m.data ?? ""}`).digest("hex")}`);
  }
}

/** The size of `stream`'s archive, from a snapshot the test takes and acks itself. */
async function archiveSize(nc: NatsConnection, stream: string): Promise<number> {
  const inbox = createInbox();
  let size = 0;
  const ended = new Promise<void>((resolve) => {
    const sub = nc.subscribe(inbox, {
      callback: (_, msg) => {
        if (msg.data.length === 0) {
          sub.unsubscribe();
          return resolve();
        }
        size += msg.data.length;
        if (msg.reply) msg.respond();
      },
    });
  });
  await nc.flush();
  const answer = await jsApi(nc, `STREAM.SNAPSHOT.${stream}`, { deliver_subject: inbox, chunk_size: MiB, no_consumers: true });
  assert.equal(answer.error, undefined, JSON.stringify(answer));
  await ended;
  return size;
}

/** A chunk size from 4 KiB to 1 MiB that divides `size` into two or more chunks, the largest; 0 when none does. */
function evenChunkSize(size: number): number {
  for (let n = 2; size / n >= 4 * KiB; n++) {
    if (size % n === 0 && size / n <= MiB) return size / n;
  }
  return 0;
}
