/** `ls`, `info` and `rm`: what the bucket holds, asked of the service. */
import { Command, Option } from "commander";
import type { AccountManifest, BackupManifest, DeleteReply, ListReply, ListRequest, StreamManifest } from "../protocol/schemas.ts";
import { Subjects } from "../protocol/subjects.ts";
import { ask } from "./ask.ts";
import { withClientConnection } from "./client-connection.ts";
import { bytes, count, plural, table, timestamp } from "./format.ts";

export function addCatalogueCommands(program: Command): void {
  program
    .command("ls")
    .description("list completed backups, newest first (every page)")
    .argument("[stream]", "only this stream's backups")
    .addOption(new Option("--scope <scope>", "only stream backups, or only account backups").choices(["stream", "account"]))
    .option("--json", "print the manifests as a JSON array")
    .action(async (stream: string | undefined, o: { scope?: "stream" | "account"; json?: boolean }, cmd: Command) => {
      await withClientConnection(cmd, async (nc) => {
        const backups: BackupManifest[] = [];
        let after: string | undefined;
        do {
          const req: Partial<ListRequest> = { ...(stream ? { stream } : {}), ...(o.scope ? { scope: o.scope } : {}), ...(after ? { after } : {}) };
          const page = await ask<ListReply>(nc, Subjects.list, req);
          backups.push(...page.backups);
          after = page.next;
        } while (after);
        if (o.json) return void process.stdout.write(`${JSON.stringify(backups, null, 2)}\n`);
        if (backups.length === 0) return void process.stdout.write(`no backups${stream ? ` of stream ${stream}` : ""}\n`);
        const rows = backups.map((b) => [
          b.id,
          b.scope,
          b.scope === "stream" ? b.stream : `(${plural(b.streams.length, "stream")})`,
          timestamp(b.created),
          bytes(b.size),
          count(b.messages),
        ]);
        process.stdout.write(`${table(["ID", "SCOPE", "STREAM", "CREATED", "SIZE", "MESSAGES"], rows, new Set([4, 5]))}\n`);
      });
    });

  program
    .command("info")
    .description("show a backup's manifest")
    .argument("<id>", "the backup")
    .option("--json", "print the manifest as JSON")
    .action(async (id: string, o: { json?: boolean }, cmd: Command) => {
      await withClientConnection(cmd, async (nc) => {
        const manifest = await ask<BackupManifest>(nc, Subjects.info(id));
        process.stdout.write(o.json ? `${JSON.stringify(manifest, null, 2)}\n` : `${describe(manifest)}\n`);
      });
    });

  program
    .command("rm")
    .description("remove a backup (every object of it); refused while a restore reads it")
    .argument("<id>", "the backup")
    .option("--json", "print the service's reply as JSON")
    .action(async (id: string, o: { json?: boolean }, cmd: Command) => {
      await withClientConnection(cmd, async (nc) => {
        const reply = await ask<DeleteReply>(nc, Subjects.delete(id));
        process.stdout.write(o.json ? `${JSON.stringify(reply)}\n` : `Removed backup ${reply.id} (${plural(reply.objects, "object")})\n`);
      });
    });
}

/** A manifest as `key: value` lines, the nats CLI's info layout. */
export function describe(m: BackupManifest): string {
  const rows: [string, string][] = m.scope === "stream" ? streamRows(m) : accountRows(m);
  const width = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${k.padStart(width)}: ${v}`).join("\n");
}

function common(m: BackupManifest): [string, string][] {
  const server = [m.server.name, m.server.version && `nats-server ${m.server.version}`, m.server.cluster && `cluster ${m.server.cluster}`].filter(Boolean);
  return [
    ["Created", m.created],
    ["Completed", m.completed],
    ...(m.tag !== undefined ? [["Tag", m.tag] as [string, string]] : []),
    ["Taken through", server.join(", ") || "unknown"],
  ];
}

function streamRows(m: StreamManifest): [string, string][] {
  const u = (m as { uncompressed_bytes?: unknown }).uncompressed_bytes;
  const retention = m.retention
    ? Object.entries(m.retention)
        .map(([k, v]) => `${k} ${String(v)}`)
        .join(", ")
    : "";
  return [
    ["Backup", m.id],
    ["Scope", "stream"],
    ["Stream", m.stream],
    ...common(m),
    ["Messages", count(m.messages)],
    ["Stream bytes", bytes(m.bytes)],
    ["Sequences", `${count(m.first_seq)} to ${count(m.last_seq)}`],
    ["Consumers", m.consumers.length ? m.consumers.join(", ") : "none"],
    ["Archive", `${bytes(m.size)} in ${plural(m.chunks, "chunk")}${m.archive_format ? `, format ${m.archive_format}` : ""}`],
    ...(typeof u === "number" ? [["Uncompressed", bytes(u)] as [string, string]] : []),
    ["Digest", m.sha256],
    ["Checksums verified", m.checked ? "yes" : "no"],
    ...(retention ? [["Retention", retention] as [string, string]] : []),
    ...(m.stream_created ? [["Stream created", m.stream_created] as [string, string]] : []),
  ];
}

function accountRows(m: AccountManifest): [string, string][] {
  return [
    ["Backup", m.id],
    ["Scope", "account"],
    ...common(m),
    ["Streams", `${count(m.streams.length)}${m.streams.length ? `: ${m.streams.join(", ")}` : ""}`],
    ["With data", m.data ? `${count(m.streams_with_data)} streams, ${bytes(m.size)}, ${plural(m.messages, "message")}` : "no (configurations only)"],
    ["Consumers", count(m.consumers)],
    ...m.failed.map((f) => ["Failed", `${f.stream}: ${f.description}`] as [string, string]),
  ];
}
