/**
 * `nats-backup export` and `import` against a bucket that does not exist, through the process as a
 * user runs it: an export reads only, so it fails (not found) and creates nothing, neither bucket
 * nor folder nor file; an import creates the bucket and its job record bucket with the settings
 * a service gives the ones it creates.
 */
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { NatsConnection } from "@nats-io/nats-core";
import type { JobRecord, StreamManifest } from "../src/mod.ts";
import { Catalogue } from "../src/catalogue/catalogue.ts";
import { jsApi } from "./harness/inspect.ts";
import { makeStream } from "./harness/fixtures.ts";
import { natsBackup, natsBackupOk } from "./harness/nats-backup-cli.ts";
import { request, startRig, type ServiceRig } from "./harness/service.ts";

interface StreamConfig {
  name: string;
  subjects: string[];
  [field: string]: unknown;
}

describe("export and import against a bucket that does not exist", () => {
  let rig: ServiceRig;
  let nc: NatsConnection;
  let work: string;
  /** A stream backup of the service's bucket, and its export. */
  let id: string;
  let folder: string;

  const url = () => rig.server.url;
  const streamNames = async () => (await jsApi<{ streams: string[] | null }>(nc, "STREAM.NAMES")).streams?.sort() ?? [];
  /** A stream's configuration without what names it: what the bucket was created with. */
  const settings = async (stream: string) => {
    const { name: _name, subjects: _subjects, ...rest } = (await jsApi<{ config: StreamConfig }>(nc, `STREAM.INFO.${stream}`)).config;
    return rest;
  };

  before(async () => {
    rig = await startRig();
    nc = rig.nc;
    work = mkdtempSync(join(tmpdir(), "nats-backup-missing-bucket-"));
    await makeStream(nc, "ORDERS", { messages: 120 });
    const backup = await request<JobRecord>(nc, "$BACKUP.stream.ORDERS", { wait: true }, 120_000);
    assert.equal(backup.body.state, "completed", backup.raw);
    id = (backup.body.result as StreamManifest).id;
    folder = join(work, "orders");
    await natsBackupOk(url(), ["export", id, folder]);
  });

  after(async () => {
    await rig?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  test("export (to a folder, or --tgz) fails with bucket not found, and creates no bucket, folder or file", async () => {
    const streams = await streamNames();
    assert.ok(streams.includes(`OBJ_${rig.svc.bucket}`), streams.join(", "));
    const dir = join(work, "from-nowhere");
    const file = join(work, "from-nowhere.tgz");
    for (const args of [["export", id, dir], ["export", id, "--tgz", file]]) {
      const run = await natsBackup(url(), ["--bucket", "nowhere", ...args]);
      assert.notEqual(run.code, 0, run.stdout);
      assert.match(run.stderr, /^nats-backup: bucket nowhere not found \(no stream OBJ_nowhere\)$/m, run.stderr);
      assert.deepEqual(await streamNames(), streams, `${args.join(" ")}: no bucket created`);
    }
    assert.equal(existsSync(dir), false, "no folder made");
    assert.equal(existsSync(file), false, "no file written");
  });

  test("import creates the bucket and its job record bucket as a service creates its own, and says so once", async () => {
    const first = await natsBackupOk(url(), ["--bucket", "fresh", "import", folder]);
    assert.match(first.stderr, /^Created bucket fresh and its job record bucket \(replicas 1\), as the service would$/m);
    const imported = first.stdout.split("\n")[0]!.trim();
    assert.deepEqual(await settings("OBJ_fresh"), await settings(`OBJ_${rig.svc.bucket}`));
    assert.deepEqual(await settings("KV_fresh-jobs"), await settings(`KV_${rig.svc.bucket}-jobs`));

    const catalogue = await Catalogue.open(nc, { bucket: "fresh", existing: true });
    try {
      const manifest = (await catalogue.info(imported)) as StreamManifest;
      assert.equal(manifest.stream, "ORDERS");
      assert.equal(manifest.messages, 120);
    } finally {
      catalogue.close();
    }

    const second = await natsBackupOk(url(), ["--bucket", "fresh", "import", folder]);
    assert.doesNotMatch(second.stderr, /Created bucket/);
  });
});
