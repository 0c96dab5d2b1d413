import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { NatsConnection } from "@nats-io/nats-core";
import type { BackupManifest } from "../src/mod.ts";
import { NatsServer } from "./harness/nats-server.ts";
import { request } from "./harness/service.ts";
import { waitUntil } from "./harness/inspect.ts";

const Bin = join(import.meta.dirname, "..", "bin", "nats-backup.js");

interface Child {
  proc: ChildProcess;
  output: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

describe("nats-backup serve", () => {
  let server: NatsServer;
  let nc: NatsConnection;
  /** An empty config directory: no nats context of the user is read. */
  let home: string;
  const children: Child[] = [];

  /** Starts the CLI as a child process with an environment free of NATS_* settings, plus `env`. */
  function run(args: string[], env: Record<string, string> = {}): Child {
    const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("NATS_") && k !== "LOG_LEVEL"));
    const proc = spawn(process.execPath, [Bin, ...args], {
      env: { ...clean, XDG_CONFIG_HOME: home, HOME: home, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    proc.stdout!.on("data", (d: Buffer) => (out = (out + d.toString()).slice(-50_000)));
    proc.stderr!.on("data", (d: Buffer) => (out = (out + d.toString()).slice(-50_000)));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      proc.once("exit", (code, signal) => resolve({ code, signal })),
    );
    const child = { proc, output: () => out, exited };
    children.push(child);
    return child;
  }

  async function exitWithin(child: Child, ms: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`pid ${child.proc.pid} did not exit in ${ms} ms:\n${child.output()}`)), ms);
    });
    try {
      return await Promise.race([child.exited, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Waits until a `backup` service answers `$SRV.PING.backup`; returns its answer. */
  async function waitForService(child: Child): Promise<{ name: string; id: string; metadata?: Record<string, string> }> {
    return waitUntil(
      "the backup service to answer $SRV.PING.backup",
      async () => {
        if (child.proc.exitCode !== null) throw new Error(`the service exited with ${child.proc.exitCode}:\n${child.output()}`);
        try {
          const reply = await nc.request("$SRV.PING.backup", "", { timeout: 1000 });
          return reply.json<{ name: string; id: string; metadata?: Record<string, string> }>();
        } catch {
          return undefined;
        }
      },
      60_000,
      250,
    );
  }

  before(async () => {
    home = mkdtempSync(join(tmpdir(), "nats-backup-cli-"));
    server = await NatsServer.start();
    nc = await server.connect();
  });
  after(async () => {
    for (const child of children) {
      const { proc } = child;
      if (proc.exitCode === null && proc.signalCode === null && proc.pid) {
        process.kill(proc.pid, "SIGKILL");
        await child.exited;
      }
    }
    await nc?.close();
    await server?.stop();
    rmSync(home, { recursive: true, force: true });
  });

  test("--server: it registers, answers $BACKUP.list, and exits 0 on SIGTERM", async () => {
    const child = run(["serve", "--server", server.url, "--bucket", "b1", "--log-level", "info"]);
    const ping = await waitForService(child);
    assert.equal(ping.name, "backup");
    const info = await nc.request(`$SRV.INFO.backup.${ping.id}`, "", { timeout: 5000 });
    assert.equal(info.json<{ metadata: Record<string, string> }>().metadata.bucket, "b1");

    const list = await request<{ backups: BackupManifest[] }>(nc, "$BACKUP.list");
    assert.equal(list.errorCode, null, list.raw);
    assert.deepEqual(list.body, { backups: [] });
    const streams = await nc.request("$JS.API.STREAM.NAMES", "", { timeout: 5000 });
    assert.ok(streams.string().includes('"OBJ_b1"'), "the bucket b1 was created");

    process.kill(child.proc.pid!, "SIGTERM");
    const { code, signal } = await exitWithin(child, 30_000);
    assert.equal(signal, null, child.output());
    assert.equal(code, 0, child.output());
    // It is gone from the service registry.
    await assert.rejects(nc.request("$SRV.PING.backup", "", { timeout: 1000 }));
  });

  test("NATS_URL is used when --server is absent", async () => {
    const child = run(["serve", "--bucket", "b2"], { NATS_URL: server.url, LOG_LEVEL: "warn" });
    const ping = await waitForService(child);
    const info = await nc.request(`$SRV.INFO.backup.${ping.id}`, "", { timeout: 5000 });
    assert.equal(info.json<{ metadata: Record<string, string> }>().metadata.bucket, "b2");
    const list = await request<{ backups: BackupManifest[] }>(nc, "$BACKUP.list");
    assert.deepEqual(list.body, { backups: [] });
    process.kill(child.proc.pid!, "SIGTERM");
    const { code } = await exitWithin(child, 30_000);
    assert.equal(code, 0, child.output());
  });

  test("--help prints the usage and exits 0", async () => {
    const child = run(["--help"]);
    const { code } = await exitWithin(child, 30_000);
    assert.equal(code, 0, child.output());
    assert.match(child.output(), /Usage: nats-backup serve \[options\]/);
    assert.match(child.output(), /--server URL/);
    assert.match(child.output(), /NATS_URL/);
  });

  test("an unknown command prints the usage and exits 2", async () => {
    const child = run(["frobnicate"]);
    const { code } = await exitWithin(child, 30_000);
    assert.equal(code, 2, child.output());
    assert.match(child.output(), /Usage: nats-backup serve/);
  });
});
