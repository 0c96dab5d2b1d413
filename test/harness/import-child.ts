/**
 * `nats-backup import` stopped at a point the test chooses, in a process of its own, for tests
 * that kill it (kill -9) mid-way:
 *
 *   node --import tsx test/harness/import-child.ts --server URL --bucket NAME --dir DIR
 *
 * Imports DIR (an account folder) and, once its first stream is stored and committed, prints one
 * line `STORED <backup id> <stream>` on stdout and waits there for ever, its job record still
 * refreshed every second, until the test kills it.
 */
import { parseArgs } from "node:util";
import { connect } from "@nats-io/transport-node";
import { importFolder } from "../../src/transfer/import.ts";

const { values } = parseArgs({
  args: process.argv.slice(2),
  options: { server: { type: "string" }, bucket: { type: "string" }, dir: { type: "string" } },
});
if (!values.server || !values.bucket || !values.dir) throw new Error("import-child takes --server URL --bucket NAME --dir DIR");

const nc = await connect({ servers: values.server, name: "nats-backup-test-import-child" });
await importFolder(nc, values.bucket, values.dir, {
  onStreamStored: async ({ id, stream }) => {
    process.stdout.write(`STORED ${id} ${stream}\n`);
    await new Promise<never>(() => {});
  },
});
throw new Error("import-child: the import ended, but it was to stop after its first stream");
