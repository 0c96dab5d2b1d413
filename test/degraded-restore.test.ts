/**
 * Restoring into a 3-node cluster whose node 3 was killed (issue 15). Node 3 has the most
 * storage, so a server that has not noticed it is dead would place new streams there. The
 * service and two streams (A1 R1, A2 R2, backed up, then deleted) are placed while node 3 is
 * away (shut down cleanly), so that nothing of theirs is on it; node 3 comes back, then is killed.
 * - Tagged servers, node 3 known (a replica of an R3 stream): R1 and R2 restores land on live nodes; a
 *   placement that only fits node 3 is refused with a 503 and nothing is created.
 * - No tags, node 3 known: refused with a 503 that recommends $RESTORE.server-remove (2.9.10 and
 *   2.15.3 alike place on a dead node the server has not noticed).
 * - No tags, node 3 unknown to the service (it holds no stream): the restore is sent at once,
 *   the server places it on node 3 and never answers (2.9.10 always; 2.15.3 only in the moment
 *   after the kill, else on a live node), and the job fails with no stream left behind.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { JobRecord, RestoreResult } from "../src/mod.ts";
import { Subjects } from "../src/protocol/subjects.ts";
import { createStream, killNode3, listed, Messages, placement, startDegradable, type Rig } from "./harness/degradable-cluster.ts";
import { serverVersion } from "./harness/binaries.ts";
import { request } from "./harness/service.ts";

describe("restore into a cluster with a killed node, servers tagged", { timeout: 300_000 }, () => {
  let rig: Rig;
  before(async () => {
    rig = await startDegradable({ tags: (i) => [`node:${i + 1}`, i < 2 ? "az:a" : "az:b"] });
    // Node 3 holds a replica, so the service sees it is gone.
    await createStream(rig.nc, { name: "ALL3", subjects: ["all3"], num_replicas: 3 });
    await killNode3(rig, true);
  });
  after(async () => rig?.stop());

  test("a placement that fits only the dead node is refused with a 503, and nothing is created", async () => {
    const reply = await request<JobRecord>(rig.nc, Subjects.restoreStream("A1"), { wait: true, placement: { tags: ["node:3"] } }, 60_000);
    assert.equal(reply.errorCode, 503, reply.raw);
    assert.match(reply.raw, /fits 0 live servers.*offline: C1-n3/);
    assert.ok(!(await listed(rig.nc)).includes("A1"));
  });

  test("an R1 restore lands on a live node with every message", async () => {
    const reply = await request<JobRecord>(rig.nc, Subjects.restoreStream("A1"), { wait: true }, 120_000);
    assert.equal(reply.body.state, "completed", reply.raw);
    const result = reply.body.result as RestoreResult;
    assert.equal(result.messages, Messages);
    const placed = await placement(rig.nc, "A1");
    assert.equal(placed.messages, Messages);
    assert.equal(placed.peers.length, 1);
    assert.ok(["C1-n1", "C1-n2"].includes(placed.peers[0]!), JSON.stringify(placed));
    assert.match(JSON.stringify(result.warnings), /placed by tags/);
  });

  test("an R2 restore lands on the two live nodes", async () => {
    const reply = await request<JobRecord>(rig.nc, Subjects.restoreStream("A2"), { wait: true }, 120_000);
    assert.equal(reply.body.state, "completed", reply.raw);
    assert.equal((reply.body.result as RestoreResult).messages, Messages);
    const placed = await placement(rig.nc, "A2");
    assert.deepEqual(placed.peers, ["C1-n1", "C1-n2"]);
    assert.equal(placed.messages, Messages);
    assert.match(JSON.stringify((reply.body.result as RestoreResult).warnings), /placed by tags az:a/);
  });
});

describe("restore into a cluster with a killed node, no tags, the node known", { timeout: 300_000 }, () => {
  let rig: Rig;
  before(async () => {
    rig = await startDegradable();
    // An R3 stream names node 3 as a peer.
    await createStream(rig.nc, { name: "ALL3", subjects: ["all3"], num_replicas: 3 });
    await killNode3(rig, true);
  });
  after(async () => rig?.stop());

  test("refused with a 503 that names the dead server and recommends removing it; nothing is created", async () => {
    const reply = await request<JobRecord>(rig.nc, Subjects.restoreStream("A1"), { wait: true }, 120_000);
    assert.equal(reply.errorCode, 503, reply.raw);
    assert.match(reply.raw, /C1-n3/);
    assert.match(reply.raw, /\$RESTORE\.server-remove/);
    assert.ok(!(await listed(rig.nc)).includes("A1"));
  });
});

describe("a restore the server leaves unanswered", { timeout: 300_000 }, () => {
  let rig: Rig;
  before(async () => {
    rig = await startDegradable();
    // Node 3 holds nothing: the service cannot tell it is gone.
    await killNode3(rig, false);
  });
  after(async () => rig?.stop());

  test("placed on the killed node, the job fails, says so, and leaves no stream; placed on a live one, it restores", async () => {
    const started = Date.now();
    const reply = await request<JobRecord>(rig.nc, Subjects.restoreStream("A1"), { wait: true }, 120_000);
    // Where the server places it is its choice: 2.9.10 to 2.14.10 chose the killed node (the one
    // with the most storage) in every run here but one (2.14.10, CI at 2e611b3); 2.15.3 only in the
    // moment after the kill, as this restore is. Either outcome is checked whole.
    if (reply.errorCode !== null) {
      assert.equal(reply.errorCode, 503, reply.raw);
      assert.match(reply.raw, /did not answer the restore request within 10 s/);
      assert.match(reply.raw, /was deleted/);
      assert.ok(!(await listed(rig.nc)).includes("A1"), "no stream A1 left");
      console.log(`unanswered restore ended in ${Date.now() - started} ms: ${reply.raw}`);
    } else {
      console.log(`the server placed the restore on a live node (${serverVersion().text})`);
      assert.equal(reply.body.state, "completed", reply.raw);
      const placed = await placement(rig.nc, "A1");
      assert.equal(placed.messages, Messages);
      assert.ok(["C1-n1", "C1-n2"].includes(placed.peers[0]!), JSON.stringify(placed));
    }
  });
});
