/**
 * `npm run bench`: the service's backup and restore against the nats CLI's way of doing the same,
 * on a private nats-server, interleaved over rounds; with --account, the account bench
 * (bench/account.ts); with --tenants, the tenants bench (bench/tenants.ts). See bench/README.md.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, statfsSync, writeFileSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { NatsConnection } from "@nats-io/nats-core";
import { NatsServer } from "../test/harness/nats-server.ts";
import { Defaults } from "../src/mod.ts";
import { parseBenchArgs, usage, type BenchArgs, type Op } from "./args.ts";
import { buildStream, deleteStream, MessageSize, streamInfo, streamName, type PayloadKind, type StreamState } from "./fill.ts";
import { serviceRequest } from "./jsapi.ts";
import { summarizeProfile } from "./cpuprofile.ts";
import { measurer, type MeasureOptions } from "./measure.ts";
import { cpuSeconds, memory } from "./proc.ts";
import { rawRestore, rawSnapshot } from "./raw.ts";
import { runAccountBench } from "./account.ts";
import { runDecodeBench } from "./decode.ts";
import { printTenantsReport, runTenantsBench, summarizeTenants, tenantsSetup, TenantsSubject } from "./tenants.ts";
import { printAccountReport, summarizeAccount } from "./account-report.ts";
import { latencies, printReport, summarize, type OpRecord, type StreamInfoRecord } from "./report.ts";
import { idleLatency } from "./sampler.ts";
import { ServiceProcess } from "./service-proc.ts";
import { MB } from "./stats.ts";

const benchDir = dirname(fileURLToPath(import.meta.url));
const log = (text: string) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${text}\n`);

interface JobReply {
  id: string;
  state: string;
  result?: { id: string; size?: number; chunks?: number; messages?: number; last_seq?: number; first_seq?: number; bytes?: number };
  progress?: { bytes: number; chunks: number };
}

/** Disk the run needs at most: the stream, its raw archive, its bucket copy, and a restore's staging, per payload. */
function checkDisk(args: BenchArgs): { freeBytes: number; neededBytes: number } {
  const fs = statfsSync(tmpdir());
  const freeBytes = fs.bavail * fs.bsize;
  // The account bench: its data set, the CLI's directory, the bucket's copy, a restore's staging.
  if (args.tenants) {
    // Each tenant's stream, its bucket copy, and room for the service's own streams.
    return { freeBytes, neededBytes: Math.round(args.tenants.count * args.tenants.sizeMB * MB * 3 + 512 * MB) };
  }
  const perStream = args.account ? args.account.dataStreams * args.account.dataSizeMB * MB * 1.15 : args.sizeMB * MB * 1.15;
  const neededBytes = Math.round(perStream * 4.5 * (args.account ? 1 : args.payloads.length) + 512 * MB);
  return { freeBytes, neededBytes };
}

/** The commit and the uncommitted changes under src/ the measured service ran from. */
function sourceState(): { commit: string; dirtySrc: string[] } {
  const git = (...a: string[]) => execFileSync("git", a, { cwd: join(benchDir, ".."), encoding: "utf8" }).trim();
  try {
    return { commit: git("rev-parse", "HEAD"), dirtySrc: git("status", "--porcelain", "--", "src").split("\n").filter(Boolean) };
  } catch {
    return { commit: "unknown", dirtySrc: [] };
  }
}

/** Where the run ran: the server, node, the machine. */
function environment(server: NatsServer, nc: NatsConnection, freeDiskBytes: number) {
  return {
    natsServer: `nats-server: v${server.version.text}`,
    natsServerBin: server.bin,
    natsServerInfo: nc.info?.version,
    maxPayload: nc.info?.max_payload,
    node: process.version,
    platform: `${process.platform} ${process.arch}`,
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model,
    tmpdir: tmpdir(),
    freeDiskBytes,
  };
}

async function main(): Promise<number> {
  const args = parseBenchArgs(process.argv.slice(2));
  if (!args) {
    console.log(usage);
    return 0;
  }
  if (args.decode) return runDecodeBench(args);
  const disk = checkDisk(args);
  log(`free in ${tmpdir()}: ${(disk.freeBytes / MB / 1024).toFixed(1)} GiB, needed at most ~${(disk.neededBytes / MB / 1024).toFixed(1)} GiB`);
  if (disk.freeBytes < disk.neededBytes) {
    throw new Error(`not enough disk in ${tmpdir()}: ${(disk.freeBytes / MB).toFixed(0)} MiB free, ~${(disk.neededBytes / MB).toFixed(0)} MiB needed`);
  }

  const startedAt = new Date();
  const stamp = startedAt.toISOString().replace(/[:.]/g, "-");
  const resultsDir = join(benchDir, "results");
  mkdirSync(resultsDir, { recursive: true });
  const workDir = mkdtempSync(join(tmpdir(), "nats-backup-bench-"));

  let server: NatsServer | null = null;
  let svc: ServiceProcess | null = null;
  let echo: ServiceProcess | null = null;
  const conns: NatsConnection[] = [];
  let cleaned: Promise<void> | null = null;
  const cleanup = () =>
    (cleaned ??= (async () => {
      for (const c of conns) await c.close().catch(() => undefined);
      await svc?.stop().catch(() => svc?.killNow());
      await echo?.stop().catch(() => echo?.killNow());
      await server?.stop().catch(() => undefined);
      rmSync(workDir, { recursive: true, force: true });
    })());
  // Under `npm run`, tsx relays the terminal's SIGINT too: the same signal may come twice. Keep
  // handling it (a default action would kill the bench before it stops what it started).
  let signalled = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    if (signalled++ > 0) return;
    log(`${signal}: stopping the service and nats-server`);
    void cleanup().finally(() => process.exit(130));
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  process.once("exit", () => {
    // Last resort if something exits without cleanup: kill only what we started.
    svc?.killNow();
    echo?.killNow();
    if (server?.pid && !cleaned) {
      try {
        process.kill(server.pid, "SIGKILL");
      } catch {
        // gone
      }
    }
  });

  try {
    // --tenants: accounts T01..TNN and ADMIN; the bench's own connections are ADMIN's.
    const tenants = args.tenants ? tenantsSetup(args.tenants.count, workDir) : null;
    server = await NatsServer.start(tenants ? { config: tenants.serverConfig } : {});
    const serverPid = server.pid as number;
    const login = tenants ? { user: tenants.admin.user, pass: tenants.admin.pass } : {};
    const nc = await server.connect({ name: "bench", ...login });
    const samplerNc = await server.connect({ name: "bench-sampler", ...login });
    conns.push(nc, samplerNc);
    // The binary is the tests' (NATS_SERVER_BIN, else the newest built, else PATH): test/harness/binaries.ts.
    const serverVersion = `nats-server: v${server.version.text}`;
    log(`${serverVersion} (${server.bin}) at ${server.url} (pid ${serverPid}), store ${server.storeDir}`);

    const profDir = join(resultsDir, `prof-${stamp}`);
    if (args.profile) mkdirSync(profDir, { recursive: true });
    svc = await ServiceProcess.start(nc, server.url, {
      kind: args.service,
      childArgs: [...(args.profile ? ["--profile", profDir] : []), ...(args.noAsyncTraces ? ["--no-async-traces"] : [])],
      serveArgs: tenants ? tenants.serveArgs : args.account?.parallel ? ["--account-parallel", String(args.account.parallel)] : [],
      // serve --tenants has no service of its own on the admin connection, only $BACKUP.tenants.
      ...(tenants ? { ready: TenantsSubject } : {}),
    });
    const serviceLabel = { bin: "bin/nats-backup.js serve", child: "bench/service-child.ts", bundle: "esbuild bundle of src/cli/main.ts" }[args.service];
    log(`backup service pid ${svc.pid} (${serviceLabel})`);
    const rssAfterStart = memory(svc.pid);

    if (args.tenants && tenants) {
      const run = await runTenantsBench({ args: { ...args, tenants: args.tenants }, setup: tenants, server, admin: nc, servicePid: svc.pid, log });
      const summary = summarizeTenants(run);
      printTenantsReport(args, run, summary, { serverVersion, node: process.version });
      const out = args.out ?? join(resultsDir, `tenants-${stamp}.json`);
      writeFileSync(
        out,
        JSON.stringify(
          {
            startedAt: startedAt.toISOString(),
            endedAt: new Date().toISOString(),
            args,
            source: sourceState(),
            environment: environment(server, nc, disk.freeBytes),
            summary,
            serviceRssMB: { afterStart: (rssAfterStart?.rssKiB ?? NaN) / 1024, atEnd: (memory(svc.pid)?.rssKiB ?? NaN) / 1024 },
            run,
            serviceLogTail: svc.log.trim().slice(-4000),
          },
          null,
          1,
        ),
      );
      console.log(`\nresults: ${out}`);
      if (run.failures.length) {
        console.log(`\n${run.failures.length} backup(s) FAILED:\n  ${run.failures.join("\n  ")}`);
        return 1;
      }
      return 0;
    }

    if (args.account) {
      const measure = measurer({ nc, samplerNc, servicePid: svc.pid, serverPid, heapProbe: args.service === "child", waitIdle: args.waitIdle, log });
      const run = await runAccountBench({ args: { ...args, account: args.account }, nc, serverUrl: server.url, workDir, measure, log });
      const measured = run.records.filter((r) => r.round >= 1);
      const summary = summarizeAccount(measured, run.sets);
      printAccountReport(args, run.sets, summary, { serverVersion, node: process.version, cli: run.cli.version });
      const serviceLogTail = svc.log.trim();
      const out = args.out ?? join(resultsDir, `account-${stamp}.json`);
      writeFileSync(
        out,
        JSON.stringify(
          {
            startedAt: startedAt.toISOString(),
            endedAt: new Date().toISOString(),
            args,
            source: sourceState(),
            environment: { ...environment(server, nc, disk.freeBytes), natsCli: run.cli },
            sets: run.sets,
            summary,
            serviceRssMB: { afterStart: (rssAfterStart?.rssKiB ?? NaN) / 1024, atEnd: (memory(svc.pid)?.rssKiB ?? NaN) / 1024 },
            failures: run.failures,
            records: run.records,
            ...(args.profile ? { cpuProfileDir: profDir } : {}),
            serviceLogTail: serviceLogTail.slice(-4000),
          },
          null,
          1,
        ),
      );
      console.log(`\nresults: ${out}`);
      if (run.failures.length) {
        console.log(`\n${run.failures.length} check(s) FAILED:\n  ${run.failures.join("\n  ")}`);
        return 1;
      }
      return 0;
    }

    // The streams.
    const messages = Math.round((args.sizeMB * MB) / MessageSize);
    const streams: Record<string, StreamInfoRecord> = {};
    const original: Partial<Record<PayloadKind, StreamState>> = {};
    for (const kind of args.payloads) {
      const name = streamName(kind);
      log(`building ${name}: ${messages} x ${MessageSize} B ${kind}`);
      let last = 0;
      const built = await buildStream(nc, name, kind, messages, args.publishWindow, (done) => {
        if (done - last >= messages / 4 || done === messages) {
          last = done;
          log(`  ${name}: ${done}/${messages}`);
        }
      });
      original[kind] = built.state;
      streams[kind] = {
        stream: name,
        messages: built.state.messages,
        storedBytes: built.state.bytes,
        payloadBytes: messages * MessageSize,
        buildSeconds: built.seconds,
        archiveBytes: [],
        backupArchiveBytes: [],
      };
      log(`  ${name}: ${(built.state.bytes / MB).toFixed(1)} MiB stored in ${built.seconds.toFixed(1)} s`);
    }

    echo = await ServiceProcess.echo(nc, server.url);
    log(`latency baseline responder pid ${echo.pid} (bench/echo-child.ts)`);
    log("idle latency: 600 requests");
    const idle = await idleLatency(samplerNc, 600);
    const rssAfterIdleRequests = memory(svc.pid);

    const records: OpRecord[] = [];
    const failures: string[] = [];
    const svcPid = svc.pid;

    const run = measurer({ nc, samplerNc, servicePid: svcPid, serverPid, heapProbe: args.service === "child", waitIdle: args.waitIdle, log });
    /** Runs one operation with CPU accounting, and memory watch and latency sampler where asked. */
    const measure = async <T>(
      base: Omit<OpRecord, "seconds" | "mbps" | "cpu">,
      storedBytes: number,
      fn: () => Promise<T>,
      opts: MeasureOptions = {},
    ): Promise<{ value: T; record: OpRecord }> => {
      const m = await run(fn, opts);
      const record: OpRecord = {
        ...base,
        seconds: m.seconds,
        mbps: storedBytes / MB / m.seconds,
        cpu: m.cpu,
        ...(m.quiet ? { quiet: m.quiet } : {}),
        ...(m.profile ? { profile: m.profile } : {}),
        ...(m.heapPeaksMB ? { heapPeaksMB: m.heapPeaksMB } : {}),
        ...(m.memory ? { memory: m.memory } : {}),
        ...(m.latencySamples
          ? {
              latency: latencies([m.latencySamples]),
              latencySamples: m.latencySamples,
            }
          : {}),
      };
      records.push(record);
      return { value: m.value, record };
    };

    const verify = async (kind: PayloadKind, op: Op, round: number): Promise<OpRecord["verify"]> => {
      const want = original[kind]!;
      const got = await streamInfo(nc, streamName(kind));
      const ok =
        !!got && got.messages === want.messages && got.last_seq === want.last_seq && got.first_seq === want.first_seq;
      if (!ok) {
        const text = `round ${round} ${op} ${kind}: restored ${JSON.stringify(got)} but the original was ${JSON.stringify(want)}`;
        failures.push(text);
        log(`CHECK FAILED ${text}`);
      }
      return { ok, messages: got?.messages ?? -1, last_seq: got?.last_seq ?? -1, bytes: got?.bytes ?? -1 };
    };

    const has = (op: Op) => args.ops.includes(op);
    const settle = () => new Promise((r) => setTimeout(r, 500));

    // Warm-up rounds are numbered 1 - warmup … 0 and left out of the summary.
    for (let round = 1 - args.warmup; round <= args.rounds; round++) {
      // Alternate which of each pair goes first, and which payload, so neither always gets a warm or cold start.
      const flip = round % 2 === 0;
      const kinds = flip ? [...args.payloads].reverse() : args.payloads;
      for (const kind of kinds) {
        const name = streamName(kind);
        const stored = streams[kind]!.storedBytes;
        const dir = join(workDir, name);
        mkdirSync(dir, { recursive: true });
        let backupId: string | null = null;
        const tag = round >= 1 ? `r${round}` : "warm-up";

        const snapshotOp = async () => {
          if (!has("snapshot")) return;
          await settle();
          const { value, record } = await measure({ round, payload: kind, op: "snapshot" }, stored, () =>
            rawSnapshot(nc, name, dir, args.rawChunkSize),
          );
          record.archiveBytes = value.bytes;
          record.chunks = value.chunks;
          streams[kind]!.archiveBytes.push(value.bytes);
          log(`${tag} ${kind} raw snapshot: ${record.seconds.toFixed(2)} s, ${(value.bytes / MB).toFixed(1)} MiB archive`);
        };
        const backupOp = async () => {
          if (!has("backup")) return;
          await settle();
          const body = { wait: true, ...(args.chunkSize ? { chunk_size: args.chunkSize } : {}) };
          const { value, record } = await measure(
            { round, payload: kind, op: "backup" },
            stored,
            () => serviceRequest<JobReply>(nc, `$BACKUP.stream.${name}`, body, 3600_000),
            { memory: true, sampler: args.sampler, ...(args.profile ? { profile: `${tag}-${kind}-backup` } : {}) },
          );
          if (value.state !== "completed" || !value.result) throw new Error(`backup of ${name} did not complete: ${JSON.stringify(value)}`);
          backupId = value.result.id;
          record.archiveBytes = value.result.size;
          record.chunks = value.result.chunks;
          record.backupId = backupId;
          streams[kind]!.backupArchiveBytes.push(value.result.size ?? 0);
          log(
            `${tag} ${kind} service backup: ${record.seconds.toFixed(2)} s, peak RSS ${record.memory?.peakMB.toFixed(0)} MiB` +
              (record.latency ? `, list p99 ${record.latency.list.p99.toFixed(1)} ms (${record.latency.list.n})` : ""),
          );
        };
        const restoreRawOp = async () => {
          if (!has("restore-raw")) return;
          await deleteStream(nc, name);
          await settle();
          let serverCpuAtUpload = NaN;
          const { value, record } = await measure({ round, payload: kind, op: "restore-raw" }, stored, () =>
            rawRestore(nc, name, dir, 64 * 1024, () => (serverCpuAtUpload = cpuSeconds(serverPid))),
          );
          // The server's share after the last chunk: building the stream from the staged archive.
          record.phases = {
            uploadSeconds: value.uploadSeconds,
            buildSeconds: value.seconds - value.uploadSeconds,
            serverCpuBuild: cpuSeconds(serverPid) - serverCpuAtUpload,
          };
          record.verify = await verify(kind, "restore-raw", round);
          log(`${tag} ${kind} raw restore: ${record.seconds.toFixed(2)} s (upload ${value.uploadSeconds.toFixed(2)} s, build ${record.phases.buildSeconds.toFixed(2)} s), check ${record.verify?.ok ? "ok" : "FAILED"}`);
        };
        const restoreSvcOp = async () => {
          if (!has("restore-svc") || !backupId) return;
          await deleteStream(nc, name);
          await settle();
          const { value, record } = await measure(
            { round, payload: kind, op: "restore-svc" },
            stored,
            () => serviceRequest<JobReply>(nc, `$RESTORE.stream.${name}`, { wait: true, backup: backupId }, 3600_000),
            { memory: true, ...(args.profile ? { profile: `${tag}-${kind}-restore-svc` } : {}) },
          );
          if (value.state !== "completed") throw new Error(`restore of ${name} did not complete: ${JSON.stringify(value)}`);
          record.verify = await verify(kind, "restore-svc", round);
          log(
            `${tag} ${kind} service restore: ${record.seconds.toFixed(2)} s, peak RSS ${record.memory?.peakMB.toFixed(0)} MiB, check ${record.verify?.ok ? "ok" : "FAILED"}`,
          );
        };
        for (const op of flip ? [backupOp, snapshotOp] : [snapshotOp, backupOp]) await op();
        const restores = [restoreRawOp, restoreSvcOp];
        for (const op of flip ? restores.reverse() : restores) await op();

        // Keep the disk and the bucket bounded: drop this round's backup and raw archive.
        if (backupId) await serviceRequest(nc, `$BACKUP.delete.${backupId}`, "", 60_000);
        rmSync(dir, { recursive: true, force: true });
        const info = await streamInfo(nc, name);
        if (!info) throw new Error(`stream ${name} is gone after round ${round}`);
      }
    }

    const rssAtEnd = memory(svc.pid);
    const serviceRssMB = {
      afterStart: (rssAfterStart?.rssKiB ?? NaN) / 1024,
      afterIdleRequests: (rssAfterIdleRequests?.rssKiB ?? NaN) / 1024,
      atEnd: (rssAtEnd?.rssKiB ?? NaN) / 1024,
    };
    const serviceLogTail = svc.log.trim();
    await svc.stop();
    const summary = summarize(
      args,
      records.filter((r) => r.round >= 1),
      streams,
      idle,
    );
    printReport(args, summary, {
      serverVersion,
      node: process.version,
    });
    console.log(
      `service VmRSS MB: ${serviceRssMB.afterStart.toFixed(0)} after start, ${serviceRssMB.afterIdleRequests.toFixed(0)} after 600 idle echo/ping/list requests, ${serviceRssMB.atEnd.toFixed(0)} at the end`,
    );
    const result = {
      startedAt: startedAt.toISOString(),
      endedAt: new Date().toISOString(),
      args,
      source: sourceState(),
      environment: environment(server, nc, disk.freeBytes),
      sizes: { sizeMB: args.sizeMB, messageBytes: MessageSize, messages, rounds: args.rounds, streams },
      summary,
      serviceRssMB,
      failures,
      records: records.map(({ latencySamples, ...r }) => r),
      latencySamples: records
        .filter((r) => r.latencySamples)
        .map((r) => ({ round: r.round, payload: r.payload, ...r.latencySamples })),
      idleLatencySamples: idle,
      ...(args.profile ? { cpuProfileDir: profDir } : {}),
      serviceLogTail: serviceLogTail.slice(-4000),
    };
    if (args.profile) {
      for (const op of ["backup", "restore-svc"] as const) {
        for (const kind of args.payloads) {
          const files = records.filter((r) => r.round >= 1 && r.op === op && r.payload === kind && r.profile).map((r) => r.profile!);
          if (files.length) console.log(`\n${summarizeProfile(files, 18, `service CPU profile: ${op} ${kind}, ${files.length} round(s) summed`)}`);
        }
      }
    }
    const out = args.out ?? join(resultsDir, `${stamp}.json`);
    writeFileSync(out, JSON.stringify(result, null, 1));
    console.log(`\nresults: ${out}`);
    if (failures.length) {
      console.log(`\n${failures.length} correctness check(s) FAILED:\n  ${failures.join("\n  ")}`);
      return 1;
    }
    return 0;
  } catch (err) {
    if (svc?.log) log(`service log tail:\n${svc.log.slice(-3000)}`);
    throw err;
  } finally {
    await cleanup();
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(`bench failed: ${(err as Error).stack ?? err}`);
    process.exit(1);
  },
);
