/**
 * `nats-backup report` (src/cli/report-command.ts) run in-process against a real service on one
 * server: a table worst first with the counts, `--json` with the service's reply, a stream filter,
 * and the service's 404 as a CliError. Here a bare commander program runs it; the last test runs
 * the real `nats-backup` process, where main.ts wires it in.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { after, before, describe, test } from "node:test";
import { Command } from "commander";
import { jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import type { JobRecord } from "../src/mod.ts";
import { addReportCommand } from "../src/cli/report-command.ts";
import { CliError } from "../src/cli/ask.ts";
import type { ReportReply } from "../src/protocol/readiness.ts";
import { Subjects } from "../src/protocol/subjects.ts";
import { serverAtLeast } from "./harness/nats-server.ts";
import { request, startRig, type ServiceRig } from "./harness/service.ts";

/** Runs `report …args` and returns what it wrote. */
async function runReport(rig: ServiceRig, args: string[]): Promise<string> {
  const program = new Command().exitOverride();
  let out = "";
  addReportCommand(program, { connectFor: () => rig.server.connect(), write: (text) => void (out += text) });
  await program.parseAsync(["report", ...args], { from: "user" });
  return out;
}

describe("nats-backup report", { timeout: 120_000 }, () => {
  let rig: ServiceRig;

  before(async () => {
    rig = await startRig();
    const jsm = await jetstreamManager(rig.nc);
    await jsm.streams.add({ name: "ORDERS", subjects: ["orders.>"] });
    await jsm.streams.add({ name: "EVENTS", subjects: ["events.>"] });
    await new Kvm(rig.nc).create("config");
    const backup = await request<JobRecord>(rig.nc, Subjects.backupStream("ORDERS"), { wait: true }, 60_000);
    assert.equal(backup.body.state, "completed", backup.raw);
  });
  after(async () => {
    await rig?.stop();
  });

  test("the nats-backup process has the command: report --json", async () => {
    const { stdout } = await promisify(execFile)(process.execPath, ["--import", "tsx", "src/cli/main.ts", "report", "--json", "-s", rig.server.url, "ORDERS"], {
      env: Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("NATS_"))),
    });
    const report = JSON.parse(stdout) as ReportReply;
    assert.deepEqual(report.streams.map((s) => s.stream), ["ORDERS"]);
  });

  test("--json prints the service's reply", async () => {
    const report = JSON.parse(await runReport(rig, ["--json"])) as ReportReply;
    const names = report.streams.map((s) => s.stream).sort();
    assert.deepEqual(names, ["EVENTS", "KV_backups-jobs", "KV_backups-locks", "KV_config", "OBJ_backups", "ORDERS"]);
    // One server: every stream is a single copy; ORDERS has a recent backup, EVENTS and KV_config none (the service's own, which cannot have one, are not counted there).
    assert.equal(report.counts.single_copy, 6);
    assert.equal(report.single_copy_without_recent_backup, 2);
    assert.equal(report.streams.find((s) => s.stream === "KV_config")?.kind, "kv");
    assert.equal(report.streams.find((s) => s.stream === "ORDERS")?.backup?.recent, true);
  });

  test("the table: one row per stream under the header, the service's buckets marked, then the counts", async () => {
    const text = await runReport(rig, []);
    const lines = text.trimEnd().split("\n");
    assert.match(lines[0]!, /^STREAM\s+VERDICT\s+REPLICAS\s+HEALTHY\/QUORUM\s+PEERS\s+AUTO RECOVERY\s+NEWEST BACKUP\s+ACTION$/);
    const rows = lines.slice(1, 7);
    assert.equal(rows.length, 6);
    assert.ok(rows.every((r) => /\ssingle_copy\s+R1\s+1\/1\s/.test(r)), rows.join("\n"));
    assert.ok(rows.some((r) => r.startsWith("OBJ_backups (service)")), rows.join("\n"));
    assert.match(rows.find((r) => r.startsWith("ORDERS "))!, /\s0s\s|\s\d+s\s/);
    assert.match(rows.find((r) => r.startsWith("EVENTS "))!, /\snone\s+back it up now \(\$BACKUP\.stream\.EVENTS\)/);
    assert.equal(lines.at(-1), "6 single_copy; 2 single copy without a recent backup");
  });

  test("streams as arguments and --recent in seconds", async () => {
    const report = JSON.parse(await runReport(rig, ["ORDERS", "--recent", "0", "--json"])) as ReportReply;
    assert.deepEqual(report.streams.map((s) => [s.stream, s.backup?.recent]), [["ORDERS", false]]);
    assert.equal(report.recent_seconds, 0);
  });

  test("an account backup with data counts for its streams; one without data does not", async () => {
    const configOnly = await request<JobRecord>(rig.nc, Subjects.backupAccount, { wait: true }, 60_000);
    assert.equal(configOnly.body.state, "completed", configOnly.raw);
    let report = JSON.parse(await runReport(rig, ["EVENTS", "ORDERS", "--json"])) as ReportReply;
    assert.equal(report.streams.find((s) => s.stream === "EVENTS")?.backup, null);
    assert.equal(report.streams.find((s) => s.stream === "ORDERS")?.backup?.scope, "stream");

    // A memory stream: before 2.15 an account backup saves its configuration only, so its manifest
    // does not cover every stream with data and the report reads which ones from account.json.
    await (await jetstreamManager(rig.nc)).streams.add({ name: "MEM", subjects: ["mem.>"], storage: "memory" as never });
    const withData = await request<JobRecord>(rig.nc, Subjects.backupAccount, { data: true, wait: true }, 60_000);
    assert.equal(withData.body.state, "completed", withData.raw);
    report = JSON.parse(await runReport(rig, ["EVENTS", "ORDERS", "MEM", "--json"])) as ReportReply;
    for (const stream of ["EVENTS", "ORDERS"]) {
      const backup = report.streams.find((s) => s.stream === stream)?.backup;
      assert.deepEqual([backup?.id, backup?.scope, backup?.recent], [withData.body.id, "account", true], stream);
    }
    const mem = report.streams.find((s) => s.stream === "MEM")?.backup ?? null;
    assert.equal(mem?.id ?? null, serverAtLeast("2.15.0") ? withData.body.id : null, JSON.stringify(mem));
  });

  test("an unknown stream is the service's 404, as a CliError", async () => {
    await assert.rejects(runReport(rig, ["NOPE"]), (err: unknown) => err instanceof CliError && err.code === 404 && /NOPE/.test(err.message));
  });
});

describe("a report larger than max_payload comes in pages", { timeout: 120_000 }, () => {
  const MaxPayload = 8192;
  const Streams = 60;
  let rig: ServiceRig;

  before(async () => {
    rig = await startRig({}, { config: `max_payload: ${MaxPayload}` });
    const jsm = await jetstreamManager(rig.nc);
    for (let i = 0; i < Streams; i++) await jsm.streams.add({ name: `S${String(i).padStart(2, "0")}`, subjects: [`s.${i}`] });
  });
  after(async () => {
    await rig?.stop();
  });

  test("$BACKUP.report: each page fits, the offsets walk every stream once in order, the counts are the whole's", async () => {
    const names: string[] = [];
    let pages = 0;
    let offset: number | undefined = 0;
    while (offset !== undefined) {
      pages++;
      const body: { offset: number } = { offset };
      const reply = await request<ReportReply>(rig.nc, Subjects.report, body);
      assert.equal(reply.errorCode, null, reply.raw);
      assert.ok(Buffer.byteLength(reply.raw) <= MaxPayload, `a page of ${Buffer.byteLength(reply.raw)} bytes`);
      assert.ok(reply.body.streams.length > 0);
      assert.equal(reply.body.total, Streams + 3);
      assert.equal(reply.body.counts.single_copy, Streams + 3);
      names.push(...reply.body.streams.map((s) => s.stream));
      offset = reply.body.next_offset;
      if (offset !== undefined) assert.equal(offset, names.length);
    }
    assert.ok(pages > 1, `${pages} page(s)`);
    const expected = [...Array.from({ length: Streams }, (_, i) => `S${String(i).padStart(2, "0")}`), "KV_backups-jobs", "KV_backups-locks", "OBJ_backups"].sort();
    assert.deepEqual(names, expected);
  });

  test("past the end: no streams and no next_offset", async () => {
    const reply = await request<ReportReply>(rig.nc, Subjects.report, { offset: Streams + 3 });
    assert.equal(reply.errorCode, null, reply.raw);
    assert.deepEqual([reply.body.streams.length, reply.body.next_offset, reply.body.total], [0, undefined, Streams + 3]);
  });

  test("nats-backup report reads every page: one table row, one --json entry per stream", async () => {
    const report = JSON.parse(await runReport(rig, ["--json"])) as ReportReply;
    assert.equal(report.streams.length, Streams + 3);
    assert.equal(report.next_offset, undefined);
    const lines = (await runReport(rig, [])).trimEnd().split("\n");
    assert.equal(lines.filter((l) => /^S\d\d\s/.test(l)).length, Streams);
  });
});
