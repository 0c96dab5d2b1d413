/**
 * The real nats CLI against the service, typed as README.md tells users to (issue 11): each
 * command is checked to be in the README and run through a shell, so that its quoting is tested
 * too, with NATS_URL naming the test's server and no nats context of the developer's. Where the
 * CLI's output is read, it is read as JSON: `nats req` prints the reply's body alone on stdout
 * (the rtt and headers go to stderr), `nats micro … --json` and `nats sub --raw` (one body a line).
 */
import assert from "node:assert/strict";
import { createHash, randomUUID } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { NatsConnection } from "@nats-io/nats-core";
import { jetstreamManager } from "@nats-io/jetstream";
import { Endpoints, type StreamManifest, type BackupService, type JobRecord, type JobStarted } from "../src/mod.ts";
import { packageVersion } from "../src/version.ts";
import { NatsServer, natsCliBinary } from "./harness/nats-server.ts";
import { NatsCli, type CliWatch } from "./harness/nats-cli.ts";
import { readmeCodeBlockAfter, readmeCommand } from "./harness/readme.ts";
import { startService } from "./harness/service.ts";
import { consumerStates, makeStream, type ConsumerSnapshot } from "./harness/fixtures.ts";
import { fingerprint, type StreamFingerprint } from "./harness/proc-checks.ts";
import { waitUntil } from "./harness/inspect.ts";

/** What `nats micro ls --json` lists and `nats micro info --json` shows (ADR-32 INFO). */
interface MicroInfo {
  type: string;
  name: string;
  id: string;
  version: string;
  description: string;
  metadata: Record<string, string>;
  endpoints: { name: string; subject: string; queue_group: string; metadata: Record<string, string> }[];
}

/** What `nats micro stats --json` lists (ADR-32 STATS). */
interface MicroStats {
  type: string;
  name: string;
  id: string;
  endpoints: { name: string; subject: string; num_requests: number; num_errors: number; last_error: string }[];
}

const cliBinary = natsCliBinary();
const JobType = "io.nats.backup.v1.job";

/** A job event printed by `nats sub --raw`, or undefined for any other line (the readiness probe). */
function jobEvent(line: string): JobRecord | undefined {
  const body = JSON.parse(line) as { type?: string };
  return body.type === JobType ? (body as JobRecord) : undefined;
}

/** The reply body of a `nats req`, which must not be an error. */
async function reply<T>(cli: NatsCli, command: string, timeoutMs?: number): Promise<T> {
  const body = await cli.json<T & { error?: unknown }>(command, { timeoutMs });
  assert.equal(body.error, undefined, `\`${command}\` replied an error: ${JSON.stringify(body)}`);
  return body;
}

/** sha256 of a file as the object store (and so the manifest) spells it: `SHA-256=` and base64url with padding. */
function objectDigest(path: string): string {
  const b64 = createHash("sha256").update(readFileSync(path)).digest("base64");
  return `SHA-256=${b64.replaceAll("+", "-").replaceAll("/", "_")}`;
}

describe("the nats CLI, typed as README.md says, against the service", { skip: cliBinary.reason ?? false }, () => {
  let server: NatsServer;
  const instances: { nc: NatsConnection; svc: BackupService }[] = [];
  let nc: NatsConnection;
  let cli: NatsCli;
  /** `nats sub '$BACKUP.status.>'`, started before the first request. */
  let events: CliWatch;
  let original: { fingerprint: StreamFingerprint; consumers: ConsumerSnapshot[] };
  /** The requests the CLI sent to each endpoint, for `nats micro stats`. */
  const sent: Record<string, number> = {};
  const count = (endpoint: keyof typeof Endpoints) => (sent[endpoint] = (sent[endpoint] ?? 0) + 1);
  let first: StreamManifest;
  let published: StreamManifest;

  before(async () => {
    server = await NatsServer.start();
    // Two instances in the queue group, as the README's cluster runs them.
    for (let i = 0; i < 2; i++) {
      const serviceNc = await server.connect();
      instances.push({ nc: serviceNc, svc: await startService(serviceNc) });
    }
    nc = await server.connect();
    await makeStream(nc, "ORDERS", { messages: 400, deleteEvery: 29 });
    original = { fingerprint: await fingerprint(nc, "ORDERS"), consumers: await consumerStates(nc, "ORDERS") };
    assert.equal(original.consumers.length, 2);

    cli = new NatsCli(cliBinary.path!, server.url);
    events = cli.watch(`${readmeCommand("nats sub '$BACKUP.status.>'")} --raw`);
    // `nats sub` logs "Subscribing on" before it subscribes: it is ready once it printed a probe
    // published after it started, sent again until it did.
    const probe = randomUUID();
    const resend = setInterval(() => nc.publish("$BACKUP.status.cli-test-probe", JSON.stringify({ probe })), 100);
    try {
      await events.waitFor("nats sub to print the probe", (line) => (line.includes(probe) ? true : undefined), 30_000);
    } finally {
      clearInterval(resend);
    }
  });

  after(async () => {
    await cli?.close();
    for (const { nc: serviceNc, svc } of instances) {
      await svc.stop();
      await serviceNc.close();
    }
    await nc?.close();
    await server?.stop();
  });

  const instanceIds = () => instances.map((i) => i.svc.id).sort();

  test("nats micro ls lists the service named backup with both its instances", async () => {
    const command = `${readmeCommand("nats micro ls")} --json`;
    // The CLI takes the replies that come within 300 ms of each other; both instances are asked again if one was late.
    const listed = await waitUntil(
      "both instances in nats micro ls",
      async () => {
        const backup = (await cli.json<MicroInfo[]>(command)).filter((s) => s.name === "backup");
        return backup.length === instances.length ? backup : undefined;
      },
      30_000,
    );
    assert.deepEqual(listed.map((s) => s.id).sort(), instanceIds());
    for (const s of listed) {
      assert.equal(s.type, "io.nats.micro.v1.info_response");
      assert.equal(s.version, packageVersion);
      assert.deepEqual(s.metadata, { bucket: "backups" });
      assert.match(s.description, /JetStream/);
    }
  });

  test("nats micro info backup shows the thirteen endpoints with their subjects, queue group and metadata", async () => {
    const { info, stats } = await cli.json<{ info: MicroInfo; stats: MicroStats }>(`${readmeCommand("nats micro info backup")} --json`);
    assert.ok(instanceIds().includes(info.id), `info of an unknown instance ${info.id}`);
    assert.equal(info.name, "backup");
    assert.deepEqual(info.metadata, { bucket: "backups" });
    const expected = Object.entries(Endpoints).map(([name, spec]) => ({
      name,
      subject: spec.subject,
      queue_group: "q",
      metadata: { description: spec.description, request: spec.request, reply: spec.reply },
    }));
    assert.deepEqual(
      expected.map((e) => e.name).sort(),
      ["backup-account", "backup-stream", "delete", "info", "job", "list", "peer-remove", "prune", "report", "restore-account", "restore-stream", "server-remove", "verify"],
    );
    const byName = (a: { name: string }, b: { name: string }) => a.name.localeCompare(b.name);
    assert.deepEqual([...info.endpoints].sort(byName), expected.sort(byName));
    assert.equal(stats.id, info.id);
    assert.deepEqual(stats.endpoints.map((e) => e.name).sort(), Object.keys(Endpoints).sort());
  });

  test("nats req '$BACKUP.stream.ORDERS' '' starts a backup, and nats sub '$BACKUP.status.>' sees it complete", async () => {
    const started = await reply<JobStarted>(cli, readmeCommand("nats req '$BACKUP.stream.ORDERS' ''"));
    count("backup-stream");
    assert.equal(started.operation, "backup");
    assert.equal(started.stream, "ORDERS");
    assert.equal(started.state, "running");
    assert.equal(started.status_subject, `$BACKUP.status.${started.id}`);

    const ended = await events.waitFor(`backup ${started.id} to end`, (line) => {
      const e = jobEvent(line);
      return e?.id === started.id && e.state !== "running" ? e : undefined;
    });
    assert.equal(ended.state, "completed", JSON.stringify(ended.error));
    // The watch was there before the request: it saw the job from its first event.
    assert.equal(events.lines.map(jobEvent).find((e) => e?.id === started.id)?.state, "running");
    first = ended.result as StreamManifest;
    assert.equal(first.id, started.id);
    assert.equal(first.messages, original.fingerprint.messages);
    assert.equal(first.first_seq, original.fingerprint.first_seq);
    assert.equal(first.last_seq, original.fingerprint.last_seq);
    assert.deepEqual(first.consumers, ["AUDIT", "PROCESSOR"]);
  });

  test("nats req '$BACKUP.list' '' lists the completed backup", async () => {
    const list = await reply<{ backups: StreamManifest[]; next?: string }>(cli, readmeCommand("nats req '$BACKUP.list' ''"));
    count("list");
    assert.deepEqual(list.backups, [first]);
    assert.equal(list.next, undefined);
  });

  test("a backup request sent with nats pub (no reply) still runs: nats sub sees it complete, $BACKUP.list shows it", async () => {
    const command = "nats pub '$BACKUP.stream.ORDERS' '{}'";
    await cli.ok(command);
    count("backup-stream");
    const ended = await events.waitFor("the published backup to end", (line) => {
      const e = jobEvent(line);
      return e && e.operation === "backup" && e.id !== first.id && e.state !== "running" ? e : undefined;
    });
    assert.equal(ended.state, "completed", JSON.stringify(ended.error));
    assert.equal(ended.stream, "ORDERS");
    published = ended.result as StreamManifest;
    assert.equal(published.messages, original.fingerprint.messages);

    const list = await reply<{ backups: StreamManifest[] }>(cli, readmeCommand("nats req '$BACKUP.list' ''"));
    count("list");
    assert.deepEqual(
      list.backups.map((b) => b.id),
      [published.id, first.id],
      "newest first",
    );
  });

  test(`nats req '$RESTORE.stream.ORDERS' '{"wait":true}' --timeout 10m restores the newest backup to an equal stream`, async () => {
    await (await jetstreamManager(nc)).streams.delete("ORDERS");
    const command = readmeCommand(`nats req '$RESTORE.stream.ORDERS' '{"wait":true}' --timeout 10m`);
    const record = await reply<JobRecord>(cli, command, 120_000);
    count("restore-stream");
    assert.equal(record.operation, "restore");
    assert.equal(record.state, "completed", JSON.stringify(record.error));
    assert.equal(record.backup, published.id);
    assert.deepEqual(await fingerprint(nc, "ORDERS"), original.fingerprint);
    assert.deepEqual(await consumerStates(nc, "ORDERS"), original.consumers);
  });

  test(`nats req '$BACKUP.prune' '{"dry_run":true}' shows nothing to remove when no retention is set`, async () => {
    const pruned = await reply<{ dry_run: boolean; streams: unknown[]; more: boolean }>(
      cli,
      readmeCommand(`nats req '$BACKUP.prune' '{"dry_run":true}'`),
    );
    count("prune");
    assert.deepEqual(pruned, { dry_run: true, streams: [], more: false });
  });

  test("the README's recipe (nats obj get, nats stream restore) restores one of our backups to an equal stream", async () => {
    const recipe = readmeCodeBlockAfter("To restore one with the nats CLI instead");
    assert.match(recipe, /<id>/, "the recipe names the backup as <id>");
    await (await jetstreamManager(nc)).streams.delete("ORDERS");
    const dir = mkdtempSync(join(tmpdir(), "nats-backup-recipe-"));
    try {
      await cli.ok(recipe.replaceAll("<id>", first.id), { cwd: dir, timeoutMs: 120_000 });
      // The CLI fetched the very archive the manifest describes.
      assert.equal(objectDigest(join(dir, "ORDERS", "stream.tar.s2")), first.sha256);
      assert.deepEqual(await fingerprint(nc, "ORDERS"), original.fingerprint);
      assert.deepEqual(await consumerStates(nc, "ORDERS"), original.consumers);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("nats micro stats backup counts, over both instances, every request the CLI made and no errors", async () => {
    const command = "nats micro stats backup --json";
    const stats = await waitUntil(
      "stats from both instances",
      async () => {
        const all = (await cli.json<MicroStats[]>(command)).filter((s) => s.name === "backup");
        return all.length === instances.length ? all : undefined;
      },
      30_000,
    );
    assert.deepEqual(stats.map((s) => s.id).sort(), instanceIds());
    for (const s of stats) assert.equal(s.type, "io.nats.micro.v1.stats_response");
    const counted = Object.fromEntries(
      Object.keys(Endpoints).map((name) => [
        name,
        stats.flatMap((s) => s.endpoints.filter((e) => e.name === name)).reduce((n, e) => n + e.num_requests, 0),
      ]),
    );
    const expected = Object.fromEntries(Object.keys(Endpoints).map((name) => [name, sent[name] ?? 0]));
    assert.deepEqual(counted, expected);
    assert.deepEqual(
      stats.flatMap((s) => s.endpoints.filter((e) => e.num_errors > 0 || e.last_error !== "")),
      [],
      "no endpoint counted an error",
    );
  });
});
