/** Folders in the nats CLI's layout: `backup.json` beside the archive, one folder per stream for an account. */
import { existsSync } from "node:fs";
import { mkdir, readdir, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { BackupError } from "../protocol/errors.ts";

export const BackupJsonFile = "backup.json";
/** The archive's name up to 2.14 (and natscli before 0.5.0 always); what export writes. */
export const ArchiveFile = "stream.tar.s2";
/** natscli 0.5.0's name for a 2.15 server's archive (NATSARC1 inside). */
export const ArchiveFileV2 = "stream.arc.s2";

/** An account backup's configuration files, named as in the bucket (catalogue.ts `accountObjectNames`). */
export const streamConfigFile = (stream: string) => `stream_${stream}.json`;
export const consumerConfigFile = (stream: string, consumer: string) => `stream_${stream}_consumer_${consumer}.json`;

/** The archive in a stream's folder under either name; 400 when there is none, or both (as the nats CLI says). */
export function archiveIn(dir: string): string {
  const names = [ArchiveFile, ArchiveFileV2].filter((n) => existsSync(join(dir, n)));
  if (names.length === 2) throw BackupError.badRequest(`${dir} holds both ${ArchiveFile} and ${ArchiveFileV2}`);
  if (names.length === 0) throw BackupError.badRequest(`${dir} holds no archive (${ArchiveFile} or ${ArchiveFileV2})`);
  return join(dir, names[0]!);
}

/**
 * Makes `dir` ready to be written: created when absent, refused (409) when it holds anything.
 * Returns how to undo: remove the folder it created, or what was written into an empty one.
 */
export async function emptyTarget(dir: string): Promise<() => Promise<void>> {
  const existing = await stat(dir).catch(() => null);
  if (existing) {
    if (!existing.isDirectory()) throw BackupError.conflict(`${dir} exists and is not a folder`);
    if ((await readdir(dir)).length > 0) throw BackupError.conflict(`${dir} is not empty: export writes only into an empty or new folder`);
    return async () => {
      for (const entry of await readdir(dir)) await rm(join(dir, entry), { recursive: true, force: true });
    };
  }
  await mkdir(dir, { recursive: true });
  return () => rm(dir, { recursive: true, force: true });
}
