/**
 * Disaster-recovery readiness (issue 15) on a 4-node cluster: an R3 stream on nodes 1-3 and an
 * R1 stream on node 3 (placement tag node:3), both backed up through the service; node 3 stopped
 * and its store deleted. The report calls the R3 stream degraded (quorum holds, node 4 can take
 * a replica, the action names the peer to remove) and the R1 stream lost (the action names its
 * backup). Each peer-remove refusal leaves the cluster as it was; removing node 3 from the R3
 * stream places a replica on node 4 that holds the same messages. Plus the verdict rules alone.
 */
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { after, before, describe, test } from "node:test";
import type { NatsConnection } from "@nats-io/nats-core";
import type { BackupService, JobRecord, StreamManifest } from "../src/mod.ts";
import { assessStream, type StreamListing } from "../src/readiness/assess.ts";
import type { ClusterServers } from "../src/readiness/cluster-servers.ts";
import { Verdict, type PeerRemoveReply, type ReportReply, type StreamReadiness } from "../src/protocol/readiness.ts";
import { Subjects } from "../src/protocol/subjects.ts";
import { jsApi, waitUntil } from "./harness/inspect.ts";
import { NatsCluster, type NatsServer } from "./harness/nats-server.ts";
import { request, startService } from "./harness/service.ts";
import { createStream, firstMessage } from "./harness/degradable-cluster.ts";

const R3 = "ORDERS";
const R1 = "AUDIT";

interface Listed {
  config: { name: string };
  cluster?: { leader?: string; replicas?: { name: string; offline?: boolean }[] };
}

/** Each stream's leader and peer names, as STREAM.LIST says (it describes leaderless streams too). */
async function peerSets(nc: NatsConnection): Promise<Record<string, { leader: string | null; peers: string[] }>> {
  const list = await jsApi<{ streams: Listed[] }>(nc, "STREAM.LIST", {});
  assert.equal(list.error, undefined, JSON.stringify(list.error));
  const out: Record<string, { leader: string | null; peers: string[] }> = {};
  for (const s of list.streams) {
    // Only the test's streams: the service's buckets may still be electing leaders after node 3 went.
    if (s.config.name !== R3 && s.config.name !== R1) continue;
    const names = [s.cluster?.leader, ...(s.cluster?.replicas ?? []).map((r) => r.name)].filter((n): n is string => !!n);
    out[s.config.name] = { leader: s.cluster?.leader ?? null, peers: names.sort() };
  }
  return out;
}

/** Every message by direct get, answered by the replica on the server `nc` is connected to (a local queue subscriber wins). */
async function readDirect(nc: NatsConnection, stream: string, lastSeq: number): Promise<{ seq: number; subject: string; data: string }[]> {
  const out: { seq: number; subject: string; data: string }[] = [];
  for (let seq = 1; seq <= lastSeq; seq++) {
    const m = await nc.request(`$JS.API.DIRECT.GET.${stream}`, JSON.stringify({ seq }), { timeout: 5000 });
    assert.ok(!m.headers?.code || m.headers.code < 300, `direct get ${stream} ${seq}: ${m.headers?.code} ${m.headers?.description}`);
    out.push({ seq: Number(m.headers?.get("Nats-Sequence")), subject: m.headers?.get("Nats-Subject") ?? "", data: m.string() });
  }
  return out;
}

const byName = (report: ReportReply, stream: string): StreamReadiness => {
  const s = report.streams.find((x) => x.stream === stream);
  assert.ok(s, `${stream} in the report: ${JSON.stringify(report.streams.map((x) => x.stream))}`);
  return s;
};

describe("readiness on a 4-node cluster that loses node 3", { timeout: 600_000 }, () => {
  let cluster: NatsCluster;
  let n: NatsServer[];
  let nc: NatsConnection;
  let serviceNc: NatsConnection;
  let svc: BackupService;
  let r1Backup: StreamManifest;
  let r3Messages: { seq: number; subject: string; data: string }[];

  before(async () => {
    cluster = await NatsCluster.start(4, { tags: (i) => [`node:${i + 1}`] });
    n = cluster.servers;
    // Node 4 is away while the streams are placed, so the R3 stream lands on nodes 1-3; it comes back as the spare.
    nc = await n[0]!.connect({ ignoreClusterUpdates: true, noRandomize: true });
    await n[3]!.halt();
    await createStream(nc, { name: R3, subjects: ["orders.>"], num_replicas: 3, allow_direct: true });
    await createStream(nc, { name: R1, subjects: ["audit.>"], num_replicas: 1, placement: { tags: ["node:3"] } });
    await firstMessage(nc, "orders.0", "order 0");
    await firstMessage(nc, "audit.0", "audit 0");
    for (let i = 1; i < 200; i++) {
      await nc.request(`orders.${i % 5}`, `order ${i}`);
      if (i < 50) await nc.request(`audit.${i % 3}`, `audit ${i}`);
    }
    await n[3]!.restart();
    await cluster.waitForMetaLeader();
    const sets = await peerSets(nc);
    assert.deepEqual(sets[R3]?.peers, [n[0]!.name, n[1]!.name, n[2]!.name]);
    assert.deepEqual(sets[R1]?.peers, [n[2]!.name]);

    serviceNc = await n[0]!.connect({ ignoreClusterUpdates: true, noRandomize: true });
    svc = await startService(serviceNc, { replicas: 3 });
    for (const stream of [R3, R1]) {
      const reply = await request<JobRecord>(nc, Subjects.backupStream(stream), { wait: true }, 120_000);
      assert.equal(reply.body.state, "completed", reply.raw);
      if (stream === R1) r1Backup = reply.body.result as StreamManifest;
    }
    r3Messages = await readDirect(nc, R3, 200);
    assert.equal(r3Messages.length, 200);
  });

  after(async () => {
    await svc?.stop();
    await serviceNc?.close();
    await nc?.close();
    await cluster?.stop();
  });

  test("while every node is up: the R3 stream is protected with node 4 as its spare, the R1 stream a single copy", async () => {
    const reply = await request<ReportReply>(nc, Subjects.report, {});
    assert.equal(reply.errorCode, null, reply.raw);
    const report = reply.body;
    assert.equal(report.servers.known, true, JSON.stringify(report.servers));
    assert.deepEqual(report.servers.names.map((s) => s.name), n.map((s) => s.name));
    const r3 = byName(report, R3);
    assert.equal(r3.verdict, Verdict.protected, JSON.stringify(r3));
    assert.equal(r3.replicas, 3);
    assert.equal(r3.cluster, "C1");
    assert.deepEqual(r3.quorum, { needed: 2, healthy: 3, holds: true });
    assert.equal(r3.recovery.automatic, true, r3.recovery.reason);
    assert.deepEqual(r3.recovery.spare_nodes, [n[3]!.name]);
    assert.equal(r3.backup?.scope, "stream");
    assert.equal(r3.backup?.recent, true);
    const r1 = byName(report, R1);
    assert.equal(r1.verdict, Verdict.singleCopy, JSON.stringify(r1));
    assert.equal(r1.recovery.automatic, false);
    assert.equal(r1.backup?.id, r1Backup.id);
    // The service's own bucket is named as such.
    const bucket = byName(report, "OBJ_backups");
    assert.equal(bucket.kind, "object_store");
    assert.equal(bucket.service_bucket, "backup bucket backups");
    assert.equal(bucket.backup, null);
    // A recent of 0: no backup is recent, the R3 stream is replicated without one.
    const strict = await request<ReportReply>(nc, Subjects.report, { streams: [R3], recent: 0 });
    assert.deepEqual(strict.body.streams.map((s) => [s.stream, s.verdict]), [[R3, Verdict.replicatedNoRecentBackup]]);
    const missing = await request(nc, Subjects.report, { streams: [R3, "NOPE"] });
    assert.equal(missing.errorCode, 404, missing.raw);
  });

  describe("node 3 stopped and its store deleted", () => {
    let report: ReportReply;
    let asBefore: Awaited<ReturnType<typeof peerSets>>;

    before(async () => {
      await n[2]!.halt();
      rmSync(n[2]!.storeDir, { recursive: true, force: true });
      report = await waitUntil(
        "the report to see node 3 offline",
        async () => {
          const r = (await request<ReportReply>(nc, Subjects.report, {})).body;
          return r.streams?.find((s) => s.stream === R3)?.peers.some((p) => p.name === n[2]!.name && p.offline) ? r : false;
        },
        30_000,
        250,
      );
      asBefore = await peerSets(nc);
    });

    test("the report: R3 degraded (quorum holds, remove node 3 to re-replicate onto node 4), R1 lost (restore from its backup)", async () => {
      const r3 = byName(report, R3);
      assert.equal(r3.verdict, Verdict.degraded, JSON.stringify(r3));
      assert.deepEqual(r3.quorum, { needed: 2, healthy: 2, holds: true });
      assert.deepEqual(r3.recovery.spare_nodes, [n[3]!.name]);
      assert.match(r3.action, new RegExp(`remove peer ${n[2]!.name}`));
      assert.match(r3.action, new RegExp(`\\$RESTORE\\.peer-remove\\.${R3}`));
      assert.ok(r3.peers.find((p) => p.name === n[2]!.name)?.offline);

      const r1 = byName(report, R1);
      assert.equal(r1.verdict, Verdict.lost, JSON.stringify(r1));
      assert.equal(r1.quorum.holds, false);
      assert.equal(r1.backup?.id, r1Backup.id);
      assert.match(r1.action, new RegExp(`restore from backup ${r1Backup.id}`));
      assert.match(r1.action, /"replace_lost":true/);
      assert.match(r1.action, new RegExp(`\\$RESTORE\\.server-remove \\{"server":"${n[2]!.name}","confirm":true\\}`));
      assert.deepEqual(report.servers.names.map((s) => s.name), [n[0]!.name, n[1]!.name, n[3]!.name]);

      // Worst first, and the counts add up.
      const order = report.streams.map((s) => s.verdict);
      assert.equal(order[0], Verdict.lost);
      assert.equal(Object.values(report.counts).reduce((a, b) => a + b, 0), report.streams.length);
      assert.ok(report.counts.lost >= 1 && report.counts.degraded >= 1, JSON.stringify(report.counts));
      assert.ok(report.single_copy_without_recent_backup >= 0);

      // The readiness metric: the last whole report's counts, in the service's stats.
      const stats = (await nc.request("$SRV.STATS.backup", "", { timeout: 5000 })).json<{ endpoints: { name: string; data?: { taken: string; counts: unknown } }[] }>();
      const data = stats.endpoints.find((e) => e.name === "report")?.data;
      assert.ok(data, JSON.stringify(stats.endpoints.map((e) => e.name)));
      assert.equal(typeof data.taken, "string");
      const latest = (await request<ReportReply>(nc, Subjects.report, {})).body;
      const again = (await nc.request("$SRV.STATS.backup", "", { timeout: 5000 })).json<{ endpoints: { name: string; data?: { taken: string; counts: unknown } }[] }>();
      assert.deepEqual(again.endpoints.find((e) => e.name === "report")?.data?.counts, latest.counts);
    });

    test("peer-remove without confirm is a 400 and changes nothing", async () => {
      const reply = await request(nc, Subjects.peerRemove(R3), { peer: n[2]!.name });
      assert.equal(reply.errorCode, 400, reply.raw);
      assert.match(reply.errorHeader ?? "", /confirm/);
      assert.deepEqual(await peerSets(nc), asBefore);
    });

    test("peer-remove of an online, current peer is a 409 and changes nothing", async () => {
      const leader = asBefore[R3]!.leader!;
      const follower = asBefore[R3]!.peers.find((p) => p !== leader && p !== n[2]!.name)!;
      for (const peer of [leader, follower]) {
        const reply = await request(nc, Subjects.peerRemove(R3), { peer, confirm: true });
        assert.equal(reply.errorCode, 409, reply.raw);
        assert.match(reply.errorHeader ?? "", /online and current/);
      }
      assert.deepEqual(await peerSets(nc), asBefore);
    });

    test("peer-remove that would break the quorum (the R1 stream's only replica) is a 409 and changes nothing", async () => {
      const reply = await request(nc, Subjects.peerRemove(R1), { peer: n[2]!.name, confirm: true });
      assert.equal(reply.errorCode, 409, reply.raw);
      assert.match(reply.errorHeader ?? "", /would break the quorum/);
      assert.deepEqual(await peerSets(nc), asBefore);
    });

    test("peer-remove of a server that is no peer is a 404 and changes nothing", async () => {
      const reply = await request(nc, Subjects.peerRemove(R3), { peer: n[3]!.name, confirm: true });
      assert.equal(reply.errorCode, 404, reply.raw);
      assert.deepEqual(await peerSets(nc), asBefore);
    });

    test("peer-remove of node 3 from the R3 stream places a current replica on node 4 holding the same messages", async () => {
      const reply = await request<PeerRemoveReply>(nc, Subjects.peerRemove(R3), { peer: n[2]!.name, confirm: true }, 90_000);
      assert.equal(reply.errorCode, null, reply.raw);
      assert.equal(reply.body.removed, n[2]!.name);
      assert.deepEqual(reply.body.added, [n[3]!.name]);
      assert.deepEqual(reply.body.peers.map((p) => p.name).sort(), [n[0]!.name, n[1]!.name, n[3]!.name]);
      assert.ok(reply.body.peers.every((p) => !p.offline && (p.leader || p.current)), JSON.stringify(reply.body.peers));

      // Read from node 4's own replica: a direct get from a client on node 4 is answered there.
      const on4 = await n[3]!.connect({ ignoreClusterUpdates: true, noRandomize: true });
      try {
        assert.deepEqual(await readDirect(on4, R3, 200), r3Messages);
      } finally {
        await on4.close();
      }
      // The other streams were left as they were.
      const now = await peerSets(nc);
      assert.deepEqual(now[R1], asBefore[R1]);

      const after = (await request<ReportReply>(nc, Subjects.report, { streams: [R3] })).body;
      const r3 = byName(after, R3);
      assert.equal(r3.verdict, Verdict.protected, JSON.stringify(r3));
      assert.equal(r3.recovery.automatic, false, "no spare node is left");
      assert.deepEqual(r3.recovery.spare_nodes, []);
    });
  });
});

describe("the verdict rules", () => {
  const servers: ClusterServers = {
    known: true,
    servers: ["a", "b", "c", "d"].map((name) => ({ name, cluster: "C", tags: [], jetstream: true })),
  };
  const now = new Date("2026-01-02T00:00:00Z");
  const fresh = { id: "01JFRESH000000000000000000", scope: "stream" as const, completed: "2026-01-01T23:00:00Z" };
  const stale = { id: "01JSTALE000000000000000000", scope: "stream" as const, completed: "2025-12-01T00:00:00Z" };
  const listing = (replicas: number, offline: string[] = [], leader: string | null = "a"): StreamListing => {
    const names = ["a", "b", "c", "d", "e"].slice(0, replicas);
    return {
      config: { name: "S", storage: "file", num_replicas: replicas },
      cluster: {
        name: "C",
        ...(leader ? { leader } : {}),
        replicas: names.filter((x) => x !== leader).map((x) => ({ name: x, current: !offline.includes(x), ...(offline.includes(x) ? { offline: true } : {}) })),
      },
    };
  };
  const assess = (l: StreamListing, backup = fresh, s: ClusterServers = servers) => assessStream({ listing: l, servers: s, backup, now, recentMs: 24 * 3600_000 });

  test("R3 with a recent backup and a spare: protected, automatic recovery", () => {
    const r = assess(listing(3));
    assert.equal(r.verdict, Verdict.protected);
    assert.equal(r.recovery.automatic, true);
    assert.deepEqual(r.recovery.spare_nodes, ["d"]);
    assert.equal(r.backup?.age_seconds, 3600);
  });
  test("R3 with an old backup: replicated_no_recent_backup", () => {
    assert.equal(assess(listing(3), stale).verdict, Verdict.replicatedNoRecentBackup);
  });
  test("R1 and R2: single_copy, even with a recent backup", () => {
    assert.equal(assess(listing(1)).verdict, Verdict.singleCopy);
    assert.equal(assess(listing(2)).verdict, Verdict.singleCopy);
  });
  test("R3 with one peer offline: degraded, the action names it; R3 with two: lost", () => {
    const r = assess(listing(3, ["c"]));
    assert.equal(r.verdict, Verdict.degraded);
    assert.match(r.action, /remove peer c/);
    assert.equal(assess(listing(3, ["b", "c"])).verdict, Verdict.lost);
  });
  test("no leader: lost, restore from the backup", () => {
    const r = assess(listing(1, ["a"], null));
    assert.equal(r.verdict, Verdict.lost);
    assert.match(r.action, new RegExp(`restore from backup ${fresh.id}`));
  });
  test("servers unknown: automatic recovery unknown (null), said plainly", () => {
    const r = assess(listing(3), fresh, { known: false, servers: [], note: "no answer" });
    assert.equal(r.recovery.automatic, null);
    assert.match(r.recovery.reason, /could not be counted/);
  });
  test("not clustered: one copy", () => {
    const r = assessStream({ listing: { config: { name: "S", num_replicas: 1 } }, servers, backup: undefined, now, recentMs: 1 });
    assert.equal(r.verdict, Verdict.singleCopy);
    assert.deepEqual(r.peers, []);
    assert.equal(r.cluster, null);
    // 2.15.3 on a server without a cluster names itself leader, with no cluster name and no replicas.
    const alone = assessStream({ listing: { config: { name: "S", num_replicas: 1 }, cluster: { leader: "s1" } }, servers, backup: undefined, now, recentMs: 1 });
    assert.equal(alone.verdict, Verdict.singleCopy);
    assert.deepEqual([alone.peers, alone.leader, alone.quorum.holds], [[], null, true]);
  });
});
