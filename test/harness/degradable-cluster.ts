/**
 * A 3-node cluster to kill a node of (issue 15): node 3 has 8 GB of file storage and the others
 * 1 GB, so that a server choosing by free storage prefers it; the service (buckets R2) and streams
 * A1 (R1) and A2 (R2), backed up and deleted, are placed while node 3 is shut down, so nothing of
 * theirs is on it. Used by degraded-restore.test.ts and server-remove.test.ts.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { NatsConnection } from "@nats-io/nats-core";
import type { NodeConnectionOptions } from "@nats-io/transport-node";
import type { BackupService, BackupServiceOptions, JobRecord } from "../../src/mod.ts";
import { Subjects } from "../../src/protocol/subjects.ts";
import { jsApi, waitUntil } from "./inspect.ts";
import { freePort, NatsServer } from "./nats-server.ts";
import { request, startService } from "./service.ts";

export const Messages = 20;

export interface Rig {
  n: NatsServer[];
  stores: string[];
  nc: NatsConnection;
  serviceNc: NatsConnection;
  svc: BackupService;
  /** With `systemAuth`: the service's system-account connection. */
  systemNc?: NatsConnection;
  stop(): Promise<void>;
}

/** Until a stream of `replicas` can be placed and removed again: a meta leader that has heard from that many nodes. */
export async function waitForPlacement(nc: NatsConnection, replicas = 3): Promise<void> {
  await waitUntil(
    `an R${replicas} stream placed`,
    async () => {
      try {
        const r = await jsApi(nc, "STREAM.CREATE.PROBE", { name: "PROBE", subjects: ["probe"], storage: "memory", num_replicas: replicas }, 2000);
        if (r.error) return false;
        return !(await jsApi(nc, "STREAM.DELETE.PROBE")).error;
      } catch {
        return false;
      }
    },
    30_000,
    250,
  );
}

/** Retries while the meta group settles (a leader may have gone with node 3). */
export async function createStream(nc: NatsConnection, config: Record<string, unknown>): Promise<{ leader: string; replicas: string[] }> {
  let last: unknown;
  return waitUntil(
    `stream ${String(config.name)} created`,
    async () => {
      try {
        const r = await jsApi<{ cluster?: { leader?: string; replicas?: { name: string }[] } }>(nc, `STREAM.CREATE.${String(config.name)}`, config, 2000);
        last = r.error;
        return r.error ? false : { leader: r.cluster?.leader ?? "", replicas: (r.cluster?.replicas ?? []).map((x) => x.name) };
      } catch (err) {
        last = err;
        return false;
      }
    },
    30_000,
    250,
  ).catch((err) => {
    throw new Error(`${(err as Error).message}: ${JSON.stringify(last)}`);
  });
}

/** The first message to a stream just created: asked again while its leader takes none yet (the create may answer first). */
export async function firstMessage(nc: NatsConnection, subject: string, data: string): Promise<void> {
  await waitUntil(`${subject} taken`, () => nc.request(subject, data).then(() => true, () => false), 10_000, 100);
}

/**
 * Three nodes, node 3 with 8 GB of file storage and the others 1 GB; the service (buckets R2) and
 * streams A1 (R1) and A2 (R2), backed up and deleted, placed while node 3 was shut down.
 */
export async function startDegradable(
  opts: { tags?: (i: number) => string[]; config?: string; auth?: NodeConnectionOptions; systemAuth?: NodeConnectionOptions; service?: BackupServiceOptions } = {},
): Promise<Rig> {
  const { tags } = opts;
  const routePorts = await Promise.all([0, 1, 2].map(() => freePort()));
  const routes = routePorts.map((p) => `"nats-route://127.0.0.1:${p}"`).join(", ");
  const n: NatsServer[] = [];
  const stores: string[] = [];
  const rig = { n, stores } as Rig;
  rig.stop = async () => {
    await rig.svc?.stop();
    await rig.serviceNc?.close();
    await rig.nc?.close();
    await rig.systemNc?.close();
    await Promise.all(n.map((s) => s.stop()));
    for (const dir of stores) rmSync(dir, { recursive: true, force: true });
  };
  try {
    for (const [i, routePort] of routePorts.entries()) {
      const storeDir = mkdtempSync(join(tmpdir(), "nats-backup-degraded-"));
      stores.push(storeDir);
      n.push(
        await NatsServer.start({
          serverName: `C1-n${i + 1}`,
          storeDir,
          config: [
            `cluster { name: C1, listen: "127.0.0.1:${routePort}", routes: [${routes}] }`,
            // The later jetstream block is the one the server reads.
            `jetstream { store_dir: ${JSON.stringify(storeDir)}, max_file_store: ${i === 2 ? "8GB" : "1GB"} }`,
            tags ? `server_tags: ${JSON.stringify(tags(i))}` : "",
            opts.config ?? "",
          ].join("\n"),
        }),
      );
    }
    assert.match(n[2]!.log, /Max Storage:\s+8\.00 GB/);
    rig.nc = await n[0]!.connect({ ignoreClusterUpdates: true, noRandomize: true, ...opts.auth });
    await waitForPlacement(rig.nc);
    await n[2]!.halt();
    // Node 3 may have led the meta group.
    await waitForPlacement(rig.nc, 2);
    rig.serviceNc = await n[0]!.connect({ ignoreClusterUpdates: true, noRandomize: true, ...opts.auth });
    if (opts.systemAuth) rig.systemNc = await n[0]!.connect({ ignoreClusterUpdates: true, noRandomize: true, ...opts.systemAuth });
    rig.svc = await startService(rig.serviceNc, { replicas: 2, ...opts.service, ...(rig.systemNc ? { systemConnection: rig.systemNc } : {}) });
    for (const [name, replicas] of [["A1", 1], ["A2", 2]] as const) {
      await createStream(rig.nc, { name, subjects: [`${name}.>`], num_replicas: replicas });
      await firstMessage(rig.nc, `${name}.0`, `${name} 0`);
      for (let i = 1; i < Messages; i++) await rig.nc.request(`${name}.${i % 3}`, `${name} ${i}`);
      const backup = await request<JobRecord>(rig.nc, Subjects.backupStream(name), { wait: true }, 60_000);
      assert.equal(backup.body.state, "completed", backup.raw);
      assert.equal((await jsApi(rig.nc, `STREAM.DELETE.${name}`)).error, undefined);
    }
    await n[2]!.restart();
    await waitForPlacement(rig.nc);
  } catch (err) {
    await rig.stop();
    throw err;
  }
  return rig;
}

/**
 * Kills node 3 (no word to the others). With `known`, waits until STREAM.LIST describes stream
 * ALL3 (R3) with a live leader and node 3 among its replicas: how the service learns node 3 exists
 * (2.9.10 names a leaderless stream only as `missing`, without its peers).
 */
export async function killNode3(rig: Rig, known: boolean): Promise<void> {
  await rig.n[2]!.halt("SIGKILL");
  if (!known) return;
  await waitUntil(
    "stream ALL3 led by a live node",
    async () => {
      // Unanswered while the stream's group elects a leader: asked again, within the same bound.
      const list = await jsApi<{ streams: { config: { name: string }; cluster?: { leader?: string; replicas?: { name: string }[] } }[] | null }>(rig.nc, "STREAM.LIST", {}, 15_000).catch(() => null);
      if (!list) return false;
      const all3 = (list.streams ?? []).find((s) => s.config.name === "ALL3");
      return !!all3?.cluster?.leader && all3.cluster.leader !== "C1-n3" && (all3.cluster.replicas ?? []).some((r) => r.name === "C1-n3");
    },
    60_000,
    250,
  );
}

/** The names STREAM.LIST gives, described or named `missing` (no leader answered). */
export async function listed(nc: NatsConnection): Promise<string[]> {
  const list = await jsApi<{ streams: { config: { name: string } }[] | null; missing?: string[] }>(nc, "STREAM.LIST", {}, 15_000);
  assert.equal(list.error, undefined, JSON.stringify(list.error));
  return [...(list.streams ?? []).map((s) => s.config.name), ...(list.missing ?? [])];
}

export async function placement(nc: NatsConnection, stream: string): Promise<{ peers: string[]; messages: number }> {
  const info = await jsApi<{ cluster: { leader?: string; replicas?: { name: string }[] }; state: { messages: number } }>(nc, `STREAM.INFO.${stream}`);
  assert.equal(info.error, undefined, JSON.stringify(info.error));
  return { peers: [info.cluster.leader, ...(info.cluster.replicas ?? []).map((r) => r.name)].filter((x): x is string => !!x).sort(), messages: info.state.messages };
}
