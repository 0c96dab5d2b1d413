/**
 * `nats-backup serve` (bin/nats-backup.js) as a child process, for tests of the command itself:
 * HOME in a folder of the test's (for nats contexts) and none of the test's NATS_* settings.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import type { NatsConnection } from "@nats-io/nats-core";
import { waitUntil } from "./inspect.ts";

const Bin = join(import.meta.dirname, "..", "..", "bin", "nats-backup.js");

export interface RunningServe {
  proc: ChildProcess;
  /** Its stdout and stderr so far. */
  output(): string;
  /** Whether the service answers `$SRV.PING.backup` on `nc`. */
  ping(): Promise<boolean>;
}

/**
 * Runs `node [nodeArgs] bin/nats-backup.js serve [args]` until the service answers PING on `nc`,
 * then `check`, then stops it with SIGTERM and asserts that it exits 0.
 */
export async function withServe(
  opts: { nc: NatsConnection; home: string; args: string[]; nodeArgs?: string[] },
  check: (serve: RunningServe) => Promise<void>,
): Promise<void> {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("NATS_") && k !== "LOG_LEVEL"));
  const proc = spawn(process.execPath, [...(opts.nodeArgs ?? []), Bin, "serve", ...opts.args], {
    env: { ...env, HOME: opts.home, XDG_CONFIG_HOME: opts.home },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  proc.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  proc.stderr!.on("data", (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => proc.once("exit", (code) => resolve(code)));
  const serve: RunningServe = {
    proc,
    output: () => out,
    ping: async () => (await opts.nc.request("$SRV.PING.backup", "", { timeout: 1000 }).catch(() => null)) !== null,
  };
  try {
    await waitUntil("the service to answer PING", serve.ping, 60_000, 200);
    await check(serve);
  } finally {
    proc.kill("SIGTERM");
    assert.equal(await exited, 0, out.slice(-2000));
  }
}
