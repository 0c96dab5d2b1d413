/** The account bench's figures: per set and operation, the CLI/service ratios, where the time went, targets. */
import type { AccountOp, AccountRecord, AccountSetInfo } from "./account.ts";
import type { RequestSeries, TraceSummary } from "./api-trace.ts";
import type { AccountSet, BenchArgs } from "./args.ts";
import { table, type Target } from "./report.ts";
import { fmt, MB, spread, type Spread } from "./stats.ts";

export const AccountOpLabel: Record<AccountOp, string> = {
  "backup-cli": "1 nats account backup → dir (CLI)",
  "backup-svc": "2 service $BACKUP.account → bucket",
  "restore-cli": "3 nats account restore ← dir (CLI)",
  "restore-svc": "4 service $RESTORE.account ← bucket",
};

export interface AccountOpSummary {
  set: AccountSet;
  op: AccountOp;
  /** Runs that failed (left out of the times). */
  failed: number;
  /** Service restore: the most consumers left on the bucket's stream just after one. */
  bucketConsumersMax?: number;
  seconds: Spread;
  mbps: number;
  streamsPerSecond: number;
  spreadPct: number;
  cpuSeconds: { service: number; server: number; serverSystem: number; cli: number; bench: number; others: number };
  savedMB?: number;
  peakRssMB?: { median: number; max: number };
  startRssMB?: number;
  /** The trace of the round whose time is the median. */
  trace: TraceSummary;
}

export interface AccountSummary {
  ops: AccountOpSummary[];
  /** CLI time over the service's time, per set: above 1, the service is faster. */
  ratios: { set: AccountSet; backup: number; restore: number }[];
  peakRssMB: { backup: number; restore: number };
  /** The CLI also saved the service's own streams (MB, median): dropped before its restore. */
  cliServiceStreamsMB: number;
  targets: Target[];
}

const median = (xs: number[]) => spread(xs).median;

export function summarizeAccount(records: AccountRecord[], sets: AccountSetInfo[]): AccountSummary {
  const ops: AccountOpSummary[] = [];
  for (const info of sets) {
    for (const op of ["backup-cli", "backup-svc", "restore-cli", "restore-svc"] as const) {
      const all = records.filter((r) => r.set === info.set && r.op === op);
      if (!all.length) continue;
      // A failed run's time is no figure of the operation: counted apart.
      const rs = all.filter((r) => !r.error);
      const s = spread(rs.map((r) => r.seconds));
      const mem = rs.map((r) => r.memory?.peakMB).filter((x): x is number => x !== undefined);
      const saved = rs.map((r) => r.savedBytes).filter((x): x is number => x !== undefined && Number.isFinite(x));
      const mid = (rs.length ? rs : all).reduce((a, b) => (Math.abs(b.seconds - s.median) < Math.abs(a.seconds - s.median) ? b : a));
      const consumers = all.map((r) => r.bucketConsumers).filter((x): x is number => x !== undefined);
      ops.push({
        set: info.set,
        op,
        failed: all.length - rs.length,
        ...(consumers.length ? { bucketConsumersMax: Math.max(...consumers) } : {}),
        seconds: s,
        mbps: info.storedBytes / MB / s.median,
        streamsPerSecond: info.streams / s.median,
        spreadPct: ((s.max - s.min) / s.median) * 100,
        cpuSeconds: {
          service: median(rs.map((r) => r.cpu.service)),
          server: median(rs.map((r) => r.cpu.server)),
          serverSystem: median(rs.map((r) => r.cpu.serverSystem)),
          cli: median(rs.map((r) => r.cliCpuSeconds ?? 0)),
          bench: median(rs.map((r) => r.cpu.bench)),
          // The CLI's CPU is in the machine's busy time but not among service, server and bench.
          others: median(rs.map((r) => Math.max(0, r.cpu.others - (r.cliCpuSeconds ?? 0)))),
        },
        ...(saved.length ? { savedMB: median(saved) / MB } : {}),
        ...(mem.length ? { peakRssMB: { median: median(mem), max: Math.max(...mem) }, startRssMB: median(rs.map((r) => r.memory!.startMB)) } : {}),
        trace: mid.trace,
      });
    }
  }
  const find = (set: AccountSet, op: AccountOp) => ops.find((o) => o.set === set && o.op === op)?.seconds.median ?? NaN;
  const ratios = sets.map(({ set }) => ({
    set,
    backup: find(set, "backup-cli") / find(set, "backup-svc"),
    restore: find(set, "restore-cli") / find(set, "restore-svc"),
  }));
  const peak = (op: AccountOp) => {
    const xs = records.filter((r) => r.op === op && r.memory).map((r) => r.memory!.peakMB);
    return xs.length ? Math.max(...xs) : NaN;
  };
  const peakRssMB = { backup: peak("backup-svc"), restore: peak("restore-svc") };
  const targets: Target[] = [];
  for (const r of ratios) {
    for (const [what, value] of [["backup", r.backup], ["restore", r.restore]] as const) {
      if (Number.isFinite(value)) targets.push({ name: `account ${what} time CLI / service (${r.set})`, value, limit: "≥ 2", pass: value >= 2 });
    }
  }
  for (const o of ops) {
    if (o.failed) targets.push({ name: `${AccountOpLabel[o.op].slice(2)} (${o.set}): runs that failed`, value: o.failed, limit: "0", pass: false });
  }
  const rssMax = Math.max(...[peakRssMB.backup, peakRssMB.restore].filter(Number.isFinite));
  if (Number.isFinite(rssMax)) targets.push({ name: "service peak RSS, MB (account backup and restore)", value: rssMax, limit: "≤ 150", pass: rssMax <= 150 });
  const apart = records.filter((r) => r.op === "backup-cli").map((r) => r.serviceStreamsBytes ?? 0);
  return { ops, ratios, peakRssMB, cliServiceStreamsMB: apart.length ? median(apart) / MB : 0, targets };
}

/** One line of where an operation's time went, from its wire trace. */
function phases(o: AccountOpSummary): string {
  const t = o.trace;
  const parts: string[] = [];
  const series = (what: string, r: RequestSeries) =>
    `${r.streams} ${what}, one per ${fmt(r.gap.median, 3)} s (median gap; max ${fmt(r.gap.max, 3)}), first at ${fmt(r.firstRequest)} s, last at ${fmt(r.lastRequest)} s`;
  if (t.snapshots) {
    parts.push(series("STREAM.SNAPSHOT", t.snapshots));
    const a = t.snapshots.acked;
    if (a) {
      parts.push(
        `${a.streams} with acked chunks took ${fmt(a.span.median, 3)} s each (median; max ${fmt(a.span.max, 3)}), ` +
          `${fmt(a.overlap, 1)} at once on average, last ack at ${fmt(a.lastAck)} s`,
      );
    }
  }
  if (t.restores) parts.push(series("STREAM.RESTORE", t.restores));
  const api = Object.entries(t.api)
    .slice(0, 10)
    .map(([k, v]) => `${k} ${v.n}`)
    .join(", ");
  parts.push(`API requests: ${api || "none"}`);
  if (o.bucketConsumersMax !== undefined) parts.push(`up to ${o.bucketConsumersMax} consumers on the bucket's stream just after`);
  return `  ${o.set} ${AccountOpLabel[o.op].slice(2)}: ${fmt(t.seconds)} s; ${parts.join("; ")}`;
}

export function printAccountReport(
  args: BenchArgs,
  sets: AccountSetInfo[],
  s: AccountSummary,
  env: { serverVersion: string; node: string; cli: string },
): void {
  const acct = args.account!;
  const out: string[] = [""];
  out.push(
    `nats-backup account bench: ${env.serverVersion}, node ${env.node}, nats CLI ${env.cli}; ` +
      `${args.rounds} round(s) after ${args.warmup} warm-up; service ${args.service}` +
      `${acct.parallel ? ` --account-parallel ${acct.parallel}` : " (default account parallelism)"}${args.profile ? " (profiled)" : ""}`,
  );
  for (const info of sets) {
    out.push(
      info.set === "data"
        ? `set data: ${info.streams} streams x ${fmt(((info.messagesPerStream * 1024) / MB), 1)} MiB of 1 KiB ${args.payloads[0]} messages, file storage, ${fmt(info.storedBytes / MB, 1)} MB stored`
        : `set empty: ${info.streams} empty streams, file storage`,
    );
  }
  out.push(
    `The CLI saves every stream of the account, the service's own 3 among them (${fmt(s.cliServiceStreamsMB, 2)} MB, median): in its times; ` +
      "they are taken out of its directory before its restore (it refuses a stream that exists).",
  );
  out.push("MB = 2^20 bytes; MB/s: the set's stored bytes over the median time. CPU s: medians, seconds used by the service, nats-server (kernel part), the CLI, the bench, the rest of the machine.");
  out.push("");
  out.push(
    table(
      ["operation", "set", "ok/failed", "median s", "MB/s", "streams/s", "min–max s", "spread", "saved MB", "CPU s svc/server(sys)/CLI/bench/others"],
      s.ops.map((o) => [
        AccountOpLabel[o.op],
        o.set,
        `${o.seconds.n}/${o.failed}`,
        fmt(o.seconds.median),
        o.mbps > 0 && Number.isFinite(o.mbps) ? fmt(o.mbps, 1) : "-",
        fmt(o.streamsPerSecond, 0),
        `${fmt(o.seconds.min)}–${fmt(o.seconds.max)}`,
        `${fmt(o.spreadPct, 0)}%`,
        o.savedMB !== undefined ? fmt(o.savedMB, 1) : "",
        `${fmt(o.cpuSeconds.service, 1)}/${fmt(o.cpuSeconds.server, 1)}(${fmt(o.cpuSeconds.serverSystem, 1)})/${fmt(o.cpuSeconds.cli, 1)}/${fmt(o.cpuSeconds.bench, 1)}/${fmt(o.cpuSeconds.others, 1)}`,
      ]),
    ),
  );
  out.push("");
  const rss = (set: AccountSet, op: AccountOp) => {
    const o = s.ops.find((x) => x.set === set && x.op === op);
    return o?.peakRssMB ? `${fmt(o.peakRssMB.max, 0)} (median ${fmt(o.peakRssMB.median, 0)}, at start ${fmt(o.startRssMB ?? NaN, 0)})` : "-";
  };
  out.push(
    table(
      ["set", "backup CLI/service (t1/t2)", "restore CLI/service (t3/t4)", "peak RSS backup MB", "peak RSS restore MB"],
      s.ratios.map((r) => [r.set, `${fmt(r.backup)}x`, `${fmt(r.restore)}x`, rss(r.set, "backup-svc"), rss(r.set, "restore-svc")]),
      1,
    ),
  );
  out.push("");
  out.push("where the time goes (the round with the median time; seconds from the request):");
  for (const o of s.ops) out.push(phases(o));
  out.push("");
  out.push("targets (informational):");
  for (const t of s.targets) out.push(`  ${t.pass ? "PASS" : "FAIL"}  ${t.name}: ${fmt(t.value)} (target ${t.limit})`);
  console.log(out.join("\n"));
}
