/**
 * `npm run bench -- --account`: the service's `$BACKUP.account` (with data) and `$RESTORE.account`
 * against the real CLI's `nats account backup` and `nats account restore` on the same account, set
 * by set (many streams with data; many empty streams), interleaved over rounds. See bench/README.md.
 */
import { mkdirSync, readdirSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import type { NatsConnection } from "@nats-io/nats-core";
import { accountStreams, buildSet, checkSet, deleteAccountStreams, ServiceStreams, setStreamNames, type SetCheck } from "./account-set.ts";
import { ApiTrace, type TraceSummary } from "./api-trace.ts";
import type { AccountArgs, AccountSet, BenchArgs } from "./args.ts";
import { MessageSize, streamInfo, type PayloadKind } from "./fill.ts";
import { serviceRequest } from "./jsapi.ts";
import type { CpuSeconds, Measure } from "./measure.ts";
import { natsCli } from "./natscli.ts";
import { MB } from "./stats.ts";

export const AccountOps = ["backup-cli", "backup-svc", "restore-cli", "restore-svc"] as const;
export type AccountOp = (typeof AccountOps)[number];

export interface AccountRecord {
  round: number;
  set: AccountSet;
  op: AccountOp;
  seconds: number;
  cpu: CpuSeconds;
  /** The CLI process's own CPU seconds (the CLI's operations). */
  cliCpuSeconds?: number;
  quiet?: { waitedSeconds: number; idlePercent: number };
  memory?: import("./proc.ts").MemoryWindow;
  heapPeaksMB?: import("./proc.ts").HeapPeaks;
  profile?: string;
  /** Backups: bytes written (the CLI's directory, the service's manifest size). */
  savedBytes?: number;
  /** CLI backup: bytes of the service's own streams in its directory (dropped before its restore). */
  serviceStreamsBytes?: number;
  verify?: SetCheck;
  trace: TraceSummary;
  /** Why the operation failed (an error reply, the CLI's exit, a job not completed); left out of the figures. */
  error?: string;
  /** Service restore: consumers on the bucket's stream just after it. */
  bucketConsumers?: number;
  /** Service operations: the job's id, state and progress as the reply gave them. */
  job?: { id: string; state: string; progress?: unknown; failed?: unknown; streams?: number };
}

export interface AccountSetInfo {
  set: AccountSet;
  streams: number;
  messagesPerStream: number;
  messages: number;
  storedBytes: number;
  buildSeconds: number;
}

export interface AccountContext {
  args: BenchArgs & { account: AccountArgs };
  nc: NatsConnection;
  serverUrl: string;
  workDir: string;
  measure: Measure;
  log: (text: string) => void;
}

export interface AccountRun {
  cli: { path: string; version: string };
  sets: AccountSetInfo[];
  records: AccountRecord[];
  failures: string[];
}

/** What the bench reads of the job record a `wait: true` account request answers with (src/protocol/schemas.ts has it all). */
interface AccountJobReply {
  id: string;
  state: string;
  progress?: { bytes: number; chunks: number; streams?: { done: number; total: number } };
  result?: {
    id?: string;
    size?: number;
    streams?: unknown[];
    failed?: { stream: string; description: string }[];
    outcomes?: { stream: string; state: string }[];
  };
}

/** Bytes of the files under `dir`, and of those under its subdirectories named in `apart`. */
function dirBytes(dir: string, apart: string[]): { total: number; apart: number } {
  const walk = (path: string): number =>
    readdirSync(path, { withFileTypes: true }).reduce(
      (n, e) => n + (e.isDirectory() ? walk(join(path, e.name)) : statSync(join(path, e.name)).size),
      0,
    );
  let total = 0;
  let apartBytes = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const bytes = e.isDirectory() ? walk(join(dir, e.name)) : statSync(join(dir, e.name)).size;
    total += bytes;
    if (apart.includes(e.name)) apartBytes += bytes;
  }
  return { total, apart: apartBytes };
}

export async function runAccountBench(ctx: AccountContext): Promise<AccountRun> {
  const { args, nc, log } = ctx;
  const acct = args.account;
  const kind: PayloadKind = args.payloads[0] ?? "random";
  const cli = natsCli();
  log(`nats CLI ${cli.version} (${cli.path})`);
  const records: AccountRecord[] = [];
  const failures: string[] = [];
  const sets: AccountSetInfo[] = [];
  const settle = () => new Promise((r) => setTimeout(r, 500));

  const leftover = await accountStreams(nc);
  if (leftover.length) throw new Error(`the account already holds streams (${leftover.slice(0, 5).join(", ")}…); the bench needs it empty`);

  for (const set of acct.sets) {
    const count = set === "data" ? acct.dataStreams : acct.emptyStreams;
    const messagesPerStream = set === "data" ? Math.round((acct.dataSizeMB * MB) / MessageSize) : 0;
    const names = setStreamNames(set, count);
    log(`building the ${set} set: ${count} streams x ${messagesPerStream} x ${MessageSize} B ${set === "data" ? kind : ""}`);
    const t0 = performance.now();
    let lastLogged = 0;
    const original = await buildSet(nc, names, kind, messagesPerStream, args.publishWindow, (done) => {
      if (done - lastLogged >= count / 4 || done === count) {
        lastLogged = done;
        log(`  ${set}: ${done}/${count} streams`);
      }
    });
    const info: AccountSetInfo = {
      set,
      streams: count,
      messagesPerStream,
      messages: [...original.values()].reduce((n, s) => n + s.messages, 0),
      storedBytes: [...original.values()].reduce((n, s) => n + s.bytes, 0),
      buildSeconds: (performance.now() - t0) / 1000,
    };
    sets.push(info);
    log(`  ${set}: ${(info.storedBytes / MB).toFixed(1)} MiB stored in ${info.buildSeconds.toFixed(1)} s`);

    /**
     * One measured operation, traced on the wire; the record is kept. An operation that throws (an
     * error reply, the CLI's non-zero exit) is a failure, recorded and left out of the figures.
     */
    const op = async <T>(
      round: number,
      name: AccountOp,
      fn: () => Promise<T>,
      service: boolean,
    ): Promise<{ value: T | undefined; record: AccountRecord }> => {
      await settle();
      const trace = new ApiTrace(nc);
      const tag = round >= 1 ? `r${round}` : `w${1 - round}`;
      const m = await ctx.measure(
        async () => {
          await trace.start();
          return fn().then(
            (value) => ({ value }),
            (err: unknown) => ({ error: (err as Error).message ?? String(err) }),
          );
        },
        service ? { memory: true, ...(args.profile ? { profile: `${tag}-${set}-${name}` } : {}) } : {},
      );
      const record: AccountRecord = {
        round,
        set,
        op: name,
        seconds: m.seconds,
        cpu: m.cpu,
        trace: await trace.stop(m.seconds),
        ...(m.quiet ? { quiet: m.quiet } : {}),
        ...(m.memory ? { memory: m.memory } : {}),
        ...(m.heapPeaksMB ? { heapPeaksMB: m.heapPeaksMB } : {}),
        ...(m.profile ? { profile: m.profile } : {}),
      };
      records.push(record);
      if ("error" in m.value) {
        record.error = m.value.error;
        const text = `round ${round} ${set} ${name} failed after ${m.seconds.toFixed(2)} s: ${m.value.error.slice(0, 1500)}`;
        failures.push(text);
        log(`FAILED ${text}`);
        return { value: undefined, record };
      }
      return { value: m.value.value, record };
    };

    const verify = async (record: AccountRecord) => {
      record.verify = await checkSet(nc, original);
      if (!record.verify.ok) {
        const text = `round ${record.round} ${set} ${record.op}: ${record.verify.problems.join("; ")}`;
        failures.push(text);
        log(`CHECK FAILED ${text}`);
      }
      return record.verify.ok ? "ok" : "FAILED";
    };
    const jobFailure = (record: AccountRecord, reply: AccountJobReply) => {
      record.error = `job ended ${reply.state}`;
      // What went wrong: a backup's failed streams, a restore's items that were not restored.
      const bad = [
        ...(reply.result?.failed ?? []),
        ...(reply.result?.outcomes ?? []).filter((o) => o.state !== "completed"),
        ...((reply.result?.streams ?? []) as { action?: string }[]).filter((i) => typeof i === "object" && i.action && i.action !== "restored" && i.action !== "created"),
      ];
      const text = `round ${record.round} ${set} ${record.op}: job ${reply.id} ended ${reply.state}, ${bad.length} item(s) not done, the first: ${JSON.stringify(bad.slice(0, 3)).slice(0, 1200)}`;
      failures.push(text);
      log(`JOB NOT COMPLETED ${text}`);
    };
    const jobOf = (reply: AccountJobReply): AccountRecord["job"] => ({
      id: reply.id,
      state: reply.state,
      progress: reply.progress,
      ...(reply.result?.failed?.length ? { failed: reply.result.failed } : {}),
      ...(reply.result?.streams ? { streams: reply.result.streams.length } : {}),
    });
    /** Consumers on the service's bucket stream: what reading the bucket leaves behind. */
    const bucketConsumers = async () => (await streamInfo(nc, ServiceStreams[0]!))?.consumer_count ?? NaN;

    for (let round = 1 - args.warmup; round <= args.rounds; round++) {
      const tag = round >= 1 ? `r${round}` : "warm-up";
      const cliDir = join(ctx.workDir, `cli-${set}`);
      rmSync(cliDir, { recursive: true, force: true });
      mkdirSync(ctx.workDir, { recursive: true });

      // 1 before 2 in every round: the CLI saves every stream of the account, the service's bucket
      // among them, which must not hold the service's account backup yet.
      const cliBackup = await op(round, "backup-cli", () => cli.accountBackup(ctx.serverUrl, cliDir), false);
      if (cliBackup.value) {
        const saved = dirBytes(cliDir, ServiceStreams);
        cliBackup.record.cliCpuSeconds = cliBackup.value.cpuSeconds;
        cliBackup.record.savedBytes = saved.total;
        cliBackup.record.serviceStreamsBytes = saved.apart;
        log(`${tag} ${set} CLI account backup: ${cliBackup.record.seconds.toFixed(2)} s, ${(saved.total / MB).toFixed(1)} MiB in ${readdirSync(cliDir).length} stream dirs`);
      }

      const svcBackup = await op(
        round,
        "backup-svc",
        () => serviceRequest<AccountJobReply>(nc, "$BACKUP.account", { data: true, wait: true }, 3600_000),
        true,
      );
      const backup = svcBackup.value;
      let backupId: string | undefined;
      if (backup) {
        svcBackup.record.job = jobOf(backup);
        svcBackup.record.savedBytes = backup.result?.size ?? NaN;
        backupId = backup.result?.id ?? backup.id;
        if (backup.state !== "completed") jobFailure(svcBackup.record, backup);
        log(
          `${tag} ${set} service account backup: ${svcBackup.record.seconds.toFixed(2)} s, ${backup.state}, ` +
            `peak RSS ${svcBackup.record.memory?.peakMB.toFixed(0)} MiB`,
        );
      }

      // The CLI refuses a directory naming a stream that exists: the service's own stay.
      for (const s of ServiceStreams) rmSync(join(cliDir, s), { recursive: true, force: true });

      let intact = true;
      const restoreCli = async () => {
        if (!cliBackup.value) return;
        await deleteAccountStreams(nc);
        const { value, record } = await op(round, "restore-cli", () => cli.accountRestore(ctx.serverUrl, cliDir), false);
        if (value) record.cliCpuSeconds = value.cpuSeconds;
        const check = await verify(record);
        intact = record.verify!.ok;
        log(`${tag} ${set} CLI account restore: ${record.seconds.toFixed(2)} s, check ${check}`);
      };
      const restoreSvc = async () => {
        if (!backupId) return;
        await deleteAccountStreams(nc);
        const { value, record } = await op(
          round,
          "restore-svc",
          () => serviceRequest<AccountJobReply>(nc, "$RESTORE.account", { wait: true, backup: backupId }, 3600_000),
          true,
        );
        if (value) {
          record.job = jobOf(value);
          if (value.state !== "completed") jobFailure(record, value);
        }
        record.bucketConsumers = await bucketConsumers();
        const check = await verify(record);
        intact = record.verify!.ok;
        log(
          `${tag} ${set} service account restore: ${record.seconds.toFixed(2)} s, ${value?.state ?? "error"}, ` +
            `peak RSS ${record.memory?.peakMB.toFixed(0)} MiB, check ${check}, ${record.bucketConsumers} consumers left on ${ServiceStreams[0]}`,
        );
      };
      // Alternate which restore goes first, so neither always meets the server's after-work of the other.
      for (const restore of round % 2 === 0 ? [restoreSvc, restoreCli] : [restoreCli, restoreSvc]) await restore();

      // Keep the disk and the bucket bounded.
      if (backupId) await serviceRequest(nc, `$BACKUP.delete.${backupId}`, "", 120_000);
      rmSync(cliDir, { recursive: true, force: true });
      if (!intact) {
        // The next round measures the whole set again, not what a failed restore left.
        log(`rebuilding the ${set} set after a failed restore`);
        await deleteAccountStreams(nc);
        const rebuilt = await buildSet(nc, names, kind, messagesPerStream, args.publishWindow);
        for (const [name, state] of rebuilt) original.set(name, state);
      }
    }
    const deleted = await deleteAccountStreams(nc);
    log(`${set} set done: ${deleted} streams deleted`);
  }
  return { cli: { path: cli.path, version: cli.version }, sets, records, failures };
}
