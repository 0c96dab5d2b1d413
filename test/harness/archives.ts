/**
 * Real snapshot archives, made by a real nats-server and the real nats CLI (`nats stream backup`),
 * for the tests of src/archive: streams of random and of compressible payloads, with and without
 * consumers, and the folder the CLI wrote (stream.tar.s2, backup.json).
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { NatsConnection } from "@nats-io/nats-core";
import { AckPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { makeStream } from "./fixtures.ts";
import type { NatsCli } from "./nats-cli.ts";
import { prng } from "./prng.ts";

export const ArchiveFiles = ["stream.tar.s2", "stream.arc.s2"] as const;

export interface RealArchive {
  server: string;
  stream: string;
  /** The archive's file name in the CLI's folder, and its bytes. */
  file: (typeof ArchiveFiles)[number];
  archive: Buffer;
  /** backup.json as the CLI wrote it. */
  backup: { config: Record<string, unknown>; state: { messages: number; first_seq: number; last_seq: number; consumer_count: number } };
  /** The consumers the archive should hold (none when backed up with --no-consumers). */
  consumers: string[];
  withConsumers: boolean;
}

const Words = "order customer invoice payment shipped pending delivered warehouse item quantity price total account user region created updated".split(" ");

/** About 1 KiB of JSON log lines from a small vocabulary: compresses, with copies and repeats. */
export function textPayload(rnd: () => number, seq: number): Buffer {
  let s = "";
  for (let line = 0; s.length < 1024; line++) {
    const words = Array.from({ length: 4 + (rnd() % 8) }, () => Words[rnd() % Words.length]).join(" ");
    s += `{"seq":${seq},"line":${line},"level":"${rnd() % 4 ? "info" : "warn"}","user":"user-${rnd() % 500}","amount":${rnd() % 100000},"msg":"${words}"}\n`;
  }
  return Buffer.from(s.slice(0, 1024));
}

async function textStream(nc: NatsConnection, name: string, messages: number): Promise<void> {
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name, subjects: [`${name}.>`], storage: "file" as never });
  const js = jetstream(nc);
  const rnd = prng(7);
  const pending: Promise<unknown>[] = [];
  for (let i = 1; i <= messages; i++) {
    pending.push(js.publish(`${name}.log.${i % 5}`, textPayload(rnd, i)));
    if (pending.length >= 512) await Promise.all(pending.splice(0));
  }
  await Promise.all(pending);
  // A consumer the backup leaves out (--no-consumers).
  await jsm.consumers.add(name, { durable_name: "READER", ack_policy: AckPolicy.Explicit });
}

async function backup(cli: NatsCli, dir: string, stream: string, withConsumers: boolean): Promise<Pick<RealArchive, "file" | "archive" | "backup">> {
  const folder = join(dir, stream);
  await cli.ok(`nats stream backup --no-progress ${withConsumers ? "" : "--no-consumers "}${stream} ${folder}`, { timeoutMs: 60_000 });
  // The CLI (0.5.0) names a v2 archive stream.arc.s2, a v1 one stream.tar.s2.
  const file = ArchiveFiles.find((f) => existsSync(join(folder, f)));
  if (!file) throw new Error(`nats stream backup wrote none of ${ArchiveFiles.join(", ")} in ${folder}: ${readdirSync(folder).join(" ")}`);
  return {
    file,
    archive: readFileSync(join(folder, file)),
    backup: JSON.parse(readFileSync(join(folder, "backup.json"), "utf8")) as RealArchive["backup"],
  };
}

/**
 * Three streams on the server `nc` talks to, each backed up by the CLI into `dir`:
 * MIXED (random payloads of 0 B to 70 KB, headers, interior deletes, two consumers),
 * TEXT (4000 compressible 1 KiB messages, a consumer left out by --no-consumers), SMALL (24 of
 * them and their consumer: a few KiB, for the fuzz), EMPTY.
 */
export async function makeRealArchives(nc: NatsConnection, cli: NatsCli, dir: string, server: string): Promise<RealArchive[]> {
  await makeStream(nc, "MIXED", { messages: 120, deleteEvery: 10, consumers: true });
  await textStream(nc, "TEXT", 4000);
  await textStream(nc, "SMALL", 24);
  await (await jetstreamManager(nc)).streams.add({ name: "EMPTY", subjects: ["EMPTY.>"], storage: "file" as never });
  const made: RealArchive[] = [];
  for (const [stream, withConsumers, consumers] of [
    ["MIXED", true, ["AUDIT", "PROCESSOR"]],
    ["TEXT", false, []],
    ["SMALL", true, ["READER"]],
    ["EMPTY", true, []],
  ] as const) {
    made.push({ server, stream, withConsumers, consumers: [...consumers], ...(await backup(cli, dir, stream, withConsumers)) });
  }
  return made;
}
