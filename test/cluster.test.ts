/**
 * The service against a 3-node JetStream cluster: an R3 stream backed up through a node that is
 * not its leader, restored as R3 (every replica current, messages and consumers as they were),
 * restored with placement overrides, and restored onto a standalone server (lowered to R1).
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { NatsConnection } from "@nats-io/nats-core";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Objm } from "@nats-io/obj";
import type { StreamManifest, BackupService, JobRecord, RestoreResult } from "../src/mod.ts";
import { Catalogue, objectNames } from "../src/catalogue/catalogue.ts";
import { notWholeBecause, type GroupInfo } from "../src/jetstream/raft-groups.ts";
import { NatsCluster, NatsServer } from "./harness/nats-server.ts";
import { consumerStates, makeStream, readStream, type ConsumerSnapshot, type StoredMessage } from "./harness/fixtures.ts";
import { jsApi, waitUntil } from "./harness/inspect.ts";
import { request, startService, type Reply } from "./harness/service.ts";

const Stream = "ORDERS";
const Messages = 2000;
/** Nodes 0 and 1 are "ssd", node 2 is "hdd"; each has its own "az:<i>". */
const tags = (i: number) => [`az:${i}`, i < 2 ? "ssd" : "hdd"];

interface ReplicaInfo {
  name: string;
  current: boolean;
  active?: number;
  lag?: number;
  offline?: boolean;
}
interface ClusterInfo {
  name?: string;
  /** From 2.10. */
  raft_group?: string;
  leader?: string;
  replicas?: ReplicaInfo[];
}
interface StreamInfo {
  config: { name: string; num_replicas: number; placement?: { cluster?: string; tags?: string[] } };
  state: { messages: number; first_seq: number; last_seq: number; consumer_count: number };
  cluster?: ClusterInfo;
}
interface ConsumerInfo {
  name: string;
  cluster?: ClusterInfo;
}

async function streamInfo(nc: NatsConnection, stream: string): Promise<StreamInfo> {
  const info = await jsApi<StreamInfo>(nc, `STREAM.INFO.${stream}`);
  if (info.error) throw new Error(`STREAM.INFO.${stream}: ${JSON.stringify(info.error)}`);
  return info;
}

/** A cluster group with a leader and `replicas - 1` followers, every one current. */
function groupReady(cluster: ClusterInfo | undefined, replicas: number): boolean {
  if (!cluster?.leader) return false;
  const followers = cluster.replicas ?? [];
  return followers.length === replicas - 1 && followers.every((r) => r.current && !r.offline);
}

/** A cluster group with a leader and `replicas - 1` followers, none offline: formed, not necessarily caught up. */
function groupFormed(cluster: ClusterInfo | undefined, replicas: number): boolean {
  const followers = cluster?.replicas ?? [];
  return Boolean(cluster?.leader) && followers.length === replicas - 1 && followers.every((r) => !r.offline);
}

/** Waits (bounded) until the stream and each of its consumers have a leader and every replica is current. */
async function waitForReplicasCurrent(
  nc: NatsConnection,
  stream: string,
  replicas: number,
  servers: NatsServer[] = [],
  timeoutMs = 60_000,
): Promise<StreamInfo> {
  let last: unknown;
  try {
    return await waitUntil(
      `${stream}: a leader and ${replicas - 1} current replicas for the stream and its consumers`,
      async () => {
        try {
          const info = await jsApi<StreamInfo>(nc, `STREAM.INFO.${stream}`);
          last = info.cluster ?? info.error;
          if (info.error || !groupReady(info.cluster, replicas)) return false;
          const names = await jsApi<{ consumers: string[] | null }>(nc, `CONSUMER.NAMES.${stream}`, {});
          for (const name of names.consumers ?? []) {
            const ci = await jsApi<ConsumerInfo>(nc, `CONSUMER.INFO.${stream}.${name}`);
            last = { consumer: name, cluster: ci.cluster ?? ci.error };
            if (ci.error || !groupReady(ci.cluster, replicas)) return false;
          }
          return info;
        } catch (err) {
          // An API request unanswered while the group settles (a consumer being remapped after the
          // restore, CI run at 10be63f on 2.14.10): asked again, within the same bound.
          last = { unanswered: (err as Error).message, before: last };
          return false;
        }
      },
      timeoutMs,
      250,
    );
  } catch (err) {
    // Cluster trouble is in the servers' logs: hand back their latest warnings and errors.
    const logs = servers.map((s) => {
      const lines = s.log.split("\n").filter((l) => /\[(ERR|WRN)\]/.test(l)).slice(-10);
      return `--- ${s.name}:\n${lines.join("\n")}`;
    });
    throw new Error(`${(err as Error).message}; last seen: ${JSON.stringify(last)}\n${logs.join("\n")}`);
  }
}

async function deleteStream(nc: NatsConnection, stream: string): Promise<void> {
  const jsm = await jetstreamManager(nc);
  assert.equal(await jsm.streams.delete(stream), true);
  // While its group goes away a STREAM.INFO can go unanswered (2.10.27): not gone yet.
  await waitUntil(`${stream} to be gone`, async () => {
    const info = await jsApi(nc, `STREAM.INFO.${stream}`).catch(() => undefined);
    return info?.error?.err_code === 10059;
  }, 30_000);
}

/**
 * Consumer state as the cluster reports it right after a restore can lag (a consumer list
 * answered before every consumer leader replied): read it until it equals `expected`, bounded,
 * then assert on the last read. Returns what the first read differed in, for the log.
 */
async function consumersConverge(
  nc: NatsConnection,
  stream: string,
  expected: ConsumerSnapshot[],
  timeoutMs = 30_000,
): Promise<string | null> {
  let first: ConsumerSnapshot[] | null = null;
  let last: ConsumerSnapshot[] = [];
  const same = (a: unknown) => {
    try {
      assert.deepEqual(a, expected);
      return true;
    } catch {
      return false;
    }
  };
  await waitUntil(
    `${stream}'s consumers to report their state`,
    async () => {
      last = await consumerStates(nc, stream);
      first ??= last;
      return same(last);
    },
    timeoutMs,
    250,
  ).catch(() => undefined);
  assert.deepEqual(last, expected);
  return first && !same(first) ? `first read of ${stream}'s consumers differed: ${JSON.stringify(first)}` : null;
}

/**
 * The consumers' state a restore brings back. A 2.15 server snapshotting a clustered stream takes
 * each consumer's state from its info, without the sparse pending set, and rolls a consumer with
 * acks pending back to its ack floor, so those messages are delivered again (stream_backup.go,
 * `consumerStateFromInfo`): every delivery above the floor becomes pending again.
 */
function restoredConsumers(original: ConsumerSnapshot[], backup: StreamManifest): ConsumerSnapshot[] {
  if (backup.archive_format !== "v2" || !backup.server.cluster) return original;
  return original.map((c) =>
    c.num_ack_pending === 0
      ? c
      : {
          ...c,
          delivered: { ...c.ack_floor },
          num_ack_pending: 0,
          num_pending: c.num_pending + (c.delivered.consumer_seq - c.ack_floor.consumer_seq),
        },
  );
}

function assertCompletedRestore(reply: Reply<JobRecord>, backupId: string): RestoreResult {
  assert.equal(reply.errorCode, null, reply.raw);
  assert.equal(reply.body.state, "completed", reply.raw);
  assert.equal(reply.body.operation, "restore");
  assert.equal(reply.body.backup, backupId);
  const result = reply.body.result as RestoreResult;
  assert.equal(result.stream, Stream);
  assert.equal(result.backup, backupId);
  return result;
}

describe("a RAFT group is whole", () => {
  const isWhole = (group: GroupInfo | undefined, size: number) => notWholeBecause(group, size) === null;
  const current = (name: string) => ({ name, current: true });
  test("with a leader and every other peer listed, online and current", () => {
    assert.equal(isWhole({ name: "C1", leader: "n1", replicas: [current("n2"), current("n3")] }, 3), true);
    assert.equal(isWhole({ name: "C1", leader: "n1" }, 1), true, "an R1 group in a cluster");
    assert.equal(isWhole({ leader: "hub" }, 1), true, "a server that is not clustered (2.15.3)");
    assert.equal(isWhole(undefined, 1), true, "no cluster block, R1");
  });
  test("not as 2.10.27 shows an R3 group that has not formed yet", () => {
    assert.equal(isWhole(undefined, 3), false, "no cluster block");
    assert.equal(isWhole({ name: "C1", leader: "n1" }, 3), false, "a leader and no replicas");
    assert.equal(isWhole({ name: "C1", replicas: [current("n1"), current("n2"), current("n3")] }, 3), false, "no leader yet");
    assert.equal(isWhole({ name: "C1", leader: "n1", replicas: [current("n2")] }, 3), false, "a peer missing");
    assert.equal(isWhole({ name: "C1", leader: "n1", replicas: [current("n2"), { name: "n3", current: false }] }, 3), false, "a peer behind");
    assert.equal(isWhole({ name: "C1", leader: "n1", replicas: [current("n2"), { name: "n3", current: true, offline: true }] }, 3), false, "a peer offline");
    assert.equal(isWhole({ name: "C1" }, 1), false, "an R1 group with no leader");
    assert.equal(notWholeBecause({ name: "C1", leader: "n1" }, 3), "leader n1, 0 of its 2 other peers listed", "the reason a failed restore names");
  });
});

describe("a 3-node JetStream cluster", { timeout: 600_000 }, () => {
  let cluster: NatsCluster;
  let nc: NatsConnection;
  let serviceNc: NatsConnection;
  let svc: BackupService;
  let leader: string;
  let serviceServer: string;
  let messages: StoredMessage[];
  let consumers: ConsumerSnapshot[];
  let backup: StreamManifest;

  before(async () => {
    cluster = await NatsCluster.start(3, { tags });
    nc = await cluster.connect();
    await makeStream(nc, Stream, { messages: Messages, deleteEvery: 97, extraConfig: { num_replicas: 3 } });
    const info = await waitForReplicasCurrent(nc, Stream, 3, cluster.servers);
    leader = info.cluster!.leader!;
    // The service talks to one node that does not lead the stream, and only to it.
    const other = cluster.servers.find((s) => s.name !== leader);
    assert.ok(other, `a node other than the leader ${leader}`);
    serviceServer = other.name;
    serviceNc = await other.connect({ ignoreClusterUpdates: true, noRandomize: true });
    assert.equal(serviceNc.info?.server_name, serviceServer);
    svc = await startService(serviceNc, { replicas: 3 });
    messages = await readStream(nc, Stream);
    consumers = await consumerStates(nc, Stream);
  });

  after(async () => {
    await svc?.stop();
    await serviceNc?.close();
    await nc?.close();
    await cluster?.stop();
  });

  test("the service's buckets are R3", async () => {
    for (const bucket of ["OBJ_backups", "KV_backups-jobs", "KV_backups-locks"]) {
      const info = await streamInfo(nc, bucket);
      assert.equal(info.config.num_replicas, 3, bucket);
    }
  });

  test("an R3 stream backed up through a node that does not lead it, restored as R3", async (t) => {
    assert.equal(messages.length, Messages - Math.floor((Messages - 1) / 97));
    assert.deepEqual(consumers.map((c) => c.name), ["AUDIT", "PROCESSOR"]);
    assert.notEqual(serviceServer, leader);

    const reply = await request<JobRecord>(nc, `$BACKUP.stream.${Stream}`, { wait: true }, 180_000);
    assert.equal(reply.errorCode, null, reply.raw);
    assert.equal(reply.body.state, "completed", reply.raw);
    backup = reply.body.result as StreamManifest;
    assert.equal(backup.stream, Stream);
    assert.equal(backup.messages, messages.length);
    assert.equal(backup.last_seq, Messages);
    assert.deepEqual(backup.consumers, ["AUDIT", "PROCESSOR"]);
    assert.equal(backup.server.name, serviceServer, "the manifest names the node the service is connected to");
    assert.equal(backup.server.cluster, "C1");
    const backupJson = JSON.parse(
      new TextDecoder().decode((await (await new Objm(jetstream(nc)).open("backups")).getBlob(objectNames(backup.id).config))!),
    ) as { config: { num_replicas: number } };
    assert.equal(backupJson.config.num_replicas, 3);

    await deleteStream(nc, Stream);
    const restored = await request<JobRecord>(nc, `$RESTORE.stream.${Stream}`, { wait: true }, 180_000);
    const result = assertCompletedRestore(restored, backup.id);
    assert.equal(result.replicas, 3);
    assert.equal(result.messages, messages.length);
    assert.equal(result.consumers, 2);
    assert.equal(result.warnings, undefined);

    const info = await waitForReplicasCurrent(nc, Stream, 3, cluster.servers);
    assert.equal(info.config.num_replicas, 3);
    assert.equal(info.state.messages, messages.length);
    assert.equal(info.state.last_seq, Messages);
    assert.deepEqual(await readStream(nc, Stream), messages);
    const lag = await consumersConverge(nc, Stream, restoredConsumers(consumers, backup));
    if (lag) t.diagnostic(lag);
  });

  test("restore with replicas:1 and placement by tag lands on a tagged node", async (t) => {
    assert.ok(backup, "the backup of the previous test");
    await deleteStream(nc, Stream);
    const reply = await request<JobRecord>(
      nc,
      `$RESTORE.stream.${Stream}`,
      { backup: backup.id, replicas: 1, placement: { tags: ["ssd"] }, wait: true },
      180_000,
    );
    const result = assertCompletedRestore(reply, backup.id);
    assert.equal(result.replicas, 1);

    const info = await waitForReplicasCurrent(nc, Stream, 1, cluster.servers);
    assert.equal(info.config.num_replicas, 1);
    assert.deepEqual(info.config.placement?.tags, ["ssd"]);
    const ssd = cluster.servers.filter((_, i) => tags(i).includes("ssd")).map((s) => s.name);
    assert.ok(ssd.includes(info.cluster!.leader!), `leader ${info.cluster!.leader} is one of ${ssd.join(", ")}`);
    assert.deepEqual(await readStream(nc, Stream), messages);
    const lag = await consumersConverge(nc, Stream, restoredConsumers(consumers, backup));
    if (lag) t.diagnostic(lag);
  });

  test("a placement no node satisfies fails, leaves no stream, and frees the stream", async () => {
    await deleteStream(nc, Stream);
    // Three replicas on "hdd" nodes: there is only one.
    const reply = await request(nc, `$RESTORE.stream.${Stream}`, { replicas: 3, placement: { tags: ["hdd"] }, wait: true }, 60_000);
    assert.ok(reply.errorCode !== null && reply.errorCode >= 400 && reply.errorCode <= 599, reply.raw);
    assert.deepEqual(reply.body, { error: { code: reply.errorCode, description: reply.errorHeader } });
    assert.match(reply.errorHeader ?? "", new RegExp(`restore of stream ${Stream} failed`));
    const gone = await jsApi(nc, `STREAM.INFO.${Stream}`);
    assert.equal(gone.error?.err_code, 10059, JSON.stringify(gone));
  });

  test("restore with placement by cluster name", async (t) => {
    const reply = await request<JobRecord>(nc, `$RESTORE.stream.${Stream}`, { placement: { cluster: "C1" }, wait: true }, 180_000);
    const result = assertCompletedRestore(reply, backup.id);
    assert.equal(result.replicas, 3);

    const info = await waitForReplicasCurrent(nc, Stream, 3, cluster.servers);
    assert.equal(info.config.num_replicas, 3);
    assert.equal(info.config.placement?.cluster, "C1");
    assert.equal(info.cluster?.name, "C1");
    assert.deepEqual(await readStream(nc, Stream), messages);
    const lag = await consumersConverge(nc, Stream, restoredConsumers(consumers, backup));
    if (lag) t.diagnostic(lag);
  });

  /**
   * 2.9.10 sometimes builds a restored R3 stream with a consumer group that never forms, most
   * often right after the stream was deleted (1 restore in 5 to 8 here); the service then removes
   * it and restores again; 2.10.27 answers a new consumer's INFO with no group, or a leader and no
   * replicas, before its group forms. Whichever way it went, a reply that says completed comes with
   * the stream and every consumer led, every replica listed, and the same groups current within moments.
   */
  test("R3 restores right after the stream was deleted are whole when they reply", async (t) => {
    const groupInfos = async () => [await streamInfo(nc, Stream), ...(await Promise.all(consumers.map((c) => jsApi<ConsumerInfo>(nc, `CONSUMER.INFO.${Stream}.${c.name}`))))];
    for (let round = 0; round < 4; round++) {
      await deleteStream(nc, Stream);
      const r1 = await request<JobRecord>(nc, `$RESTORE.stream.${Stream}`, { backup: backup.id, replicas: 1, placement: { tags: ["ssd"] }, wait: true }, 180_000);
      assertCompletedRestore(r1, backup.id);
      await deleteStream(nc, Stream);
      const r3 = await request<JobRecord>(nc, `$RESTORE.stream.${Stream}`, { backup: backup.id, wait: true }, 180_000);
      const result = assertCompletedRestore(r3, backup.id);
      if (result.warnings) t.diagnostic(`round ${round}: ${result.warnings.join("; ")}`);
      const atReply = await groupInfos();
      const labels = ["the stream", ...consumers.map((c) => `consumer ${c.name}`)];
      atReply.forEach((info, i) =>
        assert.ok(groupFormed(info.cluster, 3), `round ${round}: ${labels[i]}'s group at the reply: ${JSON.stringify(info.cluster ?? info)}`),
      );
      // A follower's "current" can flicker for a moment in a new group (2.10.27: 1,624 entries behind, current 3 ms later); the groups formed at the reply are the ones that settle.
      await waitUntil(
        `round ${round}: the groups of the reply with every replica current`,
        async () => {
          const now = await groupInfos().catch(() => []);
          return now.length === atReply.length && now.every((info, i) => groupReady(info.cluster, 3) && info.cluster?.raft_group === atReply[i]?.cluster?.raft_group);
        },
        5000,
      );
    }
    assert.deepEqual(await readStream(nc, Stream), messages);
  });

  describe("the R3 backup restored onto a standalone server", () => {
    let single: NatsServer;
    let singleNc: NatsConnection;
    let singleServiceNc: NatsConnection;
    let singleSvc: BackupService;

    before(async () => {
      single = await NatsServer.start();
      singleServiceNc = await single.connect();
      singleNc = await single.connect();
      singleSvc = await startService(singleServiceNc);
    });
    after(async () => {
      await singleSvc?.stop();
      await singleServiceNc?.close();
      await singleNc?.close();
      await single?.stop();
    });

    test("becomes R1 with a warning, every message kept", async () => {
      assert.ok(backup, "the backup of the earlier test");
      // The manifest as the cluster's service knows it.
      const info = await request<StreamManifest>(nc, `$BACKUP.info.${backup.id}`);
      assert.equal(info.errorCode, null, info.raw);
      const manifest = info.body;

      // Copy backup.json and the archive object by object, then commit the manifest there.
      const from = await new Objm(jetstream(nc)).open("backups");
      const to = await new Objm(jetstream(singleNc)).open("backups");
      const names = objectNames(manifest.id);
      for (const name of [names.config, names.archive]) {
        const data = await from.getBlob(name);
        assert.ok(data, `${name} in the cluster's bucket`);
        const put = await to.putBlob({ name }, data);
        assert.equal(put.size, data.length);
      }
      const copied = await to.info(names.archive);
      assert.equal(copied?.digest, manifest.sha256, "the copy has the digest the manifest recorded");
      const catalogue = await Catalogue.open(singleNc, { bucket: "backups" });
      await catalogue.commit(manifest);
      const listed = await request<{ backups: StreamManifest[] }>(singleNc, "$BACKUP.list", { stream: Stream });
      assert.equal(listed.errorCode, null, listed.raw);
      assert.deepEqual(listed.body.backups.map((b) => b.id), [manifest.id]);

      const reply = await request<JobRecord>(singleNc, `$RESTORE.stream.${Stream}`, { wait: true }, 180_000);
      const result = assertCompletedRestore(reply, manifest.id);
      assert.equal(result.replicas, 1);
      assert.equal(result.messages, messages.length);
      assert.ok(result.warnings?.length, `a warning: ${reply.raw}`);
      assert.ok(
        result.warnings.some((w) => /3 replicas/.test(w) && /restored with 1/.test(w)),
        `a warning that the replicas were lowered: ${JSON.stringify(result.warnings)}`,
      );

      const restored = await streamInfo(singleNc, Stream);
      assert.equal(restored.config.num_replicas, 1);
      assert.deepEqual(await readStream(singleNc, Stream), messages);
      assert.deepEqual(await consumerStates(singleNc, Stream), restoredConsumers(consumers, manifest));
    });
  });
});
