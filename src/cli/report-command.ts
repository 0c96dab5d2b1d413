/** `nats-backup report`: the service's disaster-recovery readiness report, as a table worst first, or `--json`. */
import type { Command } from "commander";
import type { NatsConnection } from "@nats-io/nats-core";
import { withClientConnection } from "./client-connection.ts";
import { VerdictOrder, type ReportReply, type ReportRequest, type StreamReadiness } from "../protocol/readiness.ts";
import { Subjects } from "../protocol/subjects.ts";
import { ago } from "../readiness/assess.ts";
import { ask } from "./ask.ts";
import { table } from "./format.ts";

export interface ReportCommandDeps {
  connectFor: (cmd: Command) => Promise<NatsConnection>;
  /** Where the report goes (default stdout). */
  write?: (text: string) => void;
}

export function addReportCommand(program: Command, deps: ReportCommandDeps): void {
  program
    .command("report")
    .description("disaster-recovery readiness: each stream's replicas, quorum, newest backup and what to do, worst first")
    .argument("[streams...]", "only these streams (default: every stream of the account)")
    .option("--recent <duration>", "a backup completed within this long is recent (30d, 12h, 1h30m, or seconds)", "24h")
    .option("--json", "print the service's reply as JSON")
    .action(async (streams: string[], o: { recent: string; json?: boolean }, cmd: Command) => {
      await withClientConnection(cmd, async (nc) => {
        const req: Partial<ReportRequest> = {
          ...(streams.length ? { streams } : {}),
          // A bare number is seconds, as the service reads a JSON number.
          recent: /^\d+$/.test(o.recent) ? Number(o.recent) : o.recent,
        };
        const report = await wholeReport(nc, req);
        const write = deps.write ?? ((text: string) => void process.stdout.write(text));
        write(o.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatReport(report)}\n`);
      }, deps.connectFor);
    });
}

/**
 * Every page of the report, as one reply. Each page is a report taken anew: a stream whose verdict
 * changed between pages could show twice (kept once, its first) or be skipped by the offsets;
 * the counts are the first page's.
 */
async function wholeReport(nc: NatsConnection, req: Partial<ReportRequest>): Promise<ReportReply> {
  const first = await ask<ReportReply>(nc, Subjects.report, req);
  const seen = new Set(first.streams.map((s) => s.stream));
  const streams = [...first.streams];
  for (let offset = first.next_offset; offset !== undefined; ) {
    const page = await ask<ReportReply>(nc, Subjects.report, { ...req, offset });
    for (const s of page.streams) {
      if (seen.has(s.stream)) continue;
      seen.add(s.stream);
      streams.push(s);
    }
    offset = page.next_offset;
  }
  const { next_offset: _, ...whole } = first;
  return { ...whole, streams };
}

/** The report as people read it: a table worst first, the counts, and what could not be known. */
export function formatReport(report: ReportReply): string {
  if (report.streams.length === 0) return "no streams";
  const streams = [...report.streams].sort(
    (a, b) => VerdictOrder.indexOf(a.verdict) - VerdictOrder.indexOf(b.verdict) || a.stream.localeCompare(b.stream),
  );
  const rows = streams.map((s) => [
    s.stream + (s.service_bucket ? " (service)" : ""),
    s.verdict,
    `R${s.replicas}`,
    `${s.quorum.healthy}/${s.quorum.needed}${s.quorum.holds ? "" : " lost"}`,
    peers(s),
    s.recovery.automatic === null ? "unknown" : s.recovery.automatic ? "yes" : "no",
    s.backup ? `${ago(s.backup.age_seconds)}${s.backup.recent ? "" : " (old)"}` : "none",
    s.action,
  ]);
  const counts = VerdictOrder.filter((v) => report.counts[v] > 0).map((v) => `${report.counts[v]} ${v}`);
  const lines = [
    table(["STREAM", "VERDICT", "REPLICAS", "HEALTHY/QUORUM", "PEERS", "AUTO RECOVERY", "NEWEST BACKUP", "ACTION"], rows),
    "",
    `${counts.join(", ")}; ${report.single_copy_without_recent_backup} single copy without a recent backup`,
  ];
  if (!report.servers.known) lines.push(`the cluster's servers could not be counted, so whether a spare node exists is not known: ${report.servers.note ?? ""}`);
  return lines.join("\n");
}

/** `n1*, n2, n3 (offline)`: the leader starred, offline and lagging peers marked. */
function peers(s: StreamReadiness): string {
  if (s.peers.length === 0) return "-";
  return s.peers.map((p) => `${p.name}${p.leader ? "*" : ""}${p.offline ? " (offline)" : !p.leader && !p.current ? ` (lag ${p.lag ?? "?"})` : ""}`).join(", ");
}
