/**
 * `nats-backup serve` as a process: an error that escapes every handler (an unhandled rejection)
 * is logged and the service goes on serving, instead of the process dying with a stack trace
 * outside the JSON log.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { NatsConnection } from "@nats-io/nats-core";
import { waitUntil } from "./harness/inspect.ts";
import { NatsServer } from "./harness/nats-server.ts";
import { withServe } from "./harness/serve-bin.ts";

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
    await withServe({ nc, home, args: ["--server", server.url], nodeArgs: ["--import", Stray] }, async (serve) => {
      process.kill(serve.proc.pid!, "SIGUSR2");
      const line = await waitUntil(
        "the stray failure in the log",
        () => serve.output().split("\n").find((l) => l.includes("a stray failure the test caused")),
        10_000,
        20,
      );
      const logged = JSON.parse(line) as { level: number; msg: string; err?: { message?: string } };
      assert.equal(logged.level, 50, "logged at error");
      assert.equal(logged.msg, "an error escaped its handler");
      assert.equal(logged.err?.message, "a stray failure the test caused");
      assert.equal(serve.proc.exitCode, null, `the process is still running:\n${serve.output()}`);
      assert.ok(await serve.ping(), "the service still answers");
    });
  });
});
