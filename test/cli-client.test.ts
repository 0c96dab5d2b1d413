/**
 * The client subcommands of `nats-backup` (issue 14), run as child processes
 * (`node --import tsx src/cli/main.ts …`) against a real nats-server with the service running:
 * in a pipe (no bar, one log line per status event) and in a pseudo-terminal (the bar drawn,
 * read back from the screen).
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { jetstreamManager } from "@nats-io/jetstream";
import type { JobRecord, JobStarted, StreamManifest } from "../src/mod.ts";
import { NatsServer } from "./harness/nats-server.ts";
import { request, startRig, type ServiceRig } from "./harness/service.ts";
import { makeStream } from "./harness/fixtures.ts";
import { fingerprint } from "./harness/proc-checks.ts";
import { waitUntil } from "./harness/inspect.ts";
import { Gate, gateOnce, openAllGates } from "./harness/gate.ts";
import { runInTerminal, scriptMissing } from "./harness/terminal.ts";
import { ulidAt, writeManifest } from "./harness/manifests.ts";

const Main = join(import.meta.dirname, "..", "src", "cli", "main.ts");
/** What cli-progress draws a bar with (its shades presets), and the cursor moves of a redraw. */
const BarChars = /[\u2588\u2591]/;
const Redraw = /\r(?!\n)|\x1b\[/;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

interface Child {
  proc: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<Run>;
}

/** Children still running when the file ends are killed by their PID. */
const children: Child[] = [];
/** An empty config directory: no nats context of the user is read. */
let home: string;

function cleanEnv(): NodeJS.ProcessEnv {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("NATS_") && k !== "LOG_LEVEL"));
  return { ...clean, XDG_CONFIG_HOME: home, HOME: home };
}

/** Starts `nats-backup <args>` with its stdout and stderr as pipes. */
function start(args: string[]): Child {
  const proc = spawn(process.execPath, ["--import", "tsx", Main, ...args], { env: cleanEnv(), stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  proc.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  proc.stderr!.on("data", (d: Buffer) => (err += d.toString()));
  const exited = new Promise<Run>((resolve) => proc.once("close", (code) => resolve({ code, stdout: out, stderr: err })));
  const child = { proc, stdout: () => out, stderr: () => err, exited };
  children.push(child);
  return child;
}

/** Runs `nats-backup <args>` to its end (killed after 90 s). */
async function cli(args: string[]): Promise<Run> {
  const child = start(args);
  const timer = setTimeout(() => child.proc.pid && process.kill(child.proc.pid, "SIGKILL"), 90_000);
  try {
    return await child.exited;
  } finally {
    clearTimeout(timer);
  }
}

function show(run: Run): string {
  return `exit ${run.code}\n--- stdout\n${run.stdout}\n--- stderr\n${run.stderr}`;
}

before(() => {
  home = mkdtempSync(join(tmpdir(), "nats-backup-cli-client-"));
});
after(async () => {
  openAllGates();
  for (const child of children) {
    if (child.proc.exitCode === null && child.proc.signalCode === null && child.proc.pid) {
      process.kill(child.proc.pid, "SIGKILL");
      await child.exited;
    }
  }
  rmSync(home, { recursive: true, force: true });
});

describe("nats-backup client subcommands", () => {
  let rig: ServiceRig;
  let s: string[];

  before(async () => {
    rig = await startRig();
    s = ["--server", rig.server.url];
  });
  after(async () => {
    openAllGates();
    await rig?.stop();
  });

  test("stream backup, ls, info, stream restore after the stream is deleted, rm: in a pipe, log lines and no bar", { timeout: 120_000 }, async () => {
    await makeStream(rig.nc, "TRIP", { messages: 120 });
    const original = await fingerprint(rig.nc, "TRIP");

    const backup = await cli([...s, "stream", "backup", "TRIP", "--tag", "nightly"]);
    assert.equal(backup.code, 0, show(backup));
    // Not a terminal: never a bar, never a redraw; one log line per status event instead.
    assert.doesNotMatch(backup.stdout, BarChars, show(backup));
    assert.doesNotMatch(backup.stdout, Redraw, show(backup));
    const id = /^Backup ([0-9A-Z]{26}): 120 messages, 2 consumers, tag "nightly"$/m.exec(backup.stdout)?.[1];
    assert.ok(id, show(backup));
    const manifest = (await request<StreamManifest>(rig.nc, `$BACKUP.info.${id}`)).body;
    const events = backup.stdout.split("\n").filter((l) => l.includes(` ${id} backup of stream TRIP: `));
    assert.ok(events.length >= 2, show(backup));
    assert.match(events.at(-1)!, /: completed, /);
    assert.ok(events.slice(0, -1).every((l) => /: running, /.test(l)), show(backup));
    assert.match(
      backup.stdout,
      new RegExp(`^Received \\S+ \\w?i?B of compressed data in ${manifest.chunks} chunks? for stream "TRIP" in \\d+(ms|\\.\\d\\ds)`, "m"),
    );

    const ls = await cli([...s, "ls"]);
    assert.equal(ls.code, 0, show(ls));
    const [header, ...rows] = ls.stdout.trimEnd().split("\n");
    assert.match(header!, /^ID\s+SCOPE\s+STREAM\s+CREATED\s+SIZE\s+MESSAGES$/);
    const row = rows.find((r) => r.startsWith(id));
    assert.ok(row, show(ls));
    assert.match(row, new RegExp(`^${id}\\s+stream\\s+TRIP\\s+\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d\\s+.*\\s120$`));
    const lsOther = await cli([...s, "ls", "NOSUCH"]);
    assert.equal(lsOther.code, 0, show(lsOther));
    assert.equal(lsOther.stdout, "no backups of stream NOSUCH\n");

    const info = await cli([...s, "info", id]);
    assert.equal(info.code, 0, show(info));
    assert.match(info.stdout, new RegExp(`Backup: ${id}$`, "m"));
    assert.match(info.stdout, /Stream: TRIP$/m);
    assert.match(info.stdout, /Messages: 120$/m);
    assert.match(info.stdout, /Consumers: (AUDIT, PROCESSOR|PROCESSOR, AUDIT)$/m);
    assert.ok(info.stdout.includes(`Digest: ${manifest.sha256}\n`), info.stdout);
    const infoJson = await cli([...s, "info", id, "--json"]);
    assert.deepEqual(JSON.parse(infoJson.stdout), manifest);

    await (await jetstreamManager(rig.nc)).streams.delete("TRIP");
    const restore = await cli([...s, "stream", "restore", "TRIP", "--backup", id]);
    assert.equal(restore.code, 0, show(restore));
    assert.match(restore.stdout, new RegExp(`^Restored stream "TRIP" from backup ${id}: 120 messages, \\S+ \\w?i?B, 2 consumers, 1 replica in `, "m"));
    assert.doesNotMatch(restore.stdout, BarChars);
    assert.deepEqual(await fingerprint(rig.nc, "TRIP"), original);

    // The stream exists now: the service's 409, in its words, and a non-zero exit.
    const again = await cli([...s, "stream", "restore", "TRIP"]);
    assert.notEqual(again.code, 0, show(again));
    assert.match(again.stderr, /^nats-backup: .*TRIP already exist.*\(code 409\)$/m);

    const rm = await cli([...s, "rm", id]);
    assert.equal(rm.code, 0, show(rm));
    assert.equal(rm.stdout, `Removed backup ${id} (3 objects)\n`);
    const gone = await cli([...s, "info", id]);
    assert.equal(gone.code, 1, show(gone));
    const said = await request(rig.nc, `$BACKUP.info.${id}`);
    assert.equal(gone.stderr, `nats-backup: ${(said.body as { error: { description: string } }).error.description} (code 404)\n`);
  });

  test("--json prints only the final job record, the one $BACKUP.job.<id> holds", { timeout: 120_000 }, async () => {
    await makeStream(rig.nc, "JSONOUT", { messages: 30, consumers: false });
    const run = await cli([...s, "stream", "backup", "JSONOUT", "--json", "--no-consumers"]);
    assert.equal(run.code, 0, show(run));
    const record = JSON.parse(run.stdout) as JobRecord;
    assert.equal(record.state, "completed");
    assert.equal(record.stream, "JSONOUT");
    assert.deepEqual((record.result as StreamManifest).consumers, []);
    const stored = await request<JobRecord>(rig.nc, `$BACKUP.job.${record.id}`);
    assert.deepEqual(record, stored.body);
    assert.equal(run.stderr, "");
  });

  test("errors: an unknown stream or job is the service's 404 on stderr; no service is said plainly; all exit non-zero", { timeout: 120_000 }, async () => {
    const said = await request<{ error: { description: string } }>(rig.nc, "$BACKUP.stream.NOSUCH", {});
    assert.equal(said.errorCode, 404, said.raw);
    const run = await cli([...s, "stream", "backup", "NOSUCH"]);
    assert.equal(run.code, 1, show(run));
    assert.equal(run.stderr, `nats-backup: ${said.body.error.description} (code 404)\n`);
    assert.equal(run.stdout, "");

    // A job nobody knows: the service's 404 at once, not a wait.
    const unknown = await cli([...s, "watch", "01ARZ3NDEKTSV4RRFFQ69G5FAV"]);
    assert.equal(unknown.code, 1, show(unknown));
    assert.equal(unknown.stderr, "nats-backup: job 01ARZ3NDEKTSV4RRFFQ69G5FAV not found (code 404)\n");

    const bare = await NatsServer.start();
    try {
      const none = await cli(["--server", bare.url, "stream", "backup", "X"]);
      assert.equal(none.code, 1, show(none));
      assert.equal(none.stderr, "nats-backup: no backup service answered on $BACKUP.stream.X (is `nats-backup serve` running?)\n");
      const list = await cli(["--server", bare.url, "ls"]);
      assert.equal(list.code, 1, show(list));
      assert.match(list.stderr, /no backup service answered on \$BACKUP\.list/);
    } finally {
      await bare.stop();
    }
  });

  test("the flags become the request's fields", { timeout: 120_000 }, async () => {
    const seen: { subject: string; body: Record<string, unknown> }[] = [];
    // A plain subscription gets a copy of every request beside the service's queue group.
    const spy = rig.nc.subscribe("$RESTORE.>", { callback: (_e, m) => void seen.push({ subject: m.subject, body: m.json() }) });
    const spyBackup = rig.nc.subscribe("$BACKUP.stream.FLAGS", { callback: (_e, m) => void seen.push({ subject: m.subject, body: m.json() }) });
    await rig.nc.flush();
    try {
      await cli([...s, "stream", "backup", "FLAGS", "--no-consumers", "--check", "--tag", "t1", "--keep-last", "3", "--max-age", "30d"]);
      const id = "01ARZ3NDEKTSV4RRFFQ69G5FAV";
      await cli([...s, "stream", "restore", "FLAGS", "--backup", id, "--replicas", "1", "--cluster", "c1", "--tag", "ssd", "--tag", "eu"]);
      await cli([...s, "account", "restore", "--backup", id, "--update-streams", "--no-data", "--stream", "A", "--stream", "B"]);
      await rig.nc.flush();
      assert.deepEqual(seen, [
        { subject: "$BACKUP.stream.FLAGS", body: { consumers: false, check: true, tag: "t1", keep_last: 3, max_age: "30d", wait: false } },
        { subject: "$RESTORE.stream.FLAGS", body: { backup: id, replicas: 1, placement: { cluster: "c1", tags: ["ssd", "eu"] }, wait: false } },
        { subject: "$RESTORE.account", body: { backup: id, update_streams: true, data: false, streams: ["A", "B"], wait: false } },
      ]);
    } finally {
      spy.unsubscribe();
      spyBackup.unsubscribe();
    }
  });

  test("account backup --data and account restore --update-streams", { timeout: 120_000 }, async () => {
    await makeStream(rig.nc, "ACCT", { messages: 20, consumers: false });
    const backup = await cli([...s, "account", "backup", "--data"]);
    assert.equal(backup.code, 0, show(backup));
    const id = /^Backed up the account as backup ([0-9A-Z]{26}): \d+ streams? \(\d+ with data, /m.exec(backup.stdout)?.[1];
    assert.ok(id, show(backup));
    assert.doesNotMatch(backup.stdout, BarChars);
    const ls = await cli([...s, "ls", "--scope", "account"]);
    assert.match(ls.stdout, new RegExp(`^${id}\\s+account\\s+\\(\\d+ streams?\\)`, "m"), show(ls));

    // Every stream exists: without --update-streams the job fails (409), with it every stream is updated or unchanged.
    const refused = await cli([...s, "account", "restore", "--backup", id]);
    assert.equal(refused.code, 1, show(refused));
    assert.match(refused.stderr, /account restore job [0-9A-Z]{26} failed: .*already exist.*\(code 409\)/);
    const updated = await cli([...s, "account", "restore", "--backup", id, "--update-streams"]);
    assert.equal(updated.code, 0, show(updated));
    assert.match(updated.stdout, new RegExp(`^Restored account backup ${id}: \\d+ streams?, \\d+ unchanged in `, "m"));
  });

  test("watch ID prints the job's events as they come, through its terminal one, and exits 0", { timeout: 120_000 }, async () => {
    await makeStream(rig.nc, "WATCHED", { messages: 20, consumers: false });
    // The backup is held before its commit, running, until the watch has shown it running.
    const gate = new Gate();
    gateOnce(rig.svc.catalogue, "commit", gate);
    const started = await request<JobStarted>(rig.nc, "$BACKUP.stream.WATCHED", {});
    assert.equal(started.errorCode, null, started.raw);
    const id = started.body.id;
    await gate.entered;
    const watch = start([...s, "watch", id]);
    await waitUntil("the watch to show the job running", () => watch.stdout().includes(`${id} backup of stream WATCHED: running`), 30_000);
    gate.open();
    const run = await watch.exited;
    assert.equal(run.code, 0, show(run));
    const lines = run.stdout.trimEnd().split("\n");
    assert.ok(lines.length >= 2, show(run));
    assert.ok(lines.every((l) => l.includes(` ${id} backup of stream WATCHED: `)), show(run));
    assert.ok(lines.slice(0, -1).every((l) => l.includes(": running, ")), show(run));
    assert.match(lines.at(-1)!, /: completed, /);
  });

  test("a job that ends partial exits 1 naming what failed; watch ID stopped by Ctrl-C exits 0", { timeout: 120_000 }, async () => {
    await makeStream(rig.nc, "HELD", { messages: 10, consumers: false });
    await makeStream(rig.nc, "FREE", { messages: 10, consumers: false });
    // A backup of HELD held before its commit keeps HELD's lock: an account backup finds it busy.
    const gate = new Gate();
    gateOnce(rig.svc.catalogue, "commit", gate);
    const held = await request<JobStarted>(rig.nc, "$BACKUP.stream.HELD", {});
    assert.equal(held.errorCode, null, held.raw);
    await gate.entered;
    try {
      const partial = await cli([...s, "account", "backup", "--data", "--stream", "HELD", "--stream", "FREE"]);
      assert.equal(partial.code, 1, show(partial));
      assert.match(partial.stdout, /^Backed up the account as backup [0-9A-Z]{26}: 1 stream \(1 with data, /m);
      assert.match(partial.stderr, /^stream HELD failed: .*(busy|lock|running).*$/m);
      assert.match(partial.stderr, /^nats-backup: account backup job [0-9A-Z]{26} ended partial: /m);

      // Ctrl-C ends a watch of one job with 0: the watch was asked for, the job is not its to judge yet.
      const watch = start([...s, "watch", held.body.id]);
      await waitUntil("the watch to show the held job running", () => watch.stdout().includes(`${held.body.id} backup of stream HELD: running`), 30_000);
      process.kill(watch.proc.pid!, "SIGINT");
      const stopped = await watch.exited;
      assert.equal(stopped.code, 0, show(stopped));
    } finally {
      gate.open();
    }
    const record = await waitUntil("the held backup to end", async () => {
      const r = (await request<JobRecord>(rig.nc, `$BACKUP.job.${held.body.id}`)).body;
      return r.state !== "running" && r;
    });
    assert.equal(record.state, "completed");
  });

  test("Ctrl-C during a backup leaves the job running and says how to follow it (exit 130)", { timeout: 120_000 }, async () => {
    await makeStream(rig.nc, "INTR", { messages: 10, consumers: false });
    const gate = new Gate();
    gateOnce(rig.svc.catalogue, "commit", gate);
    try {
      const backup = start([...s, "stream", "backup", "INTR", "--no-progress"]);
      await gate.entered;
      await waitUntil("the client to show the job running", () => /backup of stream INTR: running/.test(backup.stdout()), 30_000);
      process.kill(backup.proc.pid!, "SIGINT");
      const run = await backup.exited;
      assert.equal(run.code, 130, show(run));
      const id = /^\S+ ([0-9A-Z]{26}) backup of stream INTR/m.exec(run.stdout)?.[1];
      assert.ok(id, show(run));
      assert.equal(run.stderr, `nats-backup: stopped following job ${id}; it goes on in the service (nats-backup watch ${id})\n`);
      gate.open();
      const record = await waitUntil("the backup to end", async () => {
        const r = (await request<JobRecord>(rig.nc, `$BACKUP.job.${id}`)).body;
        return r.state !== "running" && r;
      });
      assert.equal(record.state, "completed");
    } finally {
      gate.open();
    }
  });

  test("watch with no ID prints every job's events until Ctrl-C", { timeout: 120_000 }, async () => {
    await makeStream(rig.nc, "ALLJOBS", { messages: 10, consumers: false });
    const watch = start([...s, "watch"]);
    await waitUntil("the watch to subscribe", () => watch.stderr().includes("watching $BACKUP.status.>"), 30_000);
    const done = await request<JobRecord>(rig.nc, "$BACKUP.stream.ALLJOBS", { wait: true }, 60_000);
    assert.equal(done.body.state, "completed", done.raw);
    const id = done.body.id;
    await waitUntil("the watch to print the completed event", () => watch.stdout().includes(`${id} backup of stream ALLJOBS: completed`), 30_000);
    process.kill(watch.proc.pid!, "SIGINT");
    const run = await watch.exited;
    assert.equal(run.code, 0, show(run));
    assert.match(run.stdout, new RegExp(`${id} backup of stream ALLJOBS: running, `));
  });

  test("ls reads every page (300 backups), as a table and as JSON far larger than a pipe's buffer", { timeout: 120_000 }, async () => {
    // Manifests written straight into the bucket: listed, never restored. More than a page (256).
    const base = Date.now() - 3600_000;
    const ids: string[] = [];
    for (let i = 0; i < 300; i++) {
      const id = ulidAt(base + i);
      ids.push(id);
      await writeManifest(rig.nc, {
        type: "io.nats.backup.v1.manifest",
        id,
        scope: "stream",
        stream: "MANY",
        created: new Date(base + i).toISOString(),
        completed: new Date(base + i).toISOString(),
        size: 1000 + i,
        chunks: 1,
        sha256: "SHA-256=" + "A".repeat(43),
        messages: i,
        bytes: 5000,
        first_seq: 1,
        last_seq: i,
        consumers: [],
        checked: false,
        tag: "x".repeat(200),
        objects: { config: `${id}/backup.json`, archive: `${id}/stream.tar.s2`, manifest: `${id}/manifest.json` },
        server: { name: "test", version: "2.15.3" },
      });
    }
    const json = await cli([...s, "ls", "MANY", "--json"]);
    assert.equal(json.code, 0, json.stderr);
    assert.ok(json.stdout.length > 256 * 1024, `${json.stdout.length} bytes`);
    const listed = JSON.parse(json.stdout) as StreamManifest[];
    assert.deepEqual(
      listed.map((m) => m.id),
      [...ids].reverse(),
    );
    const table = await cli([...s, "ls", "MANY"]);
    assert.equal(table.code, 0, table.stderr);
    const rows = table.stdout.trimEnd().split("\n").slice(1);
    assert.equal(rows.length, 300);
    assert.match(rows[0]!, new RegExp(`^${ids.at(-1)}\\s+stream\\s+MANY\\s+.*\\s+299$`));

    // A reader that stops early (`nats-backup ls | head`): the output's pipe closes under a write
    // far larger than its buffer; the command ends quietly with 0, no EPIPE stack on stderr.
    const early = start([...s, "ls", "MANY", "--json"]);
    await new Promise<void>((resolve) => early.proc.stdout!.once("data", () => resolve()));
    early.proc.stdout!.destroy();
    const ended = await early.exited;
    assert.equal(ended.code, 0, ended.stderr);
    assert.doesNotMatch(ended.stderr, /EPIPE|Error/);
  });

  test("in a pseudo-terminal: the bar is drawn, and the screen ends with the summary", { skip: scriptMissing() ?? false, timeout: 120_000 }, async () => {
    // Random payloads of up to 70 KB: a few MiB, so the bar has a real total (the stream's bytes).
    await makeStream(rig.nc, "BAR", { messages: 240, consumers: false });
    const tty = await runInTerminal([process.execPath, "--import", "tsx", Main, ...s, "stream", "backup", "BAR"], { env: cleanEnv(), cols: 120, rows: 40 });
    assert.equal(tty.code, 0, tty.raw);
    assert.match(tty.raw, BarChars, tty.raw);
    assert.match(tty.raw, /backup of stream BAR [\u2588\u2591]{30} \d{1,3}% \| /, tty.raw);
    assert.match(tty.raw, / 100% \| /, tty.raw);
    // The bar hides the cursor while it draws, and shows it again.
    assert.ok(tty.raw.includes("\x1b[?25l") && tty.raw.includes("\x1b[?25h"), JSON.stringify(tty.raw));
    const screen = tty.screen;
    const summary = screen.findIndex((l) => /^Received \S+ \w?i?B of compressed data in \d+ chunks? for stream "BAR" in /.test(l));
    assert.ok(summary > 0, screen.join("\n"));
    assert.match(screen[summary + 1]!, /^Backup [0-9A-Z]{26}: 240 messages, 0 consumers$/);
    // The bar's last frame stays on the screen above the summary: full.
    assert.match(screen[summary - 1]!, /^backup of stream BAR \u2588{30} 100% \| \S+ \w?i?B( stored)? of \S+ \w?i?B \| \d+ chunks? \| \S+ \w?i?B\/s$/, screen.join("\n"));
    // No log lines on a terminal.
    assert.ok(!screen.some((l) => l.includes(": running, ")), screen.join("\n"));

    // A restore's bar runs to the archive's size.
    await (await jetstreamManager(rig.nc)).streams.delete("BAR");
    const restore = await runInTerminal([process.execPath, "--import", "tsx", Main, ...s, "stream", "restore", "BAR"], { env: cleanEnv() });
    assert.equal(restore.code, 0, restore.raw);
    const restored = restore.screen.findIndex((l) => /^Restored stream "BAR" from backup [0-9A-Z]{26}: 240 messages, /.test(l));
    assert.ok(restored > 0, restore.screen.join("\n"));
    assert.match(restore.screen[restored - 1]!, /^restore of stream BAR \u2588{30} 100% \| (\S+ \w?i?B) of \1 \| \d+ chunks? \| /, restore.screen.join("\n"));

    const plain = await runInTerminal([process.execPath, "--import", "tsx", Main, ...s, "stream", "backup", "BAR", "--no-progress"], { env: cleanEnv() });
    assert.equal(plain.code, 0, plain.raw);
    assert.doesNotMatch(plain.raw, BarChars);
    assert.ok(plain.screen.some((l) => /backup of stream BAR: completed, /.test(l)), plain.screen.join("\n"));
  });
});
