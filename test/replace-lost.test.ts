/**
 * `replace_lost` (issue 15) on a 4-node cluster: an R1 stream on node 3 (placement tag node:3),
 * backed up; the service's buckets placed while node 3 was away, so none of their replicas is on
 * it. While node 3 runs, replace_lost is refused and the stream is left as it was; once node 3 is
 * stopped and its store deleted, a plain restore is refused (the name is held) and replace_lost
 * removes the lost stream and brings it back from its backup on a live node, every message equal.
 */
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { after, before, describe, test } from "node:test";
import type { NatsConnection } from "@nats-io/nats-core";
import type { BackupService, JobRecord, RestoreResult, StreamManifest } from "../src/mod.ts";
import { Subjects } from "../src/protocol/subjects.ts";
import { jsApi, readSubject, waitUntil, type StoredRawMessage } from "./harness/inspect.ts";
import { NatsCluster, type NatsServer } from "./harness/nats-server.ts";
import { request, startService } from "./harness/service.ts";
import { createStream, firstMessage, waitForPlacement } from "./harness/degradable-cluster.ts";

const Lost = "AUDIT";

/** The stream as STREAM.LIST describes it (leaderless ones too): its leader and peers. */
async function listedPeers(nc: NatsConnection, stream: string): Promise<{ leader: string | null; peers: string[] } | null> {
  const list = await jsApi<{ streams: { config: { name: string }; cluster?: { leader?: string; replicas?: { name: string }[] } }[] | null }>(nc, "STREAM.LIST", {}, 15_000);
  const s = (list.streams ?? []).find((x) => x.config.name === stream);
  if (!s) return null;
  return { leader: s.cluster?.leader ?? null, peers: [s.cluster?.leader, ...(s.cluster?.replicas ?? []).map((r) => r.name)].filter((x): x is string => !!x).sort() };
}

const plain = (msgs: StoredRawMessage[]) => msgs.map((m) => ({ seq: m.seq, subject: m.subject, data: m.data.toString() }));

describe("replace_lost on a 4-node cluster that loses node 3", { timeout: 300_000 }, () => {
  let cluster: NatsCluster;
  let n: NatsServer[];
  let nc: NatsConnection;
  let serviceNc: NatsConnection;
  let svc: BackupService;
  let backup: StreamManifest;
  let saved: StoredRawMessage[];

  before(async () => {
    cluster = await NatsCluster.start(4, { tags: (i) => [`node:${i + 1}`] });
    n = cluster.servers;
    nc = await n[0]!.connect({ ignoreClusterUpdates: true, noRandomize: true });
    // The service's buckets go on nodes 1, 2 and 4.
    await n[2]!.halt();
    // Node 3 may have led the meta group: the service's buckets wait for a leader that places R3.
    await waitForPlacement(nc, 3);
    serviceNc = await n[0]!.connect({ ignoreClusterUpdates: true, noRandomize: true });
    svc = await startService(serviceNc, { replicas: 3 });
    await n[2]!.restart();
    await cluster.waitForMetaLeader();
    await createStream(nc, { name: Lost, subjects: ["audit.>"], num_replicas: 1, placement: { tags: ["node:3"] } });
    await firstMessage(nc, "audit.0", "audit 0");
    for (let i = 1; i < 50; i++) await nc.request(`audit.${i % 3}`, `audit ${i}`);
    assert.deepEqual((await listedPeers(nc, Lost))?.peers, [n[2]!.name]);
    const reply = await request<JobRecord>(nc, Subjects.backupStream(Lost), { wait: true }, 60_000);
    assert.equal(reply.body.state, "completed", reply.raw);
    backup = reply.body.result as StreamManifest;
    saved = await readSubject(nc, Lost, "audit.>");
    assert.equal(saved.length, 50);
  });

  after(async () => {
    await svc?.stop();
    await serviceNc?.close();
    await nc?.close();
    await cluster?.stop();
  });

  test("refused while its replica is online, and the stream is left as it was", async () => {
    const reply = await request<JobRecord>(nc, Subjects.restoreStream(Lost), { wait: true, replace_lost: true }, 60_000);
    assert.equal(reply.errorCode, 409, reply.raw);
    assert.match(reply.raw, /is not lost/);
    assert.deepEqual(plain(await readSubject(nc, Lost, "audit.>")), plain(saved));
  });

  test("node 3 stopped and its store deleted: a plain restore is refused, replace_lost brings the stream back on a live node", async () => {
    await n[2]!.halt();
    rmSync(n[2]!.storeDir, { recursive: true, force: true });
    // Until the list describes it leaderless, with node 3 as its peer (the server noticed node 3 is gone).
    await waitUntil("the stream listed without a leader", async () => {
      const l = await listedPeers(nc, Lost);
      return l !== null && l.leader === null && l.peers.includes(n[2]!.name);
    }, 30_000, 250);

    const refused = await request<JobRecord>(nc, Subjects.restoreStream(Lost), { wait: true }, 60_000);
    assert.equal(refused.errorCode, 409, refused.raw);
    assert.match(refused.raw, /already exist/);

    const reply = await request<JobRecord>(nc, Subjects.restoreStream(Lost), { wait: true, replace_lost: true }, 120_000);
    assert.equal(reply.body.state, "completed", reply.raw);
    const result = reply.body.result as RestoreResult;
    assert.equal(result.backup, backup.id);
    assert.equal(result.messages, 50);
    assert.match(JSON.stringify(result.warnings), /was removed before the restore/);
    const placed = await listedPeers(nc, Lost);
    assert.equal(placed?.peers.length, 1, JSON.stringify(placed));
    assert.notEqual(placed?.leader, n[2]!.name);
    assert.deepEqual(plain(await readSubject(nc, Lost, "audit.>")), plain(saved));
  });
});
