/**
 * Every completed backup is listed, whatever else is written to the bucket meanwhile: many small
 * backups run a few at a time, on one instance and then on two, and every id a `wait:true` reply
 * called completed must be in `$BACKUP.list` at once, and the newest of each stream first (a
 * restore without `backup` takes it). On nats-server 2.9, a rollup on one metadata subject moved
 * the index's consumer past another backup's manifest: 14 of 100 went missing for good.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { NatsConnection } from "@nats-io/nats-core";
import type { StreamManifest, BackupService, JobRecord } from "../src/mod.ts";
import { makeStream } from "./harness/fixtures.ts";
import { NatsServer } from "./harness/nats-server.ts";
import { request, startService } from "./harness/service.ts";

const Streams = Array.from({ length: 8 }, (_, i) => `L${i}`);
const NoSweeps = { intervalMs: 3_600_000 };

interface Completed {
  id: string;
  stream: string;
}

/**
 * `count` backups spread over the streams, `parallel` requests in flight at once; those completed,
 * in completion order. Each request sender has streams of its own, so two backups of one stream
 * never overlap (the second would be a 409: the stream is busy; CI at 4a50e16, when a slow
 * backup of L5 was still running as the round came back to it).
 */
async function backups(nc: NatsConnection, count: number, parallel: number): Promise<Completed[]> {
  const completed: Completed[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: parallel }, async (_, sender) => {
      const own = Streams.filter((_, i) => i % parallel === sender);
      for (let mine = 0; next < count; mine++) {
        next++;
        const stream = own[mine % own.length]!;
        const reply = await request<JobRecord>(nc, `$BACKUP.stream.${stream}`, { wait: true }, 60_000);
        assert.equal(reply.errorCode, null, reply.raw);
        assert.equal(reply.body.state, "completed");
        completed.push({ id: reply.body.id, stream });
      }
    }),
  );
  return completed;
}

async function listed(nc: NatsConnection, stream?: string): Promise<StreamManifest[]> {
  const reply = await request<{ backups: StreamManifest[] }>(nc, "$BACKUP.list", stream ? { stream } : {});
  assert.equal(reply.errorCode, null, reply.raw);
  return reply.body.backups;
}

function assertAllListed(all: { id: string }[], completed: Completed[], who: string): void {
  const ids = new Set(all.map((m) => m.id));
  const missing = completed.filter((c) => !ids.has(c.id)).map((c) => c.id);
  assert.deepEqual(missing, [], `${who}: ${missing.length} of ${completed.length} completed backups are not listed`);
}

describe("every completed backup is listed under concurrent backups", () => {
  let server: NatsServer;
  let nc: NatsConnection;
  const serviceNcs: NatsConnection[] = [];
  const services: BackupService[] = [];
  const completed: Completed[] = [];

  async function addInstance(): Promise<BackupService> {
    const snc = await server.connect();
    serviceNcs.push(snc);
    const svc = await startService(snc, { sweep: NoSweeps });
    services.push(svc);
    return svc;
  }

  before(async () => {
    server = await NatsServer.start();
    nc = await server.connect();
    for (const s of Streams) await makeStream(nc, s, { messages: 5, consumers: false });
    await addInstance();
  });
  after(async () => {
    for (const svc of services) await svc.stop();
    for (const snc of serviceNcs) await snc.close();
    await nc?.close();
    await server?.stop();
  });

  test("one instance, three backups at a time", async () => {
    completed.push(...(await backups(nc, 90, 3)));
    assertAllListed(await listed(nc), completed, "the list");
    assertAllListed(await services[0]!.catalogue.list(), completed, "the instance's index");
  });

  test("two instances, four backups at a time", async () => {
    await addInstance();
    completed.push(...(await backups(nc, 90, 4)));
    for (const [i, svc] of services.entries()) assertAllListed(await svc.catalogue.list(), completed, `instance ${i}'s index`);
    assertAllListed(await listed(nc), completed, "the list");
  });

  test("each stream's backups are listed, newest first (what a restore without `backup` takes)", async () => {
    for (const stream of Streams) {
      const expected = completed.filter((c) => c.stream === stream).map((c) => c.id).sort().reverse();
      assert.deepEqual((await listed(nc, stream)).map((m) => m.id), expected, `stream ${stream}`);
    }
  });
});
