/**
 * Backups moved between nats-server versions, as an upgrade moves them: a backup taken by the
 * service on an older server (a v1 archive: 2.9, 2.10, and the server under test when it is older
 * still than the newest) restores, through a service on the newest server, to an equal stream:
 * messages with their headers and times, consumers with their state, the configuration the old
 * server stored. A 2.15 archive (v2) copied to a 2.14 server's bucket is refused there before
 * anything is created, with an error that names both versions.
 *
 * Needs: the newest built nats-server (2.15.3 in CI), the newest 2.14 and 2.10 ones
 * (scripts/nats-binaries.sh) and Debian's 2.9.10 on PATH; a test whose server is missing skips,
 * naming it. It starts its own servers whatever NATS_SERVER_BIN says, adding the one under test as
 * a source when it is older than the newest.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { NatsConnection, Subscription } from "@nats-io/nats-core";
import type { StreamManifest, BackupService, JobRecord, RestoreResult } from "../src/mod.ts";
import { compareVersions, natsServerBin, serverVersion } from "./harness/binaries.ts";
import { copyBackup } from "./harness/copy-backup.ts";
import { consumerStates, makeStream, readStream } from "./harness/fixtures.ts";
import { allStreams, memberText, streamState } from "./harness/inspect.ts";
import { NatsServer } from "./harness/nats-server.ts";
import { newestServer, serverOfLine, type LineBinary } from "./harness/server-lines.ts";
import { request, startService } from "./harness/service.ts";
import { consumerTexts, streamConfigText } from "./harness/stream-config.ts";

/** A nats-server of a given version with the service on it, and a client connection. */
interface Side {
  server: NatsServer;
  nc: NatsConnection;
  stop(): Promise<void>;
}

async function startSide(bin: string): Promise<Side> {
  const server = await NatsServer.start({ bin });
  let serviceNc: NatsConnection | undefined;
  let nc: NatsConnection | undefined;
  let svc: BackupService | undefined;
  const stop = async () => {
    await svc?.stop();
    await serviceNc?.close();
    await nc?.close();
    await server.stop();
  };
  try {
    serviceNc = await server.connect();
    nc = await server.connect();
    svc = await startService(serviceNc, { sweep: { intervalMs: 3_600_000 } });
  } catch (err) {
    await stop();
    throw err;
  }
  return { server, nc, stop };
}

const newest = newestServer();

/** The release lines whose backups are restored onto the newest: 2.9 and 2.10, and the server under test's. */
function sourceLines(): string[] {
  const lines = ["2.9", "2.10"];
  const underTest = serverVersion(natsServerBin());
  const line = `${underTest.major}.${underTest.minor}`;
  if (newest.bin && compareVersions(underTest, newest.version) < 0 && !lines.includes(line)) lines.push(line);
  return lines;
}

function skipReason(source: LineBinary, target: LineBinary): string | false {
  if (target.bin === null) return target.reason;
  if (source.bin === null) return source.reason;
  return false;
}

describe("a backup taken on an older server restores onto the newest", () => {
  let target: Side | undefined;

  before(async () => {
    if (newest.bin) target = await startSide(newest.bin);
  });
  after(async () => {
    await target?.stop();
  });

  for (const line of sourceLines()) {
    const source = serverOfLine(line);
    const name = `XV_${line.replace(".", "_")}`;
    const title =
      `${source.version?.text ?? line} → ${newest.version?.text ?? "the newest"}: ` +
      "messages, headers, times, consumers and configuration";
    const skip =
      skipReason(source, newest) ||
      (compareVersions(source.version!, newest.version!) >= 0 ? `nats-server ${source.version!.text} is the newest known here` : false);
    test(title, { skip, timeout: 240_000 }, async (t) => {
      const oldVersion = source.version!.text;
      const newVersion = newest.version!.text;
      const old = await startSide(source.bin!);
      let manifest: StreamManifest;
      let messages: Awaited<ReturnType<typeof readStream>>;
      let consumers: Awaited<ReturnType<typeof consumerStates>>;
      let oldConfig: string;
      let oldConsumerConfigs: Awaited<ReturnType<typeof consumerTexts>>;
      try {
        // The 2.10 fields where the old server has them (first_seq stays out: makeStream's deletes count from 1).
        const extraConfig =
          source.version!.minor >= 10 || source.version!.major > 2
            ? {
                metadata: { origin: `nats-server ${oldVersion}` },
                compression: "s2",
                consumer_limits: { inactive_threshold: 3_600_000_000_000 },
              }
            : {};
        await makeStream(old.nc, name, { messages: 90, deleteEvery: 9, extraConfig });
        messages = await readStream(old.nc, name);
        consumers = await consumerStates(old.nc, name);
        oldConfig = (await streamConfigText(old.nc, name)).config;
        oldConsumerConfigs = await consumerTexts(old.nc, name);
        assert.equal(messages.length, 81, "90 messages, 9 deleted");
        assert.ok(messages.some((m) => m.hdrs), "some messages have headers");
        assert.equal(consumers.length, 2);

        const done = await request<JobRecord>(old.nc, `$BACKUP.stream.${name}`, { wait: true }, 120_000);
        assert.equal(done.errorCode, null, done.raw);
        manifest = done.body.result as StreamManifest;
        assert.equal(manifest.server?.version, oldVersion, "the manifest records the server that took it");
        assert.equal(manifest.archive_format, "v1");
        assert.equal(manifest.messages, 81);

        await copyBackup(old.nc, target!.nc, manifest);
      } finally {
        await old.stop();
      }

      const nc = target!.nc;
      const listed = await request<StreamManifest>(nc, `$BACKUP.info.${manifest.id}`);
      assert.equal(listed.errorCode, null, listed.raw);
      assert.deepEqual(listed.body, manifest, "the newest server's service knows the backup as it was taken");

      const restored = await request<JobRecord>(nc, `$RESTORE.stream.${name}`, { wait: true }, 120_000);
      assert.equal(restored.errorCode, null, restored.raw);
      assert.equal(restored.body.state, "completed", restored.raw);
      const result = restored.body.result as RestoreResult;
      assert.equal(result.messages, 81);
      assert.equal(result.consumers, 2);

      assert.deepEqual(await readStream(nc, name), messages, `every message of ${oldVersion}, with its headers and time`);
      assert.deepEqual(await consumerStates(nc, name), consumers, "the consumers' states");

      const newConfig = (await streamConfigText(nc, name)).config;
      const streamDiff = changedFields(oldConfig, newConfig);
      assert.deepEqual(streamDiff.changed, [], `every field ${oldVersion} stored keeps its value on ${newVersion}: ${newConfig}`);
      if (streamDiff.added.length) t.diagnostic(`${newVersion} adds, with its defaults: ${streamDiff.added.join(", ")}`);
      const newConsumerConfigs = await consumerTexts(nc, name);
      assert.deepEqual(
        newConsumerConfigs.map((c) => c.name),
        oldConsumerConfigs.map((c) => c.name),
      );
      for (const [i, c] of oldConsumerConfigs.entries()) {
        const diff = changedFields(c.config, newConsumerConfigs[i]!.config);
        assert.deepEqual(diff.changed, [], `consumer ${c.name}'s configuration: ${newConsumerConfigs[i]!.config}`);
      }
    });
  }
});

describe("a 2.15 archive copied to a 2.14 server", () => {
  const older = serverOfLine("2.14");
  const skip =
    skipReason(older, newest) ||
    (newest.version!.major === 2 && newest.version!.minor < 15
      ? `the newest nats-server, ${newest.version!.text}, writes no v2 archive (2.15 does)`
      : false);

  test("is refused before anything is created, the error naming both versions", { skip, timeout: 180_000 }, async () => {
    const source = await startSide(newest.bin!);
    let manifest: StreamManifest;
    try {
      await makeStream(source.nc, "XV_V2", { messages: 40 });
      const done = await request<JobRecord>(source.nc, "$BACKUP.stream.XV_V2", { wait: true }, 120_000);
      assert.equal(done.errorCode, null, done.raw);
      manifest = done.body.result as StreamManifest;
      assert.equal(manifest.archive_format, "v2");
      assert.equal(manifest.server?.version, newest.version!.text);
      const side = await startSide(older.bin!);
      try {
        await copyBackup(source.nc, side.nc, manifest);
        const nc = side.nc;
        const streamsBefore = await allStreams(nc);
        // Every JetStream API request the service makes, seen as the server sees them.
        const seen: string[] = [];
        const watch: Subscription = nc.subscribe("$JS.API.>", {
          callback: (_err, msg) => void seen.push(msg.subject),
        });
        await nc.flush();

        const reply = await request<JobRecord>(nc, "$RESTORE.stream.XV_V2", { wait: true }, 60_000);
        assert.equal(reply.errorCode, 400, reply.raw);
        assert.equal(
          reply.errorHeader,
          `backup ${manifest.id} was taken on nats-server ${newest.version!.text}, whose archive format (v2) ` +
            `nats-server ${older.version!.text} cannot restore; restore it on nats-server 2.15 or later`,
        );
        await nc.flush();
        watch.unsubscribe();
        assert.ok(seen.length > 0, "the watch saw the service's requests (it read the bucket)");
        assert.deepEqual(
          seen.filter((s) => /^\$JS\.API\.STREAM\.(CREATE|RESTORE)\./.test(s)),
          [],
          "no stream was created or restore started",
        );
        assert.equal(await streamState(nc, "XV_V2"), null, "no stream XV_V2");
        assert.deepEqual(Object.keys(await allStreams(nc)).sort(), Object.keys(streamsBefore).sort(), "no stream of any name");
      } finally {
        await side.stop();
      }
    } finally {
      await source.stop();
    }
  });
});

describe("a backup with a field an older server does not know", () => {
  const newer = serverOfLine("2.14");
  const older = serverOfLine("2.12");

  // allow_batched came with 2.14; 2.12 reads requests as strict JSON and refuses an unknown field (400 / 10025).
  const title = "is refused by the older server before anything is created, the error naming both versions";
  test(title, { skip: skipReason(newer, older), timeout: 180_000 }, async () => {
    const source = await startSide(newer.bin!);
    try {
      await makeStream(source.nc, "XV_FIELD", { messages: 20, consumers: false, extraConfig: { allow_batched: true } });
      assert.equal(memberText((await streamConfigText(source.nc, "XV_FIELD")).config, "allow_batched"), "true");
      const done = await request<JobRecord>(source.nc, "$BACKUP.stream.XV_FIELD", { wait: true }, 120_000);
      assert.equal(done.errorCode, null, done.raw);
      const manifest = done.body.result as StreamManifest;
      assert.equal(manifest.archive_format, "v1");
      const side = await startSide(older.bin!);
      try {
        await copyBackup(source.nc, side.nc, manifest);
        const streamsBefore = await allStreams(side.nc);
        const reply = await request<JobRecord>(side.nc, "$RESTORE.stream.XV_FIELD", { wait: true }, 60_000);
        assert.equal(reply.errorCode, 400, reply.raw);
        const header = reply.errorHeader ?? "";
        assert.ok(
          header.startsWith(
            `nats-server ${older.version!.text} refuses the stream configuration of backup ${manifest.id}, ` +
              `taken on nats-server ${newer.version!.text}: `,
          ),
          header,
        );
        assert.match(header, /allow_batched/, "the server's words name the field");
        assert.equal(await streamState(side.nc, "XV_FIELD"), null, "no stream XV_FIELD");
        assert.deepEqual(Object.keys(await allStreams(side.nc)).sort(), Object.keys(streamsBefore).sort(), "no stream of any name");
      } finally {
        await side.stop();
      }
    } finally {
      await source.stop();
    }
  });
});

/**
 * The top-level members of `before` whose JSON text differs in `after`, and those only `after`
 * has. Metadata is compared without the server's own `_nats.*` entries (its version and API level).
 */
function changedFields(before: string, after: string): { changed: string[]; added: string[] } {
  const parse = (text: string) => {
    const obj = JSON.parse(text) as Record<string, unknown>;
    const metadata = obj.metadata as Record<string, string> | undefined;
    if (metadata) {
      for (const key of Object.keys(metadata)) if (key.startsWith("_nats.")) delete metadata[key];
      if (Object.keys(metadata).length === 0) delete obj.metadata;
    }
    return obj;
  };
  const [a, b] = [parse(before), parse(after)];
  const changed = Object.keys(a)
    .filter((k) => JSON.stringify(a[k]) !== JSON.stringify(b[k]))
    .map((k) => `${k}: ${JSON.stringify(a[k])} → ${JSON.stringify(b[k])}`);
  return { changed, added: Object.keys(b).filter((k) => !(k in a)) };
}
