/** The lines a finished job ends with, in the nats CLI's manner, and the failures a partial job lists. */
import type { AccountBackupResult, AccountRestoreResult, BackupManifest, JobRecord, RestoreResult, StreamManifest } from "../protocol/schemas.ts";
import { between, bytes, count, duration, plural } from "./format.ts";

/** The summary of a completed (or partial) job, one or more lines. */
export function summary(record: JobRecord): string[] {
  const took = duration(between(record.created, record.ended ?? record.updated));
  const result = record.result;
  if (!result) return [`${record.operation} job ${record.id} ${record.state} in ${took}`];
  if (record.operation === "import") return imported(result as BackupManifest, took);
  if (record.scope === "stream" && record.operation === "backup") return streamBackup(result as StreamManifest, took);
  if (record.scope === "stream") return streamRestore(result as RestoreResult, took);
  if (record.operation === "backup") return accountBackup(result as AccountBackupResult, took);
  return accountRestore(result as AccountRestoreResult, took);
}

function streamBackup(m: StreamManifest, took: string): string[] {
  const u = (m as { uncompressed_bytes?: unknown }).uncompressed_bytes;
  return [
    `Received ${bytes(m.size)} of compressed data in ${plural(m.chunks, "chunk")} for stream "${m.stream}" in ${took}` +
      (typeof u === "number" ? `, ${bytes(u)} uncompressed` : ""),
    `Backup ${m.id}: ${plural(m.messages, "message")}, ${plural(m.consumers.length, "consumer")}` +
      (m.checked ? ", checksums verified" : "") +
      (m.tag ? `, tag ${JSON.stringify(m.tag)}` : ""),
  ];
}

function imported(m: BackupManifest, took: string): string[] {
  return [`Imported a folder as ${m.scope} backup ${m.id}: ${bytes(m.size)}, ${plural(m.messages, "message")} in ${took}`];
}

function streamRestore(r: RestoreResult, took: string): string[] {
  return [
    `Restored stream "${r.stream}" from backup ${r.backup}: ${plural(r.messages, "message")}, ${bytes(r.bytes)}, ` +
      `${plural(r.consumers, "consumer")}, ${plural(r.replicas, "replica")} in ${took}`,
    ...(r.warnings ?? []).map((w) => `warning: ${w}`),
  ];
}

function accountBackup(r: AccountBackupResult, took: string): string[] {
  const data = r.data ? ` (${count(r.streams_with_data)} with data, ${bytes(r.size)}, ${plural(r.messages, "message")})` : "";
  return [`Backed up the account as backup ${r.id}: ${plural(r.streams.length, "stream")}${data}, ${plural(r.consumers, "consumer")} in ${took}`];
}

function accountRestore(r: AccountRestoreResult, took: string): string[] {
  const tally = new Map<string, number>();
  for (const s of r.streams) tally.set(s.action, (tally.get(s.action) ?? 0) + 1);
  const actions = [...tally].map(([action, n]) => `${count(n)} ${action}`).join(", ") || "nothing";
  const lines = [`Restored account backup ${r.backup}: ${plural(r.streams.length, "stream")}, ${actions} in ${took}`];
  for (const s of r.streams) {
    if (s.action === "skipped") lines.push(`  stream ${s.stream} skipped: ${s.reason ?? ""}`);
  }
  return [...lines, ...(r.warnings ?? []).map((w) => `warning: ${w}`)];
}

/** What failed in a partial (or failed) account job: one line per stream or consumer. */
export function failures(record: JobRecord): string[] {
  const result = record.result as Partial<AccountBackupResult & AccountRestoreResult> | undefined;
  const lines: string[] = [];
  if (record.operation === "backup") {
    for (const f of result?.failed ?? []) lines.push(`stream ${f.stream} failed: ${f.description}`);
  } else if (record.scope === "account") {
    for (const s of (result as AccountRestoreResult | undefined)?.streams ?? []) {
      if (s.action === "failed") lines.push(`stream ${s.stream} failed: ${s.error?.description ?? ""}`);
      for (const c of s.consumers) if (c.action === "failed") lines.push(`consumer ${s.stream} > ${c.name} failed: ${c.error?.description ?? ""}`);
    }
  }
  return lines;
}
