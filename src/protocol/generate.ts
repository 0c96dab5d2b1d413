/**
 * Renders protocol/schemas/*.json from the zod schemas in schemas.ts: one JSON Schema
 * (draft 2020-12) per entry of ProtocolSchemas. Requests are rendered on their input side (a
 * defaulted field is optional), replies on their output side. `npm run protocol` writes the
 * files; test/protocol.test.ts compares them with `renderProtocolSchemas()`.
 */
import { mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { z } from "zod";
import { ProtocolSchemas } from "./schemas.ts";
import { TenantsFile } from "./tenants-file.ts";
import { ReadinessDescriptions } from "./readiness.ts";

/** Every document protocol/schemas holds: the service's bodies, and the tenants file `serve --tenants` reads. */
const Documents = { ...ProtocolSchemas, tenants_file: TenantsFile } as const;
/** Rendered on their input side: what a person or client writes (a defaulted field is optional). */
const Inputs = new Set(["tenants_file"]);

export type ProtocolSchemaName = keyof typeof Documents;

/** Where the generated files live, from the project root. */
export const SchemaDir = "protocol/schemas";

/** The `$id` every generated schema carries; its last segment is the file name. */
export const schemaId = (name: string) => `https://nats.io/schemas/backup/v1/${name}.json`;

const Descriptions: Record<ProtocolSchemaName, string> = {
  ...ReadinessDescriptions,
  backup_stream_request: "The body of a request on $BACKUP.stream.<stream>; an empty body means every default",
  restore_stream_request: "The body of a request on $RESTORE.stream.<stream>; an empty body means every default",
  backup_account_request: "The body of a request on $BACKUP.account; an empty body saves every stream's and consumer's configuration",
  restore_account_request: "The body of a request on $RESTORE.account; an empty body restores the newest account backup without failed streams",
  account_contents: "<id>/account.json in the bucket: what an account backup holds, stream by stream",
  list_request: "The body of a request on $BACKUP.list; an empty body lists the newest backups, up to the default limit",
  empty_request: "The body of a request on $BACKUP.info.<id>, $BACKUP.delete.<id>, $BACKUP.verify.<id> and $BACKUP.job.<id>: empty or {}",
  job_started: "The reply to a backup or restore request with wait:false",
  job_record:
    "A job's record: the reply of $BACKUP.job.<id>, of a backup or restore request with wait:true, and every event on $BACKUP.status.<id>",
  backup_manifest: "A completed backup: the reply of $BACKUP.info.<id>, and <id>/manifest.json in the bucket",
  list_reply: "The reply of $BACKUP.list",
  delete_reply: "The reply of $BACKUP.delete.<id>",
  prune_request: "The body of a request on $BACKUP.prune; an empty body applies each stream's retention policy",
  prune_reply: "The reply of $BACKUP.prune: what was removed (dry_run: would be removed) and what was skipped, by stream",
  verify_reply: "The reply of $BACKUP.verify.<id>: what reading each archive of the backup through found",
  tenants_file:
    "The tenants file (serve --tenants FILE, JSON or YAML): the accounts one service serves, each with how to connect as one of its users, its bucket and its limits",
  error_reply:
    "The body of every error reply; the headers Nats-Service-Error-Code and Nats-Service-Error carry the same code and description",
};

/** File name → file text, for every schema, in ProtocolSchemas order. */
export function renderProtocolSchemas(): Map<string, string> {
  const files = new Map<string, string>();
  for (const [name, schema] of Object.entries(Documents) as [ProtocolSchemaName, z.ZodType][]) {
    const io = name.endsWith("_request") || Inputs.has(name) ? "input" : "output";
    const { $schema, ...rest } = z.toJSONSchema(schema, { io, target: "draft-2020-12" });
    const document = {
      $schema,
      $id: schemaId(name),
      title: `io.nats.backup.v1.${name}`,
      description: Descriptions[name],
      ...rest,
    };
    files.set(`${name}.json`, `${JSON.stringify(document, null, 2)}\n`);
  }
  return files;
}

/** Writes the schemas into `<root>/protocol/schemas/`, removing files that are no longer generated. */
export function writeProtocolSchemas(root: string): string[] {
  const dir = join(root, SchemaDir);
  mkdirSync(dir, { recursive: true });
  const files = renderProtocolSchemas();
  for (const existing of readdirSync(dir)) {
    if (existing.endsWith(".json") && !files.has(existing)) rmSync(join(dir, existing));
  }
  for (const [file, text] of files) writeFileSync(join(dir, file), text);
  return [...files.keys()].map((file) => join(SchemaDir, file));
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
  for (const file of writeProtocolSchemas(root)) console.log(`wrote ${file}`);
}
