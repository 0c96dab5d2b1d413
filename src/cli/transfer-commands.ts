/**
 * `export`, `import` and `verify`: backups between the bucket and a folder in the nats CLI's
 * layout. export and import read and write the bucket directly (src/transfer/), so they work when
 * no service runs; verify asks the service (`$BACKUP.verify.<id>`) to read a backup through.
 */
import cliProgress from "cli-progress";
import type { Command } from "commander";
import type { NatsConnection } from "@nats-io/nats-core";
import { withClientConnection } from "./client-connection.ts";
import { exportBackup } from "../transfer/export.ts";
import { exportTgz } from "../transfer/tgz.ts";
import { importFolder } from "../transfer/import.ts";
import { backupId } from "../protocol/schemas.ts";
import { Defaults } from "../service/service.ts";
import { wholeNumber } from "./serve.ts";
import { bytes as size } from "./format.ts";

interface Deps {
  connectFor: (cmd: Command) => Promise<NatsConnection>;
  bucketOf: (cmd: Command) => string;
}

export function addTransferCommands(program: Command, deps: Deps): void {
  program
    .command("export")
    .description("write a backup into a folder that `nats stream restore DIR` (an account backup: `nats account restore DIR`) restores, or with --tgz into a tgz of the stream's storage folder")
    .argument("<id>", "the backup's id")
    .argument("[dir]", "an empty or new folder")
    .option("--tgz <file>", "write a gzipped tar of the stream's folder, to unpack into <store_dir>/jetstream/<account>/streams/ of a stopped nats-server (not for archives of nats-server 2.15+)")
    .option("--json", "print the result as JSON")
    .option("--no-progress", "no progress bar (there is none when standard output is not a terminal)")
    .action(async (id: string, dir: string | undefined, opts: { tgz?: string; json?: boolean; progress: boolean }, cmd: Command) => {
      checkId(id);
      if ((dir === undefined) === (opts.tgz === undefined)) throw new Error("export takes a folder or --tgz FILE (one of them)");
      await withConnection(deps, cmd, async (nc, bucket) => {
        if (opts.tgz !== undefined) {
          const bar = progressBar(opts, `Exporting ${id}`);
          const result = await exportTgz(nc, bucket, id, opts.tgz, { onProgress: bar.update }).finally(bar.stop);
          if (opts.json) return print(result);
          console.log(`Wrote ${result.entries} files of stream ${result.streams.join(", ")} from backup ${id} to ${result.file} (${size(result.bytes)})`);
          console.log(`Unpack it with nats-server stopped: cd <store_dir>/jetstream/<account>/streams && tar xzf ${result.file}`);
          return;
        }
        const bar = progressBar(opts, `Exporting ${id}`);
        const result = await exportBackup(nc, bucket, id, dir!, { onProgress: bar.update }).finally(bar.stop);
        if (opts.json) return print(result);
        for (const s of result.streams) {
          console.log(s.size === undefined ? `Wrote the configuration of stream ${s.stream} (saved without data) to ${s.dir}` : `Wrote stream ${s.stream}: ${size(s.size)}, ${s.messages} messages to ${s.dir}`);
        }
        const restore = result.scope === "stream" ? `nats stream restore ${dir}` : `nats account restore ${dir}`;
        console.log(`Exported backup ${id} (${result.scope}) to ${dir}: restore it with ${restore}`);
        if (result.without_data.length > 0) {
          console.log(`Saved without data, which nats account restore cannot restore: ${result.without_data.join(", ")} (import the folder and use $RESTORE.account)`);
        }
      });
    });

  program
    .command("import")
    .description("store a folder made by `nats stream backup` (or `nats account backup`, or export) in the bucket as a backup")
    .argument("<dir>", "the folder")
    .option("--replicas <n>", `replicas of the buckets it creates when the bucket does not exist yet, as serve --replicas [default ${Defaults.replicas}]`, wholeNumber("--replicas"))
    .option("--json", "print the new backup's manifest as JSON")
    .option("--no-progress", "no progress bar (there is none when standard output is not a terminal)")
    .action(async (dir: string, opts: { replicas?: number; json?: boolean; progress: boolean }, cmd: Command) => {
      await withConnection(deps, cmd, async (nc, bucket) => {
        const bar = progressBar(opts, `Importing ${dir}`);
        const { manifest, streams, skipped, createdBucket } = await importFolder(nc, bucket, dir, {
          onProgress: bar.update,
          ...(opts.replicas ? { replicas: opts.replicas } : {}),
        }).finally(bar.stop);
        if (createdBucket) console.error(`Created bucket ${bucket} and its job record bucket (replicas ${opts.replicas || Defaults.replicas}), as the service would`);
        for (const s of skipped) console.error(`Left out stream ${s.stream}: ${s.reason}`);
        if (opts.json) return print(manifest);
        console.log(manifest.id);
        for (const s of streams) {
          console.log(
            s.size === undefined
              ? `  stream ${s.stream}: configuration only`
              : `  stream ${s.stream}: ${size(s.size)} (${s.format}), ${s.messages} messages, consumers: ${s.consumers.join(", ") || "none"}`,
          );
        }
        console.log(`Imported ${dir} as ${manifest.scope} backup ${manifest.id} in bucket ${bucket}`);
      });
    });

  program
    .command("verify")
    .description("have the service read a backup through and check it: digest, S2 frames, tar or v2 structure, stream name, no errors.txt")
    .argument("<id>", "the backup's id")
    .option("--json", "print the service's reply as JSON")
    .option("--timeout <seconds>", "how long to wait for the answer", "600")
    .action(async (id: string, opts: { json?: boolean; timeout: string }, cmd: Command) => {
      checkId(id);
      await withConnection(deps, cmd, async (nc) => {
        const msg = await nc.request(`$BACKUP.verify.${id}`, "", { timeout: Number(opts.timeout) * 1000 });
        const reply = JSON.parse(msg.string()) as Record<string, unknown> & { error?: { description?: string }; ok?: boolean };
        if (reply.error || msg.headers?.get("Nats-Service-Error-Code")) {
          throw new Error(reply.error?.description ?? msg.headers?.get("Nats-Service-Error") ?? "the service replied an error");
        }
        if (opts.json) print(reply);
        else printFields(reply);
        if (reply.ok !== true) throw new Error(`backup ${id} is not whole`);
      });
    });
}

function withConnection(deps: Deps, cmd: Command, run: (nc: NatsConnection, bucket: string) => Promise<void>): Promise<void> {
  return withClientConnection(cmd, (nc) => run(nc, deps.bucketOf(cmd)), deps.connectFor);
}

function checkId(id: string): void {
  if (!backupId.safeParse(id).success) throw new Error(`${JSON.stringify(id)} is not a backup id (a 26-character ULID)`);
}

function print(value: unknown): void {
  console.log(JSON.stringify(value, null, 2));
}

/** A reply's fields, one a line; nested ones (each stream of an account backup) indented under it. */
function printFields(value: Record<string, unknown>, indent = ""): void {
  for (const [key, v] of Object.entries(value)) {
    if (Array.isArray(v) && v.some((e) => typeof e === "object" && e !== null)) {
      console.log(`${indent}${key}:`);
      for (const e of v) {
        printFields(e as Record<string, unknown>, `${indent}  `);
        console.log();
      }
    } else if (typeof v === "object" && v !== null && !Array.isArray(v)) {
      console.log(`${indent}${key}:`);
      printFields(v as Record<string, unknown>, `${indent}  `);
    } else {
      console.log(`${indent}${key}: ${Array.isArray(v) ? v.join(", ") || "(none)" : String(v)}`);
    }
  }
}

/** A bar of archive bytes moved, on a terminal only (and not with --json or --no-progress). */
function progressBar(opts: { json?: boolean; progress: boolean }, title: string): { update(done: number, total: number): void; stop(): void } {
  if (opts.json || !opts.progress || !process.stdout.isTTY) return { update: () => {}, stop: () => {} };
  let bar: cliProgress.SingleBar | null = null;
  return {
    update: (done, total) => {
      const payload = { done: size(done), all: size(total) };
      if (bar) return bar.update(done, payload);
      bar = new cliProgress.SingleBar(
        { stream: process.stdout, format: `${title} [{bar}] {percentage}% {done} of {all}`, hideCursor: true, gracefulExit: false, barsize: 30 },
        cliProgress.Presets.shades_classic,
      );
      bar.start(Math.max(total, 1), done, payload);
    },
    stop: () => bar?.stop(),
  };
}
