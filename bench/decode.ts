/**
 * `npm run bench -- --decode`: how fast src/archive reads a real archive. For each payload
 * (random, compressible) a stream of --size MiB of 1 KiB messages is snapshotted by the server
 * under test, once, the CLI's way (bench/raw.ts), and kept in .cache/bench-archives/ for later
 * runs. Then, over --rounds, the archive is read from the file in 1 MiB pieces through
 *   decode:  S2Decoder, a fresh array per block (the API's default);
 *   inspect: ArchiveInspector (decode into a reused block, plus the tar or v2 reader);
 * and the rate is MB/s of uncompressed output, by wall time and by this process's CPU time
 * (steadier on a shared machine), with the peak RSS of the round (VmHWM, reset before each).
 */
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { ArchiveInspector, S2Decoder, type ArchiveSummary } from "../src/archive/mod.ts";
import { NatsServer } from "../test/harness/nats-server.ts";
import { natsServerBin, serverVersion } from "../test/harness/binaries.ts";
import type { BenchArgs } from "./args.ts";
import { buildStream, deleteStream, MessageSize, streamName, type PayloadKind } from "./fill.ts";
import { memory, resetPeak } from "./proc.ts";
import { ArchiveFile, rawSnapshot } from "./raw.ts";
import { fmt, MB } from "./stats.ts";

const benchDir = dirname(fileURLToPath(import.meta.url));
const cacheDir = join(benchDir, "..", ".cache", "bench-archives");
const log = (text: string) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${text}\n`);
const Piece = 1 << 20;

interface Archive {
  kind: PayloadKind;
  path: string;
  messages: number;
  compressedBytes: number;
}

/** The cached archive of `kind` for this server and size, made when missing. */
async function archiveFor(kind: PayloadKind, sizeMB: number, server: () => Promise<NatsServer>): Promise<Archive> {
  const version = serverVersion(natsServerBin()).text;
  const path = join(cacheDir, `nats-server-${version}`, `${kind}-${sizeMB}MiB.s2`);
  const messages = Math.round((sizeMB * MB) / MessageSize);
  if (!existsSync(path)) {
    mkdirSync(dirname(path), { recursive: true });
    const nc = await (await server()).connect({ name: "bench-decode" });
    const stream = streamName(kind);
    try {
      log(`building ${stream}: ${messages} x ${MessageSize} B ${kind} on nats-server ${version}`);
      const built = await buildStream(nc, stream, kind, messages);
      log(`  built in ${built.seconds.toFixed(1)} s; snapshotting`);
      const dir = mkdtempSync(join(tmpdir(), "nats-backup-bench-decode-"));
      try {
        const snap = await rawSnapshot(nc, stream, dir);
        log(`  ${(snap.bytes / MB).toFixed(1)} MiB archive in ${snap.seconds.toFixed(1)} s`);
        renameSync(join(dir, ArchiveFile), `${path}.tmp`);
        renameSync(`${path}.tmp`, path);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
      await deleteStream(nc, stream);
    } finally {
      await nc.close();
    }
  }
  return { kind, path, messages, compressedBytes: statSync(path).size };
}

/** Reads the file in 1 MiB pieces into `push`; wall and CPU seconds, peak RSS. */
function timed(path: string, push: (piece: Uint8Array) => void): { wall: number; cpu: number; peakRssMB: number } {
  const piece = new Uint8Array(Piece);
  resetPeak(process.pid);
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const fd = openSync(path, "r");
  try {
    for (let n; (n = readSync(fd, piece, 0, Piece, null)) > 0; ) push(n === Piece ? piece : piece.subarray(0, n));
  } finally {
    closeSync(fd);
  }
  const wall = (performance.now() - t0) / 1000;
  const c = process.cpuUsage(c0);
  return { wall, cpu: (c.user + c.system) / 1e6, peakRssMB: (memory(process.pid)?.hwmKiB ?? NaN) / 1024 };
}

interface Round {
  kind: PayloadKind;
  mode: "decode" | "inspect";
  round: number;
  uncompressedBytes: number;
  wallSeconds: number;
  cpuSeconds: number;
  mbPerSecWall: number;
  mbPerSecCpu: number;
  peakRssMB: number;
}

export async function runDecodeBench(args: BenchArgs): Promise<number> {
  let server: NatsServer | null = null;
  const startServer = async () => (server ??= await NatsServer.start());
  const archives: Archive[] = [];
  try {
    for (const kind of args.payloads) archives.push(await archiveFor(kind, args.sizeMB, startServer));
  } finally {
    await (server as NatsServer | null)?.stop();
  }

  // What the process holds before any round: the peaks below include it.
  const baselineRssMB = (memory(process.pid)?.rssKiB ?? NaN) / 1024;
  const rounds: Round[] = [];
  const summaries: Partial<Record<PayloadKind, ArchiveSummary>> = {};
  const failures: string[] = [];
  for (let round = 1 - args.warmup; round <= args.rounds; round++) {
    for (const a of archives) {
      // decode: the API's default, a fresh array per block, dropped at once.
      const decoder = new S2Decoder();
      let blocks = 0;
      const d = timed(a.path, (p) => decoder.push(p, () => blocks++));
      decoder.end();
      // inspect: decode and read the tar or v2 structure.
      const inspector = new ArchiveInspector();
      const i = timed(a.path, (p) => inspector.push(p));
      const summary = await inspector.finish();
      summaries[a.kind] = summary;
      if (summary.messages !== undefined && summary.messages !== a.messages) failures.push(`${a.kind}: ${summary.messages} messages in the archive, ${a.messages} published`);
      for (const [mode, t] of [["decode", d], ["inspect", i]] as const) {
        const r: Round = {
          kind: a.kind,
          mode,
          round,
          uncompressedBytes: decoder.uncompressedBytes,
          wallSeconds: t.wall,
          cpuSeconds: t.cpu,
          mbPerSecWall: decoder.uncompressedBytes / MB / t.wall,
          mbPerSecCpu: decoder.uncompressedBytes / MB / t.cpu,
          peakRssMB: t.peakRssMB,
        };
        log(`${round < 1 ? "warmup" : `round ${round}`} ${a.kind} ${mode}: ${fmt(r.mbPerSecWall, 0)} MB/s wall, ${fmt(r.mbPerSecCpu, 0)} MB/s cpu, peak rss ${fmt(r.peakRssMB, 0)} MiB`);
        if (round >= 1) rounds.push(r);
      }
    }
  }

  const version = serverVersion(natsServerBin()).text;
  console.log(`\nArchive decoding, nats-server ${version}, node ${process.version} (MB = MiB; median of ${args.rounds} rounds after ${args.warmup} warmup; RSS before the rounds ${fmt(baselineRssMB, 0)} MiB)`);
  console.log("payload        mode     format  archive MiB  uncompressed MiB  MB/s wall  MB/s cpu  peak RSS MiB");
  for (const a of archives) {
    for (const mode of ["decode", "inspect"] as const) {
      const rs = rounds.filter((r) => r.kind === a.kind && r.mode === mode);
      const med = (f: (r: Round) => number) => rs.map(f).sort((x, y) => x - y)[Math.floor(rs.length / 2)] ?? NaN;
      const s = summaries[a.kind]!;
      console.log(
        `${a.kind.padEnd(14)} ${mode.padEnd(8)} ${s.format.padEnd(7)} ${fmt(a.compressedBytes / MB, 1).padStart(11)}  ${fmt(s.uncompressedBytes / MB, 1).padStart(16)}  ${fmt(med((r) => r.mbPerSecWall), 0).padStart(9)}  ${fmt(med((r) => r.mbPerSecCpu), 0).padStart(8)}  ${fmt(Math.max(...rs.map((r) => r.peakRssMB)), 0).padStart(12)}`,
      );
    }
  }
  const out = args.out ?? join(benchDir, "results", `decode-${new Date().toISOString().replace(/[:.]/g, "-")}.json`);
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, JSON.stringify({ args, natsServer: version, node: process.version, baselineRssMB, archives, summaries: Object.fromEntries(Object.entries(summaries).map(([k, s]) => [k, { ...s, consumers: s?.consumers.length }])), rounds, failures }, null, 1));
  console.log(`\nresults: ${out}`);
  if (failures.length) {
    console.log(`\nFAILED:\n  ${failures.join("\n  ")}`);
    return 1;
  }
  return 0;
}
