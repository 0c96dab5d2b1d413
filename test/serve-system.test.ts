/**
 * `nats-backup serve --system-context NAME` / `--system-creds FILE`: the service gets a connection
 * as a system-account user, which `$RESTORE.server-remove` needs; without one that endpoint is a
 * 503. One server with accounts (APP with JetStream, SYS the system account): asked to remove the
 * server itself, the service with a system connection can tell it is online (409); the one
 * without says it has no system connection (503).
 */
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { NatsConnection } from "@nats-io/nats-core";
import { Subjects } from "../src/protocol/subjects.ts";
import { NatsServer } from "./harness/nats-server.ts";
import { request } from "./harness/service.ts";
import { withServe } from "./harness/serve-bin.ts";

const Accounts = `
accounts {
  SYS: { users: [{ user: sys, password: sys }] }
  APP: { jetstream: enabled, users: [{ user: app, password: app }] }
}
system_account: SYS
`;

describe("serve with a system-account connection", () => {
  let server: NatsServer;
  let nc: NatsConnection;
  let home: string;

  before(async () => {
    server = await NatsServer.start({ config: Accounts });
    nc = await server.connect({ user: "app", pass: "app" });
    home = mkdtempSync(join(tmpdir(), "nats-backup-serve-system-"));
    mkdirSync(join(home, "nats", "context"), { recursive: true });
    writeFileSync(join(home, "nats", "context", "sys.json"), JSON.stringify({ user: "sys", password: "sys" }));
  });
  after(async () => {
    await nc?.close();
    await server?.stop();
    rmSync(home, { recursive: true, force: true });
  });

  const serve = (args: string[], check: () => Promise<void>) =>
    withServe({ nc, home, args: ["--server", server.url, "--user", "app", "--password", "app", ...args] }, check);

  test("--system-context: server-remove can ask the system account (the server is online: 409)", async () => {
    await serve(["--system-context", "sys"], async () => {
      const reply = await request(nc, Subjects.serverRemove, { server: server.name, confirm: true });
      assert.equal(reply.errorCode, 409, reply.raw);
      assert.match(reply.raw, /is online/);
    });
  });

  test("without one, server-remove says it has no system-account connection (503)", async () => {
    await serve([], async () => {
      const reply = await request(nc, Subjects.serverRemove, { server: server.name, confirm: true });
      assert.equal(reply.errorCode, 503, reply.raw);
      assert.match(reply.raw, /system-account connection/);
    });
  });
});
