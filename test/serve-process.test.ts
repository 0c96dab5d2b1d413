/**
 * `nats-backup serve` as a process: an error that escapes every handler (an unhandled rejection)
 * is logged and the service goes on serving, instead of the process dying with a stack trace
 * outside the JSON log.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { NatsConnection } from "@nats-io/nats-core";
import { waitUntil } from "./harness/inspect.ts";
import { NatsServer } from "./harness/nats-server.ts";

const Bin = join(import.meta.dirname, "..", "bin", "nats-backup.js");
const Stray = join(import.meta.dirname, "harness", "stray-rejection.mjs");

describe("nats-backup serve, when an error escapes its handler", () => {
  let server: NatsServer;
  let nc: NatsConnection;
  let home: string;

  before(async () => {
    server = await NatsServer.start();
    nc = await server.connect();
    home = mkdtempSync(join(tmpdir(), "nats-backup-serve-"));
  });
  after(async () => {
    await nc?.close();
    await server?.stop();
    rmSync(home, { recursive: true, force: true });
  });

  test("logs it as an error and keeps serving", async () => {
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("NATS_") && k !== "LOG_LEVEL"));
    const proc = spawn(process.execPath, ["--import", Stray, Bin, "serve", "--server", server.url], {
      env: { ...env, HOME: home, XDG_CONFIG_HOME: home },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    proc.stdout!.on("data", (d: Buffer) => (out += d.toString()));
    proc.stderr!.on("data", (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((resolve) => proc.once("exit", (code) => resolve(code)));
    try {
      const ping = async () => (await nc.request("$SRV.PING.backup", "", { timeout: 1000 }).catch(() => null)) !== null;
      await waitUntil("the service to answer PING", ping, 60_000, 200);
      process.kill(proc.pid!, "SIGUSR2");
      const line = await waitUntil(
        "the stray failure in the log",
        () => out.split("\n").find((l) => l.includes("a stray failure the test caused")),
        10_000,
        20,
      );
      const logged = JSON.parse(line) as { level: number; msg: string; err?: { message?: string } };
      assert.equal(logged.level, 50, "logged at error");
      assert.equal(logged.msg, "an error escaped its handler");
      assert.equal(logged.err?.message, "a stray failure the test caused");
      assert.equal(proc.exitCode, null, `the process is still running:\n${out}`);
      assert.ok(await ping(), "the service still answers");
    } finally {
      proc.kill("SIGTERM");
      assert.equal(await exited, 0, out.slice(-2000));
    }
  });
});
