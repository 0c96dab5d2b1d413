/**
 * Moving backups between the bucket and a folder (issue 14), with the real nats CLI and real
 * servers, through the `nats-backup` process as a user runs it: folders made by `nats stream
 * backup` and `nats account backup` imported and restored by the service; backups of the service
 * exported and restored by `nats stream restore` and `nats account restore`; folders that are not
 * a snapshot refused with the bucket left as it was; and a tgz of the stream's storage folder
 * unpacked into a stopped server (servers up to 2.14; a 2.15 archive is refused).
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { execFileSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { NatsConnection } from "@nats-io/nats-core";
import { jetstreamManager } from "@nats-io/jetstream";
import type { AccountManifest, BackupManifest, JobRecord, StreamManifest } from "../src/mod.ts";
import { Endpoints } from "../src/protocol/subjects.ts";
import { readSmallObject } from "../src/catalogue/object-reads.ts";
import { NatsServer, natsCliBinary, serverAtLeast } from "./harness/nats-server.ts";
import { NatsCli } from "./harness/nats-cli.ts";
import { consumerStates, makeStream, type ConsumerSnapshot } from "./harness/fixtures.ts";
import { fingerprint, type StreamFingerprint } from "./harness/proc-checks.ts";
import { jsApi } from "./harness/inspect.ts";
import { request, startRig, type ServiceRig } from "./harness/service.ts";
import { natsBackup, natsBackupOk } from "./harness/nats-backup-cli.ts";
import { flipOneBit, rewriteChunks } from "./harness/archive.ts";

const cliBinary = natsCliBinary();
const Bucket = "backups";
const Streams = ["ORDERS", "SHIPS"] as const;
/** 2.15+ archives are NATSARC1 records (v2), not a tar. */
const v2Archives = serverAtLeast("2.15.0");

interface Picture {
  fingerprint: StreamFingerprint;
  consumers: ConsumerSnapshot[];
}

async function picture(nc: NatsConnection, stream: string): Promise<Picture> {
  return { fingerprint: await fingerprint(nc, stream), consumers: await consumerStates(nc, stream) };
}

/** sha256 of a file as the object store spells it. */
function objectDigest(path: string): string {
  return `SHA-256=${createHash("sha256").update(readFileSync(path)).digest("base64").replaceAll("+", "-").replaceAll("/", "_")}`;
}

/** The archive in a folder the nats CLI wrote: stream.tar.s2, or natscli 0.5.0's stream.arc.s2 for a 2.15 server. */
function archiveOf(dir: string): string {
  const found = ["stream.tar.s2", "stream.arc.s2"].filter((n) => existsSync(join(dir, n)));
  assert.equal(found.length, 1, `one archive in ${dir}: ${readdirSync(dir).join(", ")}`);
  return join(dir, found[0]!);
}

/** What the bucket holds: its live objects by name, the messages of its stream (chunks and metadata), and its chunks. */
async function bucketState(nc: NatsConnection): Promise<{ objects: string[]; messages: number; chunks: number }> {
  const prefix = `$O.${Bucket}.M.`;
  const info = await jsApi<{ state: { messages: number; subjects?: Record<string, number> } }>(nc, `STREAM.INFO.OBJ_${Bucket}`, {
    subjects_filter: `${prefix}>`,
  });
  const objects: string[] = [];
  for (const subject of Object.keys(info.state.subjects ?? {})) {
    const meta = await jsApi<{ message: { data: string } }>(nc, `STREAM.MSG.GET.OBJ_${Bucket}`, { last_by_subj: subject });
    const record = JSON.parse(Buffer.from(meta.message.data, "base64").toString()) as { name: string; deleted?: boolean };
    if (!record.deleted) objects.push(record.name);
  }
  const chunks = await jsApi<{ state: { messages: number; subjects?: Record<string, number> } }>(nc, `STREAM.INFO.OBJ_${Bucket}`, {
    subjects_filter: `$O.${Bucket}.C.>`,
  });
  const chunkCount = Object.values(chunks.state.subjects ?? {}).reduce((n, c) => n + c, 0);
  return { objects: objects.sort(), messages: info.state.messages, chunks: chunkCount };
}

describe("moving backups between the bucket and a folder (export, import)", { skip: cliBinary.reason ?? false }, () => {
  let rig: ServiceRig;
  let nc: NatsConnection;
  let cli: NatsCli;
  let work: string;
  const original: Record<string, Picture> = {};
  /** A folder `nats stream backup ORDERS` wrote, kept for the refusals. */
  let ordersFolder: string;
  let shipsFolder: string;
  /** The service's account backup of ORDERS and SHIPS, with data. */
  let accountBackup: string;
  /** Backups made by import: of a `nats stream backup` folder, of a `nats account backup` folder. */
  const imported: string[] = [];

  const url = () => rig.server.url;
  const deleteStreams = async (...names: string[]) => {
    const jsm = await jetstreamManager(nc);
    for (const name of names) await jsm.streams.delete(name);
  };
  const assertEqualToOriginal = async (stream: string) => {
    assert.deepEqual(await picture(nc, stream), original[stream], `stream ${stream} is as it was`);
  };
  const importJson = async (dir: string) => JSON.parse((await natsBackupOk(url(), ["import", dir, "--json"])).stdout) as BackupManifest;

  before(async () => {
    rig = await startRig();
    nc = rig.nc;
    cli = new NatsCli(cliBinary.path!, url());
    work = mkdtempSync(join(tmpdir(), "nats-backup-transfer-"));
    await makeStream(nc, "ORDERS", { messages: 300, deleteEvery: 17 });
    await makeStream(nc, "SHIPS", { messages: 90 });
    for (const s of Streams) original[s] = await picture(nc, s);
    assert.equal(original.ORDERS!.consumers.length, 2);
  });

  after(async () => {
    await cli?.close();
    await rig?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  test("nats stream backup → nats-backup import → $RESTORE.stream gives the stream back equal", async () => {
    ordersFolder = join(work, "orders-cli");
    shipsFolder = join(work, "ships-cli");
    await cli.ok(`nats stream backup ORDERS ${ordersFolder} --no-progress`, { timeoutMs: 120_000 });
    await cli.ok(`nats stream backup SHIPS ${shipsFolder} --no-progress`, { timeoutMs: 120_000 });

    const run = await natsBackupOk(url(), ["import", ordersFolder]);
    const id = run.stdout.split("\n")[0]!.trim();
    imported.push(id);
    const manifest = (await request<StreamManifest>(nc, `$BACKUP.info.${id}`)).body;
    assert.equal(manifest.scope, "stream");
    assert.equal(manifest.stream, "ORDERS");
    assert.equal(manifest.messages, original.ORDERS!.fingerprint.messages);
    assert.equal(manifest.first_seq, original.ORDERS!.fingerprint.first_seq);
    assert.equal(manifest.last_seq, original.ORDERS!.fingerprint.last_seq);
    assert.deepEqual([...manifest.consumers].sort(), ["AUDIT", "PROCESSOR"]);
    assert.equal(manifest.archive_format, v2Archives ? "v2" : "v1");
    assert.equal(manifest.sha256, objectDigest(archiveOf(ordersFolder)), "the archive is stored as the CLI wrote it");
    assert.deepEqual(Object.keys(manifest.imported as object).sort(), ["at", "from"]);
    // backup.json is stored as the CLI wrote it.
    const stored = await readSmallObject(nc, Bucket, `${id}/backup.json`);
    assert.deepEqual(Buffer.from(stored!), readFileSync(join(ordersFolder, "backup.json")));
    // The service lists it like its own.
    const list = (await request<{ backups: BackupManifest[] }>(nc, "$BACKUP.list", { stream: "ORDERS" })).body;
    assert.ok(list.backups.some((b) => b.id === id), "the imported backup is listed");

    await deleteStreams("ORDERS");
    const restored = await request<JobRecord>(nc, "$RESTORE.stream.ORDERS", { backup: id, wait: true }, 120_000);
    assert.equal(restored.errorCode, null, restored.raw);
    assert.equal(restored.body.state, "completed", restored.raw);
    await assertEqualToOriginal("ORDERS");
  });

  test("a service backup → nats-backup export → nats stream restore DIR gives the stream back equal", async () => {
    const backup = await request<JobRecord>(nc, "$BACKUP.stream.ORDERS", { wait: true }, 120_000);
    assert.equal(backup.body.state, "completed", backup.raw);
    const manifest = backup.body.result as StreamManifest;
    const dir = join(work, "orders-export");
    await natsBackupOk(url(), ["export", manifest.id, dir]);
    assert.deepEqual(readdirSync(dir).sort(), ["backup.json", "stream.tar.s2"]);
    assert.equal(objectDigest(join(dir, "stream.tar.s2")), manifest.sha256, "the archive the manifest records, byte for byte");
    assert.deepEqual(readFileSync(join(dir, "backup.json")), Buffer.from((await readSmallObject(nc, Bucket, `${manifest.id}/backup.json`))!));

    // A folder that holds anything is refused, and left as it was.
    const again = await natsBackup(url(), ["export", manifest.id, dir]);
    assert.notEqual(again.code, 0);
    assert.match(again.stderr, /not empty/);
    assert.equal(objectDigest(join(dir, "stream.tar.s2")), manifest.sha256);

    await deleteStreams("ORDERS");
    await cli.ok(`nats stream restore ${dir} --no-progress`, { timeoutMs: 120_000 });
    await assertEqualToOriginal("ORDERS");
  });

  test("nats account backup → nats-backup import → $RESTORE.account gives every stream back equal", async () => {
    const dir = join(work, "account-cli");
    await cli.ok(`nats account backup ${dir} -f`, { timeoutMs: 180_000 });
    const manifest = (await importJson(dir)) as AccountManifest;
    imported.push(manifest.id);
    assert.equal(manifest.scope, "account");
    // The service's own buckets, which the CLI saved too, are left out: a restore never creates them.
    assert.ok(existsSync(join(dir, `OBJ_${Bucket}`)), readdirSync(dir).join(", "));
    assert.deepEqual(manifest.streams.filter((s) => s.endsWith(Bucket) || s.startsWith(`KV_${Bucket}-`)), []);
    assert.equal(manifest.data, true);
    for (const s of Streams) assert.ok(manifest.streams.includes(s), `${s} in ${manifest.streams.join(", ")}`);
    assert.equal(manifest.failed.length, 0);
    assert.equal(manifest.streams_with_data, manifest.streams.length);

    await deleteStreams(...Streams);
    const restored = await request<JobRecord>(nc, "$RESTORE.account", { backup: manifest.id, streams: [...Streams], wait: true }, 180_000);
    assert.equal(restored.errorCode, null, restored.raw);
    assert.equal(restored.body.state, "completed", restored.raw);
    const items = (restored.body.result as { streams: { stream: string; action: string }[] }).streams;
    assert.deepEqual(items.map((i) => [i.stream, i.action]).sort(), Streams.map((s) => [s, "restored"]));
    for (const s of Streams) await assertEqualToOriginal(s);
  });

  test("a service account backup → nats-backup export → nats account restore DIR gives every stream back equal; the folder imports again", async () => {
    const backup = await request<JobRecord>(nc, "$BACKUP.account", { data: true, streams: [...Streams], wait: true }, 180_000);
    assert.equal(backup.body.state, "completed", backup.raw);
    const id = (accountBackup = (backup.body.result as AccountManifest).id);
    const dir = join(work, "account-export");
    await natsBackupOk(url(), ["export", id, dir]);
    // Only stream folders: natscli 0.5.0's account restore refuses anything else in DIR.
    assert.deepEqual(readdirSync(dir).sort(), [...Streams]);
    assert.deepEqual(readdirSync(join(dir, "ORDERS")).sort(), [
      "backup.json",
      "stream.tar.s2",
      "stream_ORDERS.json",
      "stream_ORDERS_consumer_AUDIT.json",
      "stream_ORDERS_consumer_PROCESSOR.json",
    ]);

    await deleteStreams(...Streams);
    await cli.ok(`nats account restore ${dir}`, { timeoutMs: 180_000 });
    for (const s of Streams) await assertEqualToOriginal(s);

    // What export wrote is a folder import takes back whole, configurations included.
    const reimported = (await importJson(dir)) as AccountManifest;
    assert.deepEqual(reimported.streams, [...Streams]);
    assert.equal(reimported.consumers, 4);
    assert.equal(reimported.streams_with_data, 2);
  });

  test("folders that are not a stream's snapshot are refused, and the bucket is left as it was", async () => {
    const before = await bucketState(nc);
    const cases: { name: string; spoil: (dir: string) => void; error: RegExp }[] = [
      { name: "backup.json without state", spoil: (d) => writeFileSync(join(d, "backup.json"), '{"config":{"name":"ORDERS"}}'), error: /not a stream's backup\.json/ },
      { name: "backup.json not an object", spoil: (d) => writeFileSync(join(d, "backup.json"), "[1,2,3]"), error: /not a stream's backup\.json/ },
      {
        name: "an invalid stream name",
        spoil: (d) => {
          const json = JSON.parse(readFileSync(join(d, "backup.json"), "utf8")) as { config: { name: string } };
          json.config.name = "OR.DERS";
          writeFileSync(join(d, "backup.json"), JSON.stringify(json));
        },
        error: /not a valid stream name/,
      },
      { name: "the archive truncated", spoil: (d) => truncateSync(archiveOf(d), Math.floor(readFileSync(archiveOf(d)).length / 2)), error: /not a valid snapshot archive/ },
      { name: "the archive not S2", spoil: (d) => writeFileSync(archiveOf(d), randomBytes(300_000)), error: /not a valid snapshot archive/ },
      { name: "another stream's backup.json", spoil: (d) => cpSync(join(shipsFolder, "backup.json"), join(d, "backup.json")), error: /not the snapshot|is a snapshot of stream ORDERS/ },
    ];
    for (const c of cases) {
      const dir = join(work, `refused-${c.name.replaceAll(" ", "-")}`);
      cpSync(ordersFolder, dir, { recursive: true });
      c.spoil(dir);
      const run = await natsBackup(url(), ["import", dir]);
      assert.notEqual(run.code, 0, `${c.name}: refused\n${run.stdout}`);
      assert.match(run.stderr, c.error, c.name);
      assert.deepEqual(await bucketState(nc), before, `${c.name}: nothing stored`);
    }

    // An account folder whose second stream is bad: the first, already stored and committed (so
    // that a sweeper running meanwhile keeps it), is removed again: each of its objects leaves
    // only its deleted record, as any removed object does.
    const account = join(work, "refused-account");
    cpSync(ordersFolder, join(account, "ORDERS"), { recursive: true });
    cpSync(shipsFolder, join(account, "SHIPS"), { recursive: true });
    truncateSync(archiveOf(join(account, "SHIPS")), 100);
    const run = await natsBackup(url(), ["import", account]);
    assert.notEqual(run.code, 0, run.stdout);
    assert.match(run.stderr, /SHIPS.*not a valid snapshot archive/);
    const { messages: _tombstones, ...left } = await bucketState(nc);
    const { messages: _before, ...kept } = before;
    assert.deepEqual(left, kept, "no object and no chunk of the account left");
  });

  test("export of an archive whose bytes differ from its digest fails as damaged and leaves no folder", async () => {
    const backup = await request<JobRecord>(nc, "$BACKUP.stream.SHIPS", { wait: true }, 120_000);
    const manifest = backup.body.result as StreamManifest;
    await rewriteChunks(nc, Bucket, manifest.id, flipOneBit);
    const dir = join(work, "damaged-export");
    const run = await natsBackup(url(), ["export", manifest.id, dir]);
    assert.notEqual(run.code, 0, run.stdout);
    assert.match(run.stderr, /damaged: digest/);
    assert.equal(existsSync(dir), false, "the folder it made is removed");
    await request(nc, `$BACKUP.delete.${manifest.id}`);
  });

  test("export --tgz: a tar of the stream's folder that a stopped nats-server takes back (archives up to 2.14), refused for a 2.15 archive", async () => {
    const backup = await request<JobRecord>(nc, "$BACKUP.stream.ORDERS", { wait: true }, 120_000);
    const manifest = backup.body.result as StreamManifest;
    const file = join(work, "orders.tgz");
    const accountFile = join(work, "account.tgz");
    if (v2Archives) {
      for (const [id, f] of [[manifest.id, file], [accountBackup, accountFile]] as const) {
        const run = await natsBackup(url(), ["export", id, "--tgz", f]);
        assert.notEqual(run.code, 0);
        assert.match(run.stderr, /2\.15.*not a tar/);
        assert.equal(existsSync(f), false, "nothing written");
      }
      assert.deepEqual(readdirSync(work).filter((f) => f.endsWith(".tgz") || f.includes(".tgz.")), []);
      return;
    }
    await natsBackupOk(url(), ["export", manifest.id, "--tgz", file]);
    const listing = execFileSync("tar", ["tzf", file], { encoding: "utf8" }).split("\n").filter(Boolean);
    assert.ok(listing.includes("ORDERS/meta.inf"), listing.join(", "));
    assert.ok(listing.every((name) => name.startsWith("ORDERS/")), listing.join(", "));
    // An account backup's tgz holds every stream with data, each in its folder.
    await natsBackupOk(url(), ["export", accountBackup, "--tgz", accountFile]);
    const accountListing = execFileSync("tar", ["tzf", accountFile], { encoding: "utf8" }).split("\n").filter(Boolean);
    assert.deepEqual([...new Set(accountListing.map((name) => name.split("/")[0]))].sort(), [...Streams]);

    // Unpacked into a stopped server's store, the streams are there when it starts: the stream's tgz, then the account's.
    const fresh = await NatsServer.start();
    try {
      const streams = join(fresh.storeDir, "jetstream", "$G", "streams");
      for (const [f, expected] of [[file, ["ORDERS"]], [accountFile, [...Streams]]] as const) {
        await fresh.halt();
        rmSync(streams, { recursive: true, force: true });
        mkdirSync(streams, { recursive: true });
        execFileSync("tar", ["xzf", f], { cwd: streams });
        await fresh.restart();
        const freshNc = await fresh.connect();
        try {
          for (const stream of expected) assert.deepEqual(await picture(freshNc, stream), original[stream], `${stream} from ${f}`);
        } finally {
          await freshNc.close();
        }
      }
    } finally {
      await fresh.stop();
    }
  });

  test("nats-backup verify: the service reads imported backups through and finds them whole; an unknown id fails", { skip: "verify" in Endpoints ? false : "no $BACKUP.verify endpoint yet" }, async () => {
    assert.equal(imported.length, 2);
    for (const id of imported) {
      const run = await natsBackupOk(url(), ["verify", id, "--json"]);
      const reply = JSON.parse(run.stdout) as { id: string; ok: boolean; streams: { stream: string; ok: boolean; format?: string }[] };
      assert.equal(reply.id, id);
      assert.equal(reply.ok, true, run.stdout);
      assert.ok(reply.streams.every((s) => s.ok && s.format === (v2Archives ? "v2" : "v1")), run.stdout);
    }
    // Without --json: the fields, one a line.
    const plain = await natsBackupOk(url(), ["verify", imported[0]!]);
    assert.match(plain.stdout, /^ok: true$/m);
    const missing = await natsBackup(url(), ["verify", "01ARZ3NDEKTSV4RRFFQ69G5FAV"]);
    assert.notEqual(missing.code, 0);
    assert.match(missing.stderr, /not found/);
  });
});
