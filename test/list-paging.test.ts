/**
 * `$BACKUP.list` a page at a time: `limit` and `after` in the request, `next` in the reply while
 * more remain, and every reply small enough for the server's max_payload, however many backups
 * the bucket holds. The manifests are written straight into the bucket, so that thousands take
 * seconds.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { NatsConnection } from "@nats-io/nats-core";
import type { StreamManifest } from "../src/mod.ts";
import { ListLimit } from "../src/protocol/schemas.ts";
import { fakeManifest, writeManifests } from "./harness/manifests.ts";
import { request, startRig, type ServiceRig } from "./harness/service.ts";

interface Page {
  backups: StreamManifest[];
  next?: string;
}

const NoSweeps = { intervalMs: 3_600_000 };

/** Every page of a list, following `next` until it is absent; each reply's size in bytes too. */
async function allPages(nc: NatsConnection, body: Record<string, unknown>): Promise<{ pages: Page[]; sizes: number[] }> {
  const pages: Page[] = [];
  const sizes: number[] = [];
  let cursor: string | undefined;
  for (;;) {
    const reply = await request<Page>(nc, "$BACKUP.list", { ...body, ...(cursor ? { after: cursor } : {}) });
    assert.equal(reply.errorCode, null, `page ${pages.length + 1}: ${reply.raw.slice(0, 300)}`);
    assert.deepEqual(Object.keys(reply.body).sort(), reply.body.next === undefined ? ["backups"] : ["backups", "next"]);
    pages.push(reply.body);
    sizes.push(Buffer.byteLength(reply.raw));
    if (reply.body.next === undefined) return { pages, sizes };
    assert.equal(reply.body.next, reply.body.backups.at(-1)?.id, "next is the page's last id");
    assert.ok(pages.length < 10_000, "paging does not end");
    cursor = reply.body.next;
  }
}

const newestFirst = (ids: string[]) => [...ids].sort().reverse();

describe("$BACKUP.list pages through 3,000 backups", () => {
  const Streams = ["P0", "P1", "P2", "P3", "P4"];
  let rig: ServiceRig;
  const written: StreamManifest[] = [];

  before(async () => {
    rig = await startRig({ sweep: NoSweeps });
    // 3,000 backups a second apart, the streams taking turns: 600 each.
    const start = Date.now() - 3_600_000;
    for (let i = 0; i < 3_000; i++) written.push(fakeManifest(Streams[i % Streams.length]!, start + i * 1_000));
    await writeManifests(rig.nc, written);
  });
  after(async () => {
    await rig?.stop();
  });

  test("default limit: every id exactly once, newest first, in pages of 256; no next on the last page", async () => {
    const { pages } = await allPages(rig.nc, {});
    assert.equal(pages.length, Math.ceil(3_000 / ListLimit.default));
    for (const page of pages.slice(0, -1)) assert.equal(page.backups.length, ListLimit.default);
    assert.equal(pages.at(-1)!.backups.length, 3_000 - ListLimit.default * (pages.length - 1));
    const ids = pages.flatMap((p) => p.backups.map((b) => b.id));
    assert.equal(new Set(ids).size, ids.length, "no id twice");
    assert.deepEqual(ids, newestFirst(written.map((m) => m.id)));
    assert.deepEqual(pages[0]!.backups[0], written.at(-1), "the manifest as written");
  });

  test("a stream filter with a limit that divides its count: its ids only, the last page full and without next", async () => {
    const { pages } = await allPages(rig.nc, { stream: "P2", limit: 100 });
    assert.deepEqual(
      pages.map((p) => p.backups.length),
      [100, 100, 100, 100, 100, 100],
    );
    const ids = pages.flatMap((p) => p.backups.map((b) => b.id));
    assert.deepEqual(ids, newestFirst(written.filter((m) => m.stream === "P2").map((m) => m.id)));
  });

  test("the largest limit, and `after` an id that is in no list (older than means a lower id)", async () => {
    const { pages } = await allPages(rig.nc, { limit: ListLimit.max });
    assert.deepEqual(
      pages.map((p) => p.backups.length),
      [1024, 1024, 952],
    );
    // Between two neighbours from the 11th newest on: a removed backup's id still pages on from
    // where it was. (Neighbours that share 25 characters have no such id between them: skipped.)
    const sorted = newestFirst(written.map((m) => m.id));
    const below = (id: string) => `${id.slice(0, 25)}0`;
    const i = sorted.findIndex((id, k) => k >= 10 && k + 3 < sorted.length && below(id) < id && below(id) > sorted[k + 1]!);
    assert.ok(i >= 10, "two neighbouring ids with room between them");
    const reply = await request<Page>(rig.nc, "$BACKUP.list", { after: below(sorted[i]!), limit: 3 });
    assert.deepEqual(
      reply.body.backups.map((b) => b.id),
      sorted.slice(i + 1, i + 4),
    );
    const last = await request<Page>(rig.nc, "$BACKUP.list", { after: sorted.at(-1), limit: 3 });
    assert.deepEqual(last.body, { backups: [] }, "nothing is older than the oldest");
  });

  test("limit out of range, `after` that is not an id, unknown fields: 400", async () => {
    for (const body of [{ limit: 0 }, { limit: ListLimit.max + 1 }, { limit: 1.5 }, { after: "01ARZ" }, { after: 5 }, { cursor: "x" }]) {
      const reply = await request(rig.nc, "$BACKUP.list", body);
      assert.equal(reply.errorCode, 400, `${JSON.stringify(body)}: ${reply.raw}`);
    }
  });

  test("Catalogue.list() still returns every backup at once, newest first, for the service's own use", async () => {
    const all = await rig.svc.catalogue.list();
    assert.deepEqual(
      all.map((m) => m.id),
      newestFirst(written.map((m) => m.id)),
    );
    assert.equal((await rig.svc.catalogue.latest("P3")).id, newestFirst(written.filter((m) => m.stream === "P3").map((m) => m.id))[0]);
  });
});

describe("$BACKUP.list replies fit the server's max_payload", () => {
  const MaxPayload = 32 * 1024;
  let rig: ServiceRig;
  const written: StreamManifest[] = [];

  before(async () => {
    rig = await startRig({ sweep: NoSweeps }, { config: `max_payload: ${MaxPayload}` });
    // About 1.1 KB of JSON each, with the longest tag a backup request takes: a page of 1024 would be over 1 MB.
    const start = Date.now() - 3_600_000;
    for (let i = 0; i < 200; i++) written.push(fakeManifest("BIG", start + i * 1_000, { tag: "t".repeat(256) }));
    await writeManifests(rig.nc, written);
  });
  after(async () => {
    await rig?.stop();
  });

  test("a page is cut short to fit, and next carries on: every id once, every reply within max_payload", async () => {
    assert.equal(rig.serviceNc.info?.max_payload, MaxPayload);
    const { pages, sizes } = await allPages(rig.nc, { limit: ListLimit.max });
    assert.ok(pages.length > 1, `a cut is needed: ${pages.length} page`);
    for (const size of sizes) assert.ok(size <= MaxPayload, `a reply of ${size} bytes`);
    // Cut by size, not by a fixed count: each full page is as big as fits.
    const perManifest = Buffer.byteLength(JSON.stringify(written[0]));
    assert.ok(pages[0]!.backups.length >= Math.floor((MaxPayload - 1024) / (perManifest + 1)) - 1, `${pages[0]!.backups.length} per page`);
    const ids = pages.flatMap((p) => p.backups.map((b) => b.id));
    assert.deepEqual(ids, newestFirst(written.map((m) => m.id)));
  });
});
