/**
 * `$BACKUP.verify.<id>`: reads a backup's archives through, in bounded memory (a chunk at a time
 * from the bucket, the archive inspector's streaming decode), and says what it found. A
 * damaged archive is a finding (ok:false, its problems), not an error; 404 when the backup is
 * not listed, before and after the read (deleted meanwhile).
 */
import { ArchiveError } from "../archive/mod.ts";
import { readObject } from "../catalogue/object-stream.ts";
import { BackupError } from "../protocol/errors.ts";
import type { StreamData, VerifiedArchive, VerifyReply } from "../protocol/schemas.ts";
import type { ObjectMetaRecord } from "../catalogue/object-format.ts";
import type { JobContext } from "./context.ts";
import { ArchiveCheck, archiveProblems, type BackupJson } from "./archive-check.ts";

interface HeldArchive {
  stream: string;
  objects: { config: string; archive: string };
  recorded: Partial<Pick<StreamData, "archive_format" | "uncompressed_bytes">>;
}

export async function verifyBackup(ctx: JobContext, id: string, signal?: AbortSignal): Promise<VerifyReply> {
  const { catalogue } = ctx;
  const manifest = await catalogue.info(id);
  const held: HeldArchive[] = [];
  if (manifest.scope === "stream") {
    held.push({ stream: manifest.stream, objects: manifest.objects, recorded: manifest });
  } else {
    const contents = await catalogue.readContents(id);
    for (const s of contents.streams) if (s.data) held.push({ stream: s.name, objects: s.data.objects, recorded: s.data });
  }
  const streams: VerifiedArchive[] = [];
  for (const archive of held) streams.push(await verifyArchive(ctx, archive, signal));
  await catalogue.info(id); // still listed: the read was of the backup, not of what a delete left
  return { id, scope: manifest.scope, ok: streams.every((s) => s.ok), streams };
}

async function verifyArchive(ctx: JobContext, held: HeldArchive, signal?: AbortSignal): Promise<VerifiedArchive> {
  const { catalogue } = ctx;
  const problems: string[] = [];
  let backupJson: BackupJson = {};
  try {
    backupJson = JSON.parse(await catalogue.readText(held.objects.config)) as typeof backupJson;
  } catch (err) {
    problems.push(`${held.objects.config} cannot be read: ${BackupError.from(err).description}`);
  }
  const info = (await catalogue.archiveInfo(held.objects.archive)) as unknown as ObjectMetaRecord;
  const check = new ArchiveCheck(info.size);
  let compressed = 0;
  let readFailed = false;
  try {
    // One chunk at a time, each asked for when the last was read: memory holds a chunk or two.
    for await (const chunk of readObject(ctx.nc, info) as AsyncIterable<Uint8Array>) {
      if (signal?.aborted) throw BackupError.from(signal.reason);
      compressed += chunk.length;
      check.push(chunk);
    }
  } catch (err) {
    // Damaged (digest, size, chunks) or unreadable: said, and the archive's own reading too, as far as it went.
    problems.push(BackupError.from(err).description);
    readFailed = true;
  }
  // A read cut short leaves an archive that looks truncated: only its malformations so far are findings then.
  const failureSoFar = check.failure;
  const finished = await check.finish();
  const found = readFailed ? failureSoFar : finished;
  const summary = found === null || found instanceof ArchiveError ? null : found;
  if (found instanceof ArchiveError) problems.push(`the archive is not whole: ${found.message}`);
  if (summary) problems.push(...archiveProblems(summary, held.stream, backupJson, held.recorded));
  return {
    stream: held.stream,
    ok: problems.length === 0,
    problems,
    ...(summary ? { format: summary.format } : {}),
    compressed_bytes: compressed,
    uncompressed_bytes: summary?.uncompressedBytes ?? check.uncompressedBytes,
    frames: summary?.frames ?? 0,
    entries: summary?.entries ?? 0,
    ...(summary?.blocks !== undefined ? { blocks: summary.blocks } : {}),
    ...(summary?.messages !== undefined ? { messages: summary.messages } : {}),
    consumers: summary?.consumers ?? [],
  };
}
