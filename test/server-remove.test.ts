/**
 * `$RESTORE.server-remove` (issue 15) on a 3-node cluster with accounts (APP with JetStream, SYS
 * the system account, which the service is given a connection in), node 3 killed while a stream
 * (R3) names it as a peer and the servers have no tags: a restore is refused (503) because the
 * meta group could place it on node 3; server-remove is refused without confirm, for an online
 * server, and without a system connection; removing node 3 makes the same restore land on a live node.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { JobRecord, RestoreResult } from "../src/mod.ts";
import type { ServerRemoveReply } from "../src/protocol/readiness.ts";
import { Subjects } from "../src/protocol/subjects.ts";
import { removeServer } from "../src/readiness/server-remove.ts";
import { BackupError } from "../src/protocol/errors.ts";
import { createStream, killNode3, placement, Messages, startDegradable, type Rig } from "./harness/degradable-cluster.ts";
import { request } from "./harness/service.ts";

const Accounts = `
accounts {
  SYS: { users: [{ user: sys, password: sys }] }
  APP: { jetstream: enabled, users: [{ user: app, password: app }] }
}
system_account: SYS
`;

describe("server-remove of a killed node", { timeout: 300_000 }, () => {
  let rig: Rig;
  before(async () => {
    rig = await startDegradable({ config: Accounts, auth: { user: "app", pass: "app" }, systemAuth: { user: "sys", pass: "sys" } });
    await createStream(rig.nc, { name: "ALL3", subjects: ["all3"], num_replicas: 3 });
    await killNode3(rig, true);
  });
  after(async () => rig?.stop());

  test("refused without confirm, for an online server, and without a system connection; nothing changes", async () => {
    const noConfirm = await request(rig.nc, Subjects.serverRemove, { server: "C1-n3" });
    assert.equal(noConfirm.errorCode, 400, noConfirm.raw);
    const online = await request(rig.nc, Subjects.serverRemove, { server: "C1-n2", confirm: true });
    assert.equal(online.errorCode, 409, online.raw);
    assert.match(online.raw, /C1-n2 is online/);
    await assert.rejects(removeServer(undefined, { server: "C1-n3", confirm: true }), (err: BackupError) => err.code === 503 && /system-account connection/.test(err.description));
    // Still refused: the meta group still has node 3.
    const restore = await request<JobRecord>(rig.nc, Subjects.restoreStream("A1"), { wait: true }, 120_000);
    assert.equal(restore.errorCode, 503, restore.raw);
    assert.match(restore.raw, /C1-n3/);
  });

  test("node 3 removed: the restore lands on a live node", async () => {
    const removed = await request<ServerRemoveReply>(rig.nc, Subjects.serverRemove, { server: "C1-n3", confirm: true }, 30_000);
    assert.equal(removed.errorCode, null, removed.raw);
    assert.equal(removed.body.removed, true);
    assert.deepEqual(removed.body.online, ["C1-n1", "C1-n2"]);
    const reply = await request<JobRecord>(rig.nc, Subjects.restoreStream("A1"), { wait: true }, 120_000);
    assert.equal(reply.body.state, "completed", reply.raw);
    assert.equal((reply.body.result as RestoreResult).messages, Messages);
    const placed = await placement(rig.nc, "A1");
    assert.equal(placed.messages, Messages);
    assert.ok(["C1-n1", "C1-n2"].includes(placed.peers[0]!), JSON.stringify(placed));
  });
});
