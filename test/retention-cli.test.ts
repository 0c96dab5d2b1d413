/**
 * `nats-backup serve --keep-last N --max-age AGE`: the service's default retention, applied by
 * the sweep it runs at start; a backup request's own fields win for its stream; a flag it cannot
 * read stops it at once. Runs src/cli/main.ts with tsx, so no build is needed.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { NatsConnection } from "@nats-io/nats-core";
import type { StreamManifest } from "../src/mod.ts";
import { fakeManifest, writeManifests } from "./harness/manifests.ts";
import { waitUntil } from "./harness/inspect.ts";
import { NatsServer } from "./harness/nats-server.ts";
import { request } from "./harness/service.ts";

const Main = join(import.meta.dirname, "..", "src", "cli", "main.ts");
const Hour = 3_600_000;
const Day = 24 * Hour;

interface Child {
  proc: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

const children: Child[] = [];
let home: string;

/** The CLI as a child process, with no NATS_* settings of this environment and no nats context. */
function serve(args: string[]): Child {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("NATS_") && k !== "LOG_LEVEL"));
  const proc = spawn(process.execPath, ["--import", "tsx", Main, "serve", ...args], {
    env: { ...clean, XDG_CONFIG_HOME: home, HOME: home },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  proc.stdout!.on("data", (d: Buffer) => (out = (out + d.toString()).slice(-50_000)));
  proc.stderr!.on("data", (d: Buffer) => (out = (out + d.toString()).slice(-50_000)));
  const exited = new Promise<number | null>((resolve) => proc.once("exit", (code) => resolve(code)));
  const child = { proc, output: () => out, exited };
  children.push(child);
  return child;
}

async function stopped(child: Child): Promise<number | null> {
  child.proc.kill("SIGTERM");
  return child.exited;
}

async function listed(nc: NatsConnection, stream: string): Promise<string[]> {
  const reply = await request<{ backups: StreamManifest[] }>(nc, "$BACKUP.list", { stream });
  assert.equal(reply.errorCode, null, reply.raw);
  return reply.body.backups.map((b) => b.id);
}

async function waitForService(child: Child, nc: NatsConnection): Promise<void> {
  await waitUntil(
    "the backup service to answer $SRV.PING.backup",
    async () => {
      if (child.proc.exitCode !== null) throw new Error(`the service exited with ${child.proc.exitCode}:\n${child.output()}`);
      return nc.request("$SRV.PING.backup", "", { timeout: 1000 }).then(
        () => true,
        () => undefined,
      );
    },
    60_000,
    250,
  );
}

describe("nats-backup serve --keep-last --max-age", () => {
  let server: NatsServer;
  let nc: NatsConnection;

  before(async () => {
    home = mkdtempSync(join(tmpdir(), "nats-backup-cli-"));
    server = await NatsServer.start();
    nc = await server.connect();
  });
  after(async () => {
    for (const child of children) if (child.proc.exitCode === null && child.proc.pid) process.kill(child.proc.pid, "SIGKILL");
    await nc?.close();
    await server?.stop();
    rmSync(home, { recursive: true, force: true });
  });

  test("flags it cannot read: exit 1 naming the flag, before connecting", async () => {
    for (const [args, message] of [
      [["--max-age", "30 d"], /--max-age: invalid duration "30 d"/],
      [["--max-age=-1d"], /--max-age: invalid duration "-1d"/],
      [["--keep-last", "two"], /--keep-last takes a whole number/],
    ] as const) {
      const child = serve(["--server", "nats://127.0.0.1:1", ...args]);
      assert.equal(await child.exited, 1, child.output());
      assert.match(child.output(), message);
    }
  });

  test("the flags are every stream's default, applied at start; a backup request's own field wins for its stream", async () => {
    // A first start makes the bucket; the backups are then written as if made long ago.
    const first = serve(["--server", server.url, "--log-level", "warn"]);
    await waitForService(first, nc);
    assert.equal(await stopped(first), 0, first.output());
    const now = Date.now();
    const counted = [3, 2, 1].map((h) => fakeManifest("COUNTED", now - h * Hour));
    const old = [45, 40].map((d) => fakeManifest("OLD", now - d * Day));
    const own = [3, 2].map((h) => fakeManifest("OWN", now - h * Hour)).concat(fakeManifest("OWN", now - Hour, { retention: { keep_last: 3 } }));
    await writeManifests(nc, [...counted, ...old, ...own]);

    const second = serve(["--server", server.url, "--log-level", "warn", "--keep-last", "2", "--max-age", "30d"]);
    await waitForService(second, nc);
    await waitUntil("the start sweep to remove the oldest COUNTED", async () => ((await listed(nc, "COUNTED")).length === 2 ? true : undefined), 30_000, 100);
    assert.deepEqual(await listed(nc, "COUNTED"), [counted[2]!.id, counted[1]!.id]);
    assert.deepEqual(await listed(nc, "OLD"), [old[1]!.id], "max_age 30d, but never the stream's newest");
    assert.deepEqual(await listed(nc, "OWN"), [own[2]!.id, own[1]!.id, own[0]!.id], "the request's keep_last 3 wins");
    assert.equal(await stopped(second), 0, second.output());
  });
});
